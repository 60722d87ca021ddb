# Tables and figures, regenerated from the evaluation alone (no extraction, no training).


localrules:
    plot_results,


rule plot_results:
    input:
        evaluation=EVALUATION,
    output:
        table=report(
            "results/tables/{dataset}/results.csv",
            caption="../report/results_table.rst",
            category="Results",
            labels={"table": "metrics (CSV)"},
        ),
        markdown="results/tables/{dataset}/results.md",
        figure=report(
            "results/figures/{dataset}/per_domain_accuracy.png",
            caption="../report/per_domain_accuracy.rst",
            category="Results",
            labels={"figure": "unseen-domain accuracy"},
        ),
        confusion=report(
            "results/figures/{dataset}/confusion.png",
            caption="../report/confusion.rst",
            category="Results",
            labels={"figure": "confusion matrix"},
        ),
    log:
        "logs/plot_results/{dataset}.log",
    shell:
        "actiondiff report --evaluation {input.evaluation} --table {output.table} --markdown {output.markdown}"
        " --figure {output.figure} --confusion {output.confusion} > {log} 2>&1"
