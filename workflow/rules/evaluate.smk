rule reference:
    input:
        data=f"{RESULTS}/data/target_line.h5ad",
        split=f"{RESULTS}/data/split.tsv",
    output:
        f"{RESULTS}/data/reference.npz",
    log:
        f"{RESULTS}/logs/reference.log",
    benchmark:
        f"{RESULTS}/benchmarks/reference.tsv"
    params:
        columns=as_json(SETTINGS.columns_for("reference")),
    resources:
        mem_mb=mem_mb("reference"),
        runtime=runtime("reference"),
    shell:
        "deltatune reference --data {input.data} --split {input.split} --columns {params.columns:q} "
        "--out {output} 2> {log}"


rule evaluate:
    input:
        data=f"{RESULTS}/data/target_line.h5ad",
        split=f"{RESULTS}/data/split.tsv",
        predicted=f"{RESULTS}/predictions/{{scored}}/rep{{rep}}.h5ad",
        reference=f"{RESULTS}/data/reference.npz",
    output:
        metrics=f"{RESULTS}/metrics/{{scored}}/rep{{rep}}.tsv",
        matching=f"{RESULTS}/metrics/{{scored}}/rep{{rep}}.matching.json",
    log:
        f"{RESULTS}/logs/evaluate/{{scored}}/rep{{rep}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{scored}}/rep{{rep}}.tsv"
    params:
        columns=as_json(SETTINGS.columns_for("evaluate")),
        settings=as_json(SETTINGS.evaluation_settings("evaluate")),
    threads: SETTINGS.compute.eval_threads
    resources:
        mem_mb=mem_mb("evaluate"),
        runtime=runtime("evaluate"),
    shell:
        "deltatune evaluate --data {input.data} --split {input.split} --reference {input.reference} "
        "--predicted {input.predicted} --columns {params.columns:q} "
        "--settings {params.settings:q} --out {output.metrics} --out-matching {output.matching} "
        "--threads {threads} 2> {log}"


rule ceiling:
    input:
        data=f"{RESULTS}/data/target_line.h5ad",
        split=f"{RESULTS}/data/split.tsv",
        reference=f"{RESULTS}/data/reference.npz",
    output:
        f"{RESULTS}/metrics/ceiling/rep{{rep}}.tsv",
    log:
        f"{RESULTS}/logs/ceiling/rep{{rep}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ceiling/rep{{rep}}.tsv"
    params:
        columns=as_json(SETTINGS.columns_for("ceiling")),
        settings=as_json(SETTINGS.evaluation_settings("ceiling")),
    threads: SETTINGS.compute.eval_threads
    resources:
        mem_mb=mem_mb("ceiling"),
        runtime=runtime("ceiling"),
    shell:
        "deltatune ceiling --data {input.data} --split {input.split} --reference {input.reference} "
        "--columns {params.columns:q} "
        "--settings {params.settings:q} --seed {wildcards.rep} --out {output} --threads {threads} 2> {log}"
