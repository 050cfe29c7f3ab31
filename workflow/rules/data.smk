rule simulate:
    output:
        f"{RESULTS}/data/screen.h5ad",
    log:
        f"{RESULTS}/logs/simulate.log",
    benchmark:
        f"{RESULTS}/benchmarks/simulate.tsv"
    params:
        settings=as_json(config["data"].get("simulate", {})),
    shell:
        "deltatune simulate --settings {params.settings:q} --out {output} 2> {log}"


rule preprocess:
    input:
        get_screen(),
    output:
        base=f"{RESULTS}/data/base_lines.h5ad",
        target=f"{RESULTS}/data/target_line.h5ad",
        split=f"{RESULTS}/data/split.tsv",
        summary=f"{RESULTS}/data/preprocess.json",
    log:
        f"{RESULTS}/logs/preprocess.log",
    benchmark:
        f"{RESULTS}/benchmarks/preprocess.tsv"
    params:
        columns=columns_json(),
        settings=as_json(preprocess_settings()),
    shell:
        "deltatune preprocess --input {input} --columns {params.columns:q} "
        "--settings {params.settings:q} --out-base {output.base} --out-target {output.target} "
        "--out-split {output.split} --out-summary {output.summary} 2> {log}"
