rule report:
    input:
        metrics=expand(f"{RESULTS}/metrics/{{scored}}.tsv", scored=SCORED),
        stages=expand(f"{RESULTS}/models/{{stage}}", stage=list(STAGES)),
    output:
        summary=f"{RESULTS}/report/summary.csv",
        markdown=f"{RESULTS}/report/report.md",
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    params:
        metrics=lambda wc, input: [f"{s}={p}" for s, p in zip(SCORED, input.metrics)],
        stages=lambda wc, input: [f"{s}={p}/summary.json" for s, p in zip(STAGES, input.stages)],
        context=as_json(
            {
                "run": RUN,
                "target_cell_line": config["data"]["target_cell_line"],
                "profile": config["evaluation"]["profile"],
            }
        ),
    shell:
        "deltatune report --metrics {params.metrics:q} --stage-summaries {params.stages:q} "
        "--context {params.context:q} --out-summary {output.summary} "
        "--out-markdown {output.markdown} 2> {log}"
