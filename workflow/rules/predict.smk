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
        columns=as_json(SETTINGS.columns_for("infer")),
        checkpoint=as_json(to_dict(SETTINGS.checkpoint)),
        perturbations=as_json(to_dict(SETTINGS.perturbations)),
        settings=lambda wc: as_json(SETTINGS.inference_settings(int(wc.rep))),
        adapter=lambda wc, input: f"--adapter {input.adapter}" if input.adapter else "",
    threads: SETTINGS.compute.train_threads
    resources:
        mem_mb=mem_mb("infer"),
        runtime=runtime("infer"),
        gpu=gpus(),
        accelerator=accelerator(),
    shell:
        "deltatune infer --data {input.data} --split {input.split} --base {input.base} "
        "--checkpoint {params.checkpoint:q} --perturbations {params.perturbations:q} "
        "{params.adapter} --pairing {input.pairing} --columns {params.columns:q} --settings {params.settings:q} "
        "--out {output} --threads {threads} --accelerator {resources.accelerator} 2> {log}"


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
        columns=lambda wc: as_json(SETTINGS.baseline_columns(wc.baseline)),
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
