rule pair:
    input:
        f"{RESULTS}/data/{{dataset}}.h5ad",
    output:
        f"{RESULTS}/pairing/{{dataset}}_{{strategy}}.npz",
    log:
        f"{RESULTS}/logs/pair/{{dataset}}_{{strategy}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pair/{{dataset}}_{{strategy}}.tsv"
    params:
        columns=lambda wc: as_json(SETTINGS.pair_columns(wc.strategy)),
        strategy=lambda wc: wc.strategy,
    resources:
        mem_mb=mem_mb("pair"),
        runtime=runtime("pair"),
    shell:
        "deltatune pair --data {input} --columns {params.columns:q} "
        "--strategy {params.strategy} --out {output} 2> {log}"
