# actiondiff: frozen SVD features -> Zarr store -> transformer head -> tables, figures, report.
# Run: snakemake --cores 2 (the embedded demo), or see README.md for your own data and SLURM.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        get_final_outputs(),
