"""Snakemake workflow-catalog conventions: lint and snakefmt clean, per-rule conda envs that agree with
pyproject.toml, the default profile found by plain `snakemake`, licence and catalog file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from workflow_copy import copy_workflow

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def snakemake(workdir: Path, *args: str, path_prefix: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    if path_prefix:
        env["PATH"] = path_prefix + os.pathsep + env["PATH"]
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def workflow(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("catalog"))


def rule_envs() -> dict[str, str]:
    """{rule: conda env path as written} of every rule and checkpoint."""
    envs = {}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for rule, body in re.findall(r"^(?:rule|checkpoint) (\w+):\n((?:[ \t]+.*\n|\n)*)", smk.read_text(), flags=re.M):
            match = re.search(r'conda:\n\s+"([^"]+)"', body)
            envs[rule] = match.group(1) if match else ""
    return envs


def test_lint_is_clean(workflow):
    result = snakemake(workflow, "--lint")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_snakefmt_is_clean():
    """Workflow files as snakefmt writes them (line length from pyproject's [tool.snakefmt])."""
    def snakefmt(option: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "snakefmt", option, "Snakefile", "workflow"],
                              cwd=REPO, capture_output=True, text=True, timeout=120)

    if snakefmt("--check").returncode != 0:  # names the files and lines that differ
        pytest.fail("run `snakefmt Snakefile workflow`:\n" + snakefmt("--compact-diff").stdout[-3000:])


def test_every_rule_has_a_conda_env_that_exists():
    envs = rule_envs()
    assert len(envs) >= 14 and all(envs.values()), [r for r, e in envs.items() if not e]
    for rule, env in envs.items():
        assert (REPO / "workflow" / "rules" / env).resolve().is_file(), f"rule {rule}: {env}"
    assert envs["extract_features"].endswith("extract.yaml") and envs["train_head"].endswith("actiondiff.yaml")


@pytest.mark.parametrize(("name", "extras"), [("actiondiff.yaml", set()), ("extract.yaml", {"backbones"})])
def test_env_files_agree_with_pyproject(name, extras):
    env = yaml.safe_load((REPO / "envs" / name).read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    python = next(d for d in conda if d.startswith("python="))
    minimum = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert tuple(map(int, python.split("=")[1].split("."))) >= tuple(map(int, minimum.split(".")))
    # The package itself, from this checkout (envs/..), so every pyproject dependency and pin
    # (torch <= 2.14.1 included) comes from one place; extras that pyproject defines.
    assert len(pip) == 1 and (match := re.fullmatch(r"-e \.\.(?:\[([\w,]+)\])?", pip[0])), pip
    requested = set(filter(None, (match.group(1) or "").split(",")))
    assert requested == extras and requested <= set(PYPROJECT["project"]["optional-dependencies"])
    # Conda brings only what pip cannot: the interpreter, pip, and ffmpeg's tools for extraction.
    assert {d.split("=")[0] for d in conda} <= {"python", "pip", "ffmpeg"}
    assert (REPO / "envs" / "..").resolve() == REPO


# Conda's channels are unreachable here, so `--sdm conda -n` meets a stand-in `conda` that
# answers only the three questions Snakemake asks before planning (info, version, config);
# what is tested is that Snakemake reads our env files and plans the rules with them.
FAKE_CONDA = """#!/bin/sh
case "$1" in
  info) echo '{"conda_prefix": "PREFIX", "platform": "linux-64", "envs_dirs": []}';;
  --version) echo "conda 24.7.1";;
  config) echo '{"get": {}}';;
  *) exit 3;;
esac
"""


def test_sdm_conda_dry_run_plans_with_the_rule_envs(workflow, tmp_path):
    fake = tmp_path / "bin" / "conda"
    fake.parent.mkdir()
    fake.write_text(FAKE_CONDA.replace("PREFIX", str(tmp_path)))
    fake.chmod(0o755)
    result = snakemake(workflow, "-n", "--sdm", "conda", path_prefix=str(fake.parent))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Conda environment envs/actiondiff.yaml will be created." in output


def test_plain_snakemake_loads_the_default_profile(workflow):
    result = snakemake(workflow, "-n")  # no --cores: the profile gives them
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Using workflow specific profile profiles/default" in output
    profile = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert profile["keep-going"] and profile["rerun-incomplete"] and profile["retries"] >= 1


def test_licence_and_catalog_file():
    assert PYPROJECT["project"]["license"]["text"] == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    catalog = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    assert catalog["usage"]["software-stack-deployment"]["conda"] is True and catalog["usage"]["report"] is True
    assert (REPO / "workflow" / "report" / "workflow.rst").is_file()
