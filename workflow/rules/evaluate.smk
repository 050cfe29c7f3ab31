rule infer:
    input:
        data=f"{RESULTS}/data/target_line.h5ad",
        split=f"{RESULTS}/data/split.tsv",
        base=get_base_model(),
        adapter=get_adapter,
        pairing=get_inference_pairing(),
    output:
        f"{RESULTS}/predictions/{{stage}}/rep{{rep}}.h5ad",
    log:
        f"{RESULTS}/logs/infer/{{stage}}/rep{{rep}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/infer/{{stage}}/rep{{rep}}.tsv"
    params:
        columns=columns_json(),
        checkpoint=checkpoint_settings(),
        perturbations=perturbation_settings(),
        settings=inference_settings,
        adapter=lambda wc, input: f"--adapter {input.adapter}" if input.adapter else "",
    threads: config["compute"]["train_threads"]
    resources:
        gpu=gpus(),
    shell:
        "deltatune infer --data {input.data} --split {input.split} --base {input.base} "
        "--checkpoint {params.checkpoint:q} --perturbations {params.perturbations:q} "
        "{params.adapter} --pairing {input.pairing} --columns {params.columns:q} --settings {params.settings:q} "
        "--out {output} --threads {threads} 2> {log}"


rule baseline:
    input:
        unpack(get_baseline_inputs),
        data=f"{RESULTS}/data/target_line.h5ad",
        split=f"{RESULTS}/data/split.tsv",
    output:
        f"{RESULTS}/predictions/{{baseline}}/rep0.h5ad",
    log:
        f"{RESULTS}/logs/baseline/{{baseline}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/baseline/{{baseline}}.tsv"
    params:
        columns=columns_json(),
        kind=lambda wc: wc.baseline,
        base=lambda wc, input: (
            f"--base-data {input.base_data} --base-pairing {input.base_pairing}"
            if "base_data" in input.keys()
            else ""
        ),
    shell:
        "deltatune baseline --kind {params.kind} --data {input.data} --split {input.split} "
        "--pairing {input.pairing} {params.base} --columns {params.columns:q} --out {output} 2> {log}"


rule evaluate:
    input:
        data=f"{RESULTS}/data/target_line.h5ad",
        split=f"{RESULTS}/data/split.tsv",
        predicted=f"{RESULTS}/predictions/{{scored}}/rep{{rep}}.h5ad",
    output:
        metrics=f"{RESULTS}/metrics/{{scored}}/rep{{rep}}.tsv",
        matching=f"{RESULTS}/metrics/{{scored}}/rep{{rep}}.matching.json",
    log:
        f"{RESULTS}/logs/evaluate/{{scored}}/rep{{rep}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{scored}}/rep{{rep}}.tsv"
    params:
        columns=columns_json(),
        settings=as_json(config["evaluation"]),
    threads: config["compute"]["eval_threads"]
    shell:
        "deltatune evaluate --data {input.data} --split {input.split} "
        "--predicted {input.predicted} --columns {params.columns:q} "
        "--settings {params.settings:q} --out {output.metrics} --out-matching {output.matching} "
        "--threads {threads} 2> {log}"


rule ceiling:
    input:
        data=f"{RESULTS}/data/target_line.h5ad",
        split=f"{RESULTS}/data/split.tsv",
    output:
        f"{RESULTS}/metrics/ceiling/rep{{rep}}.tsv",
    log:
        f"{RESULTS}/logs/ceiling/rep{{rep}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ceiling/rep{{rep}}.tsv"
    params:
        columns=columns_json(),
        settings=as_json(config["evaluation"]),
    threads: config["compute"]["eval_threads"]
    shell:
        "deltatune ceiling --data {input.data} --split {input.split} --columns {params.columns:q} "
        "--settings {params.settings:q} --seed {wildcards.rep} --out {output} --threads {threads} 2> {log}"
