# Tables and figures, regenerated from evaluations alone (no extraction, no training).
# Every figure and table is wrapped in report(): `snakemake --report report.html` shows them all,
# each table as the HTML page its CSV is written with (report/html_tables.py; a CSV alone would
# only be a download there), next to the CSV.


localrules:
    make_results_table,
    make_ablation_table,
    plot_grid,
    plot_matrix,
    plot_results,
    compare_taps,
    plot_timelines,
    report_extraction,


rule make_results_table:
    input:
        get_protocol_evaluations,
    output:
        csv=report(
            "results/tables/{dataset}/results_{protocol}.csv",
            caption="../report/results_table.rst",
            category="Tables",
            subcategory="{protocol}",
        ),
        markdown="results/tables/{dataset}/results_{protocol}.md",
        html=report(
            "results/tables/{dataset}/results_{protocol}.html",
            caption="../report/results_table.rst",
            category="Tables",
            subcategory="{protocol}",
        ),
    log:
        "logs/make_results_table/{dataset}/{protocol}.log",
    conda:
        "../../envs/actiondiff.yaml"
    shell:
        "actiondiff make-results-table --evaluations {input} --csv {output.csv} --markdown {output.markdown} > {log} 2>&1"


rule make_ablation_table:
    input:
        get_ablation_evaluations,
    output:
        csv=report(
            "results/tables/{dataset}/ablation.csv",
            caption="../report/ablation_table.rst",
            category="Tables",
            subcategory="ablations",
        ),
        markdown="results/tables/{dataset}/ablation.md",
        html=report(
            "results/tables/{dataset}/ablation.html",
            caption="../report/ablation_table.rst",
            category="Tables",
            subcategory="ablations",
        ),
    log:
        "logs/make_ablation_table/{dataset}.log",
    conda:
        "../../envs/actiondiff.yaml"
    shell:
        "actiondiff make-ablation-table --evaluations {input} --csv {output.csv} --markdown {output.markdown} > {log} 2>&1"


rule plot_grid:
    input:
        get_experiment_evaluations,
    output:
        png=report(
            "results/figures/{dataset}/{experiment}/grid.png",
            caption="../report/grid.rst",
            category="{experiment}",
            subcategory="layer x timestep grid",
        ),
        pdf=report(
            "results/figures/{dataset}/{experiment}/grid.pdf",
            caption="../report/grid.rst",
            category="{experiment}",
            subcategory="layer x timestep grid",
        ),
        csv=report(
            "results/tables/{dataset}/{experiment}/grid.csv",
            caption="../report/grid.rst",
            category="{experiment}",
            subcategory="layer x timestep grid",
        ),
        html=report(
            "results/tables/{dataset}/{experiment}/grid.html",
            caption="../report/grid.rst",
            category="{experiment}",
            subcategory="layer x timestep grid",
        ),
    log:
        "logs/plot_grid/{dataset}/{experiment}.log",
    conda:
        "../../envs/actiondiff.yaml"
    shell:
        "actiondiff plot-grid --evaluations {input} --title 'Layer x timestep grid ({wildcards.experiment})'"
        " --csv {output.csv} --png {output.png} --pdf {output.pdf} > {log} 2>&1"


rule plot_matrix:
    input:
        get_experiment_evaluations,
    output:
        matrix_png=report(
            "results/figures/{dataset}/{experiment}/matrix.png",
            caption="../report/matrix.rst",
            category="{experiment}",
            subcategory="domain matrix",
        ),
        matrix_pdf=report(
            "results/figures/{dataset}/{experiment}/matrix.pdf",
            caption="../report/matrix.rst",
            category="{experiment}",
            subcategory="domain matrix",
        ),
        # A folder: the figure (PNG, PDF), or with fewer than 3 domain pairs a page saying why it is not drawn.
        frequency=report(
            directory("results/figures/{dataset}/{experiment}/frequency"),
            patterns=["{name}.png", "{name}.pdf", "{name}.html"],
            caption="../report/frequency.rst",
            category="{experiment}",
            subcategory="action frequency",
        ),
        baseline_png=report(
            "results/figures/{dataset}/{experiment}/baseline.png",
            caption="../report/baseline.rst",
            category="{experiment}",
            subcategory="most frequent class",
        ),
        baseline_pdf=report(
            "results/figures/{dataset}/{experiment}/baseline.pdf",
            caption="../report/baseline.rst",
            category="{experiment}",
            subcategory="most frequent class",
        ),
        csv=report(
            "results/tables/{dataset}/{experiment}/matrix.csv",
            caption="../report/matrix.rst",
            category="{experiment}",
            subcategory="domain matrix",
        ),
        html=report(
            "results/tables/{dataset}/{experiment}/matrix.html",
            caption="../report/matrix.rst",
            category="{experiment}",
            subcategory="domain matrix",
        ),
    log:
        "logs/plot_matrix/{dataset}/{experiment}.log",
    conda:
        "../../envs/actiondiff.yaml"
    shell:
        "actiondiff plot-matrix --evaluations {input} --csv {output.csv}"
        " --matrix-png {output.matrix_png} --matrix-pdf {output.matrix_pdf}"
        " --frequency-dir {output.frequency}"
        " --baseline-png {output.baseline_png} --baseline-pdf {output.baseline_pdf} > {log} 2>&1"


rule compare_taps:
    input:
        unpack(get_compare_inputs),
    output:
        csv=report(
            "results/tables/{dataset}/{experiment}/taps.csv",
            caption="../report/taps.rst",
            category="{experiment}",
            subcategory="which tap",
        ),
        html=report(
            "results/tables/{dataset}/{experiment}/taps.html",
            caption="../report/taps.rst",
            category="{experiment}",
            subcategory="which tap",
        ),
        markdown="results/tables/{dataset}/{experiment}/taps.md",
        weights=report(
            "results/tables/{dataset}/{experiment}/mixing_weights.csv",
            caption="../report/mixing.rst",
            category="{experiment}",
            subcategory="which tap",
        ),
        weights_html=report(
            "results/tables/{dataset}/{experiment}/mixing_weights.html",
            caption="../report/mixing.rst",
            category="{experiment}",
            subcategory="which tap",
        ),
        png=report(
            "results/figures/{dataset}/{experiment}/mixing.png",
            caption="../report/mixing.rst",
            category="{experiment}",
            subcategory="which tap",
        ),
        pdf="results/figures/{dataset}/{experiment}/mixing.pdf",
    log:
        "logs/compare_taps/{dataset}/{experiment}.log",
    conda:
        "../../envs/actiondiff.yaml"
    params:
        models=get_aggregate_models,
        grid=lambda wildcards, input: " ".join(input.grid),
        singles=lambda wildcards, input: " ".join(input.singles),
    shell:
        "actiondiff compare-taps --aggregate {input.aggregate} --models {params.models}"
        " --grid {params.grid} --singles {params.singles} --csv {output.csv} --markdown {output.markdown}"
        " --weights-csv {output.weights} --png {output.png} --pdf {output.pdf} > {log} 2>&1"


rule plot_timelines:
    input:
        store=get_run_store,
        manifest="results/manifests/{dataset}.csv",
        history=get_timeline_history,
    output:
        # A folder: one PNG per held-out (test) video of the experiment's protocol.
        timelines=report(
            directory("results/figures/{dataset}/{experiment}/timelines"),
            patterns=["{name}.png"],
            caption="../report/timelines.rst",
            category="{experiment}",
            subcategory="action timelines",
        ),
    log:
        "logs/plot_timelines/{dataset}/{experiment}.log",
    conda:
        "../../envs/actiondiff.yaml"
    params:
        model=get_timeline_model,
        settings=get_timeline_settings,
        window=config.get("timelines", {}).get("window", 0),
        hop=config.get("timelines", {}).get("hop", 0),
    shell:
        "actiondiff plot-timelines --store {input.store} --manifest {input.manifest} --model {params.model}"
        " --out {output.timelines} --window {params.window} --hop {params.hop} --settings {params.settings:q} > {log} 2>&1"


rule plot_results:
    input:
        evaluation=get_first_evaluation,
    output:
        table=report(
            "results/tables/{dataset}/{experiment}/metrics.csv",
            caption="../report/metrics_table.rst",
            category="{experiment}",
            subcategory="results",
        ),
        html=report(
            "results/tables/{dataset}/{experiment}/metrics.html",
            caption="../report/metrics_table.rst",
            category="{experiment}",
            subcategory="results",
        ),
        markdown="results/tables/{dataset}/{experiment}/metrics.md",
        figure=report(
            "results/figures/{dataset}/{experiment}/per_domain_accuracy.png",
            caption="../report/per_domain_accuracy.rst",
            category="{experiment}",
            subcategory="results",
        ),
        confusion=report(
            "results/figures/{dataset}/{experiment}/confusion.png",
            caption="../report/confusion.rst",
            category="{experiment}",
            subcategory="results",
        ),
    log:
        "logs/plot_results/{dataset}/{experiment}.log",
    conda:
        "../../envs/actiondiff.yaml"
    shell:
        "actiondiff plot-results --evaluation {input.evaluation} --table {output.table} --markdown {output.markdown}"
        " --figure {output.figure} --confusion {output.confusion} > {log} 2>&1"


rule report_extraction:
    input:
        store=ancient("results/stores/{dataset}/{settings_hash}.zarr"),  # see get_run_store
        failures="results/stores/{dataset}/{settings_hash}.failures.csv",
    output:
        settings=report(
            "results/tables/{dataset}/extraction/{settings_hash}.settings.csv",
            caption="../report/extraction_settings.rst",
            category="Extraction",
            subcategory="{settings_hash}",
        ),
        failures=report(
            "results/tables/{dataset}/extraction/{settings_hash}.failures.csv",
            caption="../report/failures.rst",
            category="Extraction",
            subcategory="{settings_hash}",
        ),
        settings_html=report(
            "results/tables/{dataset}/extraction/{settings_hash}.settings.html",
            caption="../report/extraction_settings.rst",
            category="Extraction",
            subcategory="{settings_hash}",
        ),
        failures_html=report(
            "results/tables/{dataset}/extraction/{settings_hash}.failures.html",
            caption="../report/failures.rst",
            category="Extraction",
            subcategory="{settings_hash}",
        ),
    log:
        "logs/report_extraction/{dataset}/{settings_hash}.log",
    conda:
        "../../envs/actiondiff.yaml"
    shell:
        "actiondiff report-extraction --store {input.store} --failures {input.failures}"
        " --settings-csv {output.settings} --failures-csv {output.failures} > {log} 2>&1"
