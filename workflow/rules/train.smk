# A given checkpoint replaces the pretrained base model: then this rule does not exist.
if not CHECKPOINT:

    rule pretrain:
        input:
            data=f"{RESULTS}/data/base_lines.h5ad",
            pairing=pairing_index("base_lines", config["base_model"]["pretrain"]["pairing"]),
        output:
            directory(f"{RESULTS}/models/base"),
        log:
            f"{RESULTS}/logs/pretrain.log",
        benchmark:
            f"{RESULTS}/benchmarks/pretrain.tsv"
        params:
            columns=columns_json(),
            architecture=as_json(config["base_model"]["architecture"]),
            settings=as_json(config["base_model"]["pretrain"]),
            accelerator=config["compute"]["accelerator"],
            work_dir=f"{RESULTS}/work/base",
        threads: config["compute"]["train_threads"]
        resources:
            mem_mb=mem_mb("pretrain"),
            runtime=runtime("pretrain"),
            gpu=gpus(),
        shell:
            "deltatune pretrain --data {input.data} --pairing {input.pairing} --columns {params.columns:q} "
            "--architecture {params.architecture:q} --settings {params.settings:q} "
            "--out {output} --work-dir {params.work_dir} --threads {threads} "
            "--accelerator {params.accelerator} 2> {log}"


rule finetune:
    input:
        data=f"{RESULTS}/data/target_line.h5ad",
        split=f"{RESULTS}/data/split.tsv",
        base=get_base_model(),
        pairing=get_stage_pairing,
        chosen=get_chosen,
    output:
        directory(f"{RESULTS}/models/{{trained_stage}}/rep{{rep}}"),
    log:
        f"{RESULTS}/logs/finetune/{{trained_stage}}/rep{{rep}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune/{{trained_stage}}/rep{{rep}}.tsv"
    params:
        columns=columns_json(),
        checkpoint=checkpoint_settings(),
        perturbations=perturbation_settings(),
        settings=stage_settings,
        overrides=lambda wc, input: f"--overrides {input.chosen}" if input.chosen else "",
        accelerator=config["compute"]["accelerator"],
        work_dir=lambda wc: f"{RESULTS}/work/{wc.trained_stage}/rep{wc.rep}",
    threads: config["compute"]["train_threads"]
    resources:
        mem_mb=mem_mb("finetune"),
        runtime=runtime("finetune"),
        gpu=gpus(),
    shell:
        "deltatune finetune --data {input.data} --split {input.split} --base {input.base} "
        "--checkpoint {params.checkpoint:q} --perturbations {params.perturbations:q} "
        "--pairing {input.pairing} {params.overrides} "
        "--columns {params.columns:q} --stage {wildcards.trained_stage} "
        "--settings {params.settings:q} --out {output} --work-dir {params.work_dir} "
        "--threads {threads} --accelerator {params.accelerator} 2> {log}"
