rule pairing_index:
    input:
        f"{RESULTS}/data/{{dataset}}.h5ad",
    output:
        f"{RESULTS}/pairing/{{dataset}}_{{strategy}}.npz",
    log:
        f"{RESULTS}/logs/pairing_index/{{dataset}}_{{strategy}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pairing_index/{{dataset}}_{{strategy}}.tsv"
    params:
        columns=columns_json(),
        strategy=lambda wc: wc.strategy,
    shell:
        "deltatune pair --data {input} --columns {params.columns:q} "
        "--strategy {params.strategy} --out {output} 2> {log}"
