"""The package layout: stages meet at data, imports only go down (docs/architecture.md)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "actiondiff"
WORKFLOW = PACKAGE.parents[1] / "workflow"

# What each stage may import besides itself. Peers (io / store, features / learn) never meet.
ALLOWED = {
    "settings": set(),
    "io": {"settings"},
    "store": {"settings"},
    "features": {"settings", "io", "store"},
    "learn": {"settings", "io", "store"},
    "report": {"settings", "learn"},
    "plan": {"settings", "io", "features", "learn"},
    "tools": {"settings", "io", "store", "features", "learn", "report", "plan"},
    "cli": {"settings", "io", "store", "features", "learn", "report", "plan", "tools"},
}


def stage(module: str) -> str:
    """`actiondiff.features.weights` -> `features`; the package root is the version only."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "settings"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every actiondiff module `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("actiondiff"):
            assert node.level == 0, f"{path}: relative import"
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if (PACKAGE.parent / f"{node.module}.{alias.name}".replace(".", "/")).exists()
                         or (PACKAGE.parent / (f"{node.module}.{alias.name}".replace(".", "/") + ".py")).exists())
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("actiondiff"))
    return found


MODULES = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_module_belongs_to_a_known_stage():
    assert {stage(m) for m in MODULES} - {"__main__"} <= set(ALLOWED)


def test_no_import_goes_up_or_across_stages():
    bad = []
    for module, targets in MODULES.items():
        here = stage(module)
        if here == "__main__":
            continue
        for target in targets:
            there = stage(target)
            if there != here and there not in ALLOWED[here] and target != "actiondiff":
                bad.append(f"{module} -> {target}")
    assert not bad, "imports against the stage order of docs/architecture.md: " + ", ".join(sorted(bad))


def test_the_module_graph_has_no_cycle():
    graph = {m: {t for t in targets if t in MODULES and t != m} for m, targets in MODULES.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_the_stage_checker_sees_an_upward_import(tmp_path):
    # The rule above would catch `store` importing the SVD extractor (the old store.py did).
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    from actiondiff.features.svd_extractor import SVDExtractor\n")
    targets = imports(module)
    assert "actiondiff.features.svd_extractor" in targets
    assert stage("actiondiff.features.svd_extractor") not in ALLOWED["store"]


def test_store_and_learn_import_no_video_decoder_or_diffusion_model():
    code = ("import sys, actiondiff.store.packed, actiondiff.store.cache, actiondiff.learn.run, "
            "actiondiff.learn.train, actiondiff.report.tables, actiondiff.plan\n"
            "print(sorted(m for m in ('av', 'diffusers', 'open_clip', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"



def test_planning_imports_no_torch():
    """What the workflow imports when Snakemake parses it (every start, every dry run) loads no
    torch: 1.8 s of each `snakemake -n` on the demo (measured 2026-12-07, 3.9 -> 2.1 s)."""
    code = ("import sys, actiondiff.plan, actiondiff.io.manifest, actiondiff.settings, actiondiff.tools.demo_weights, "
            "actiondiff.tools.cpu_kernels\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"

def test_each_rule_runs_the_cli_verb_of_its_name():
    from actiondiff.cli import build_parser

    verbs = set(build_parser()._subparsers._group_actions[0].choices)
    # one verb writes every tiny backbone; the encoder rule passes --backbone
    shared = {"make_tiny_encoder_weights": "make-tiny-weights"}
    rules = []
    for smk in sorted((WORKFLOW / "rules").glob("*.smk")):
        text = smk.read_text()
        for rule, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, flags=re.M):
            called = re.search(r'"actiondiff ([\w-]+)', body)
            if called:
                rules.append(rule)
                assert called.group(1) == shared.get(rule, rule.replace("_", "-")), f"rule {rule} runs {called.group(1)}"
                assert called.group(1) in verbs
    assert len(rules) >= 12
