"""The README's demo numbers, written from a finished demo run and checked against one.

    python -m actiondiff.tools.readme_numbers --run --write   # run the default demo fresh, write README + figures
    python -m actiondiff.tools.readme_numbers --run --check   # CI: fail when the README's numbers differ

The block between `START` and `END` in README.md holds the table of heads (top-1 on the unseen
domain, mean +- sample std over seeds, each seed's value), the predict example (how many
held-out clips the seed-0 head of the paper's setting puts first, by `actiondiff predict` on the
video files) and, after `TIMING`, how long the demo took on which CPU. `--check` compares
everything before `TIMING` as text: timing depends on the machine, the numbers must not (the
jobs run the portable CPU kernels, tools/cpu_kernels.py). Where the README also has the
`TAPS_START` / `TAPS_END` markers, the `aggregate` experiment's taps table (the learned mixing
beside single taps) is written and checked between them. `--write` also copies the demo's
figures to docs/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pandas as pd

from actiondiff.report.tables import seeds_text
from actiondiff.tools.cpu_kernels import ENV_VAR, kernel_env

START = "<!-- demo-numbers:start: written by `python -m actiondiff.tools.readme_numbers --run --write`; edit that, not this -->"
TIMING = "<!-- demo-numbers:timing (machine-dependent, not checked) -->"
END = "<!-- demo-numbers:end -->"
# The learned-mixing comparison (README "Which tap?"): the `aggregate` experiment's taps table,
# written and checked where the README has these markers.
TAPS_START = "<!-- demo-taps:start: written by `python -m actiondiff.tools.readme_numbers --run --write`; edit that, not this -->"
TAPS_END = "<!-- demo-taps:end -->"
TAPS_EXPERIMENT = "aggregate"
# The workflow's files a demo run needs (as tests/workflow_copy.py copies them).
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "profiles", "envs")
# The README's figures, from the default demo's run: docs/<name> <- results/figures/<dataset>/<path>.
# A pattern takes its first match in name order (the timelines: one PNG per held-out clip).
FIGURES = {"demo_per_domain_accuracy.png": "actiondiff/per_domain_accuracy.png", "demo_grid.png": "grid/grid.png",
           "demo_mixing.png": "aggregate/mixing.png", "demo_timeline.png": "actiondiff/timelines/*.png"}
HEAD_ORDER = {"transformer": 0, "mlp": 1, "linear": 2}
EXAMPLE_EXPERIMENT = "actiondiff"  # the paper's setting: its seed-0 head is the predict example


def number(value: float, places: str = "0.01") -> str:
    """`value` rounded half up (as the tables and figures round), trailing zeros dropped."""
    text = str(Decimal(repr(float(value))).quantize(Decimal(places), rounding=ROUND_HALF_UP))
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class Timing:
    """How long `snakemake` took on the demo: wall and CPU seconds (all jobs), largest job's RSS."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    cores: int
    cpu: str
    day: str

    def line(self) -> str:
        minutes, seconds = divmod(round(self.wall_s), 60)
        return (f"The demo took {minutes} min {seconds} s ({number(self.cpu_s / 60, '0.1')} CPU-minutes, largest job's "
                f"peak RSS {number(self.peak_rss_mb / 1024, '0.1')} GB) with `--cores {self.cores}` on {self.cpu}, "
                f"{self.day}.")


def cpu_name() -> str:
    """The CPU's model name and the machine's core count, e.g. "AMD EPYC (2 cores)"."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model} ({os.cpu_count()} cores)"


def copy_workflow(repo: Path, workdir: Path) -> None:
    """The repository's workflow files into `workdir` (a fresh demo run starts from these alone)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = repo / name
        if source.is_dir():
            shutil.copytree(source, workdir / name, dirs_exist_ok=True)
        else:
            shutil.copy(source, workdir / name)


def run_demo(workdir: Path, cores: int) -> Timing:
    """`snakemake --cores N` in `workdir` (the default profile), timed; raises on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores)], cwd=workdir,
                            capture_output=True, text=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"Expected the demo to finish in {workdir}, but snakemake exited {result.returncode}:\n"
                           f"{result.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu, after.ru_maxrss / 1024, cores, cpu_name(), date.today().isoformat())


def evaluations(workdir: Path, dataset: str) -> list[dict]:
    """Every evaluation JSON of the run (results/eval/<dataset>/<experiment>/<variant>/<tap>/)."""
    paths = sorted((workdir / "results" / "eval" / dataset).glob("*/*/*/evaluation.json"))
    if not paths:
        raise FileNotFoundError(f"Expected evaluations under {workdir / 'results' / 'eval' / dataset}, but found none "
                                f"(is the demo run finished?).")
    return [json.loads(p.read_text()) for p in paths]


def heads_table(runs: list[dict]) -> pd.DataFrame:
    """One row per head of the ablation's baseline and head rows (the paper's setting and Table 4's
    heads): top-1 on the unseen domain, mean +- sample std over seeds and each seed's value."""
    rows = []
    for run in runs:
        if run["run"]["ablation"] not in ("baseline", "head") or run["run"]["variant"] != "main":
            continue
        top1 = run["metrics"]["top1_accuracy"]
        inside = (run.get("in_domain") or {}).get("metrics", {}).get("top1_accuracy", {}).get("mean")
        rows.append({
            "head": run["run"]["head"],
            "experiment": run["run"]["experiment"],
            "tap": run["tap"],
            "top-1 on the unseen domain (%)": f"{number(top1['mean'])} +- {number(top1['std'])}",
            "per seed": ", ".join(number(s["top1_accuracy"]) for s in run["per_seed"]),
            "in-domain (%)": "" if inside is None else number(inside),
            "most frequent class (%)": number(run["baseline"]["metrics"]["top1_accuracy"]),
            "test clips": run["num_test_videos"],
        })
    if not rows:
        raise ValueError("Expected runs of the ablation table's baseline or head rows, but the run has none.")
    frame = pd.DataFrame(rows)
    return frame.sort_values(["head", "experiment"], key=lambda c: c.map(HEAD_ORDER) if c.name == "head" else c)


def predict_example(workdir: Path, dataset: str, runs: list[dict]) -> tuple[str, float]:
    """`actiondiff predict` of the held-out clips with the paper's setting's seed-0 head: the
    README's sentence and how long it took (seconds)."""
    (run,) = [r for r in runs if r["run"]["experiment"] == EXAMPLE_EXPERIMENT and r["run"]["variant"] == "main"]
    model = Path("results/models") / dataset / EXAMPLE_EXPERIMENT / "main" / run["tap"] / "seed0.safetensors"
    manifest = pd.read_csv(workdir / "results" / "manifests" / f"{dataset}.csv")
    test = manifest[manifest.split == "test"]
    truth = dict(zip(test.path.map(lambda p: Path(p).name), test.labels, strict=True))
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "predictions.csv"
        # one thread and the portable kernels, as the jobs run: the same sums in the same order
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        env.update(kernel_env(env.get(ENV_VAR, "portable")))
        start = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "actiondiff", "predict", *test.path, "--model", str(model), "--out", str(out)],
                                cwd=workdir, env=env, capture_output=True, text=True)
        seconds = time.monotonic() - start
        if result.returncode != 0:
            raise RuntimeError(f"Expected `actiondiff predict` to classify the test clips, but it exited "
                               f"{result.returncode}:\n{result.stderr[-3000:]}")
        first = pd.read_csv(out).query("rank == 1")
    right = int((first.path.map(lambda p: Path(p).name).map(truth) == first["class"]).sum())
    evaluated = run["per_seed"][0]["top1_accuracy"]
    sentence = (f"`actiondiff predict` with the seed-0 head of `{EXAMPLE_EXPERIMENT}` ({run['tap']}) puts the true action "
                f"first for {right} of the {len(test)} held-out clips ({number(100 * right / len(test), '0.1')}%; "
                f"its evaluation: {number(evaluated, '0.1')}%).")
    return sentence, seconds


def block(workdir: Path, dataset: str, timing: Timing | None) -> str:
    """The README's demo block for the run in `workdir` (markers included)."""
    runs = evaluations(workdir, dataset)
    table = heads_table(runs)
    seeds = seeds_text([len(r["per_seed"]) for r in runs if r["run"]["ablation"] in ("baseline", "head")])
    chance = number(100 / len(runs[0]["classes"]), "0.1")
    sentence, predict_s = predict_example(workdir, dataset, runs)
    lines = [
        START,
        f"Top-1 accuracy on the unseen domain, mean +- sample std over {seeds} (each seed's value after it); "
        f"chance is {chance}%.",
        "",
        table.to_markdown(index=False, disable_numparse=True),  # every cell as written above
        "",
        sentence,
        "",
        TIMING,
        timing.line() if timing else "Timing: not measured (`--run` measures it).",
        f"The predict example took {round(predict_s)} s.",
        END,
    ]
    return "\n".join(lines)


def taps_block(workdir: Path, dataset: str) -> str:
    """The README's taps block (markers included): the `aggregate` experiment's taps table as written."""
    path = workdir / "results" / "tables" / dataset / TAPS_EXPERIMENT / "taps.md"
    if not path.is_file():
        raise FileNotFoundError(f"Expected the `{TAPS_EXPERIMENT}` experiment's table {path} (the README has the "
                                f"demo-taps markers), but the run has none.")
    return "\n".join([TAPS_START, path.read_text().strip(), TAPS_END])


def blocks(readme: str, workdir: Path, dataset: str, timing: Timing | None) -> dict[tuple[str, str], str]:
    """{(start, end) markers: new block} for every generated block `readme` has markers for."""
    out = {(START, END): block(workdir, dataset, timing)}
    if TAPS_START in readme:
        out[(TAPS_START, TAPS_END)] = taps_block(workdir, dataset)
    return out


def checked_part(text: str) -> str:
    """The part of a block that `--check` compares: everything before `TIMING`."""
    return text.split(TIMING, 1)[0].strip()


def readme_block(readme: str, path: Path, markers: tuple[str, str] = (START, END)) -> tuple[int, int]:
    """Start and end offsets of the block between `markers` in `readme` (markers included).

    Raises:
        ValueError: the markers are missing or out of order, naming the README.
    """
    start, end = readme.find(markers[0]), readme.find(markers[1])
    if start < 0 or end < start:
        name = markers[1].removeprefix("<!-- ").removesuffix(":end -->")
        raise ValueError(f"Expected the {name} markers (`{markers[0][:30]}...` then `{markers[1]}`) in {path}, "
                         f"but they are missing or out of order.")
    return start, end + len(markers[1])


def write(readme_path: Path, new: dict[tuple[str, str], str], figures_from: Path) -> list[str]:
    """Replace the README's blocks with `new` ({markers: block}) and copy the run's figures to
    docs/; returns the figures copied (a run without the grid experiment has no grid figure)."""
    readme = readme_path.read_text()
    for markers, text in new.items():
        start, end = readme_block(readme, readme_path, markers)
        readme = readme[:start] + text + readme[end:]
    readme_path.write_text(readme)
    copied = []
    for name, pattern in FIGURES.items():
        matches = sorted(figures_from.glob(pattern))
        if matches and matches[0].is_file():
            shutil.copy(matches[0], readme_path.parent / "docs" / name)
            copied.append(name)
    return copied


def check(readme_path: Path, new: dict[tuple[str, str], str]) -> list[str]:
    """The checked lines where the README's blocks differ from `new` ({markers: block})
    ("README: ..." / "run: ..."), empty when equal."""
    readme = readme_path.read_text()
    differences = []
    for markers, text in new.items():
        start, end = readme_block(readme, readme_path, markers)
        differences += _line_differences(checked_part(readme[start:end]), checked_part(text))
    return differences


def _line_differences(old_text: str, new_text: str) -> list[str]:
    old_lines, new_lines = old_text.splitlines(), new_text.splitlines()
    differences = []
    for index in range(max(len(old_lines), len(new_lines))):
        old = old_lines[index] if index < len(old_lines) else "(none)"
        fresh = new_lines[index] if index < len(new_lines) else "(none)"
        if old != fresh:
            differences += [f"README: {old}", f"run:    {fresh}"]
    return differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actiondiff.tools.readme_numbers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", default="README.md", help="README with the demo-numbers markers (default README.md)")
    parser.add_argument("--workdir", help="a finished demo run (with --run: where to run it; default a new temporary folder)")
    parser.add_argument("--run", action="store_true", help="run the demo first (the README's workflow files, copied)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores for --run (default 2, as the README says)")
    parser.add_argument("--dataset", default="demo", help="the run's dataset name (default demo)")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="write the block into the README, figures into docs/")
    action.add_argument("--check", action="store_true", help="exit 1 when the README's numbers differ from the run")
    args = parser.parse_args(argv)
    readme = Path(args.readme).resolve()
    if not args.run and not args.workdir:
        parser.error("give --workdir (a finished demo run) or --run")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="actiondiff-demo-")).resolve()
    timing = None
    if args.run:
        copy_workflow(readme.parent, workdir)
        timing = run_demo(workdir, args.cores)
        print(timing.line())
    new = blocks(readme.read_text(), workdir, args.dataset, timing)
    if args.write:
        copied = write(readme, new, workdir / "results" / "figures" / args.dataset)
        left = [f"{name} (no {FIGURES[name]} in the run)" for name in FIGURES if name not in copied]
        print(f"wrote the demo blocks of {readme} and docs/{', docs/'.join(copied)} from {workdir}"
              + (f"; not copied: {', '.join(left)}" if left else ""))
        return 0
    differences = check(readme, new)
    if differences:
        print(f"{readme}'s demo numbers differ from the run in {workdir}; regenerate them with "
              f"`python -m actiondiff.tools.readme_numbers --run --write`:\n" + "\n".join(differences))
        return 1
    print(f"{readme}'s demo numbers match the run in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
