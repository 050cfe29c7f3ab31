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
        accelerator=config["compute"]["accelerator"],
    threads: config["compute"]["train_threads"]
    resources:
        mem_mb=mem_mb("infer"),
        runtime=runtime("infer"),
        gpu=gpus(),
    shell:
        "deltatune infer --data {input.data} --split {input.split} --base {input.base} "
        "--checkpoint {params.checkpoint:q} --perturbations {params.perturbations:q} "
        "{params.adapter} --pairing {input.pairing} --columns {params.columns:q} --settings {params.settings:q} "
        "--out {output} --threads {threads} --accelerator {params.accelerator} 2> {log}"


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
    resources:
        mem_mb=mem_mb("baseline"),
        runtime=runtime("baseline"),
    shell:
        "deltatune baseline --kind {params.kind} --data {input.data} --split {input.split} "
        "--pairing {input.pairing} {params.base} --columns {params.columns:q} --out {output} 2> {log}"
