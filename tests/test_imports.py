"""Every module of the package imports in the test environment: an undeclared dependency fails here.

CI (.ci/run) installs the package with its `test` extra into a fresh virtual environment, so a
module importing a package that pyproject.toml does not declare fails this test there.
"""

import importlib
import pkgutil

import pytest

import actiondiff

# `actiondiff.__main__` runs the CLI when imported; it only imports actiondiff.cli.
MODULES = sorted(
    m.name for m in pkgutil.walk_packages(actiondiff.__path__, prefix="actiondiff.") if not m.name.endswith(".__main__")
)


def test_the_package_has_modules():
    assert len(MODULES) > 40 and "actiondiff.cli" in MODULES and "actiondiff.report.tables" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name):
    importlib.import_module(name)
