rule simulate:
    output:
        f"{RESULTS}/data/screen.h5ad",
    log:
        f"{RESULTS}/logs/simulate.log",
    benchmark:
        f"{RESULTS}/benchmarks/simulate.tsv"
    params:
        settings=as_json(config["data"].get("simulate", {})),
    resources:
        mem_mb=mem_mb("simulate"),
        runtime=runtime("simulate"),
    shell:
        "deltatune simulate --settings {params.settings:q} --out {output} 2> {log}"


rule genes:
    input:
        unpack(get_checkpoint_inputs),
    output:
        f"{RESULTS}/data/model_genes.txt",
    log:
        f"{RESULTS}/logs/genes.log",
    benchmark:
        f"{RESULTS}/benchmarks/genes.tsv"
    params:
        checkpoint=checkpoint_settings(),
    resources:
        mem_mb=mem_mb("genes"),
        runtime=runtime("genes"),
    shell:
        "deltatune genes --base {input.base} --checkpoint {params.checkpoint:q} --out {output} 2> {log}"


rule preprocess:
    input:
        screen=get_screen(),
        genes=get_model_genes(),
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
        settings=preprocess_settings(),
        genes=lambda wc, input: f"--genes {input.genes}" if input.genes else "",
    resources:
        mem_mb=mem_mb("preprocess"),
        runtime=runtime("preprocess"),
    shell:
        "deltatune preprocess --input {input.screen} {params.genes} --columns {params.columns:q} "
        "--settings {params.settings:q} --out-base {output.base} --out-target {output.target} "
        "--out-split {output.split} --out-summary {output.summary} 2> {log}"
