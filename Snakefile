# actiondiff: frozen SVD features -> Zarr store -> transformer head -> tables, figures, report.
# Run: snakemake --cores 2 (the embedded demo), or see README.md for your own data and SLURM.

import os

from snakemake.utils import min_version

from actiondiff.tools.cpu_kernels import kernel_env

min_version("9.0")


configfile: "config/config.yaml"


# Every job runs CPU kernels that give the same numbers on any x86-64 CPU (tools/cpu_kernels.py;
# README "Numbers that reproduce"); ACTIONDIFF_CPU_KERNELS=native snakemake ... for the fastest.
os.environ.update(kernel_env(os.environ.get("ACTIONDIFF_CPU_KERNELS", "portable")))


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        get_final_outputs(),
