# A given checkpoint replaces the pretrained base model: then this rule does not exist.
if not CHECKPOINT:

    rule pretrain:
        input:
            data=f"{RESULTS}/data/base_lines.h5ad",
            pairing=pairing_index("base_lines", SETTINGS.pretrain.pairing),
        output:
            directory(f"{RESULTS}/models/base"),
        log:
            f"{RESULTS}/logs/pretrain.log",
        benchmark:
            f"{RESULTS}/benchmarks/pretrain.tsv"
        params:
            columns=as_json(SETTINGS.columns_for("pretrain", stage=SETTINGS.pretrain)),
            architecture=as_json(to_dict(SETTINGS.architecture)),
            settings=as_json(SETTINGS.pretrain_settings()),
            work_dir=f"{RESULTS}/work/base",
        threads: SETTINGS.compute.train_threads
        resources:
            mem_mb=mem_mb("pretrain"),
            runtime=runtime("pretrain"),
            gpu=gpus(),
            accelerator=accelerator(),
            checkpoint_every=SETTINGS.checkpoint_every(),
        shell:
            "deltatune pretrain --data {input.data} --pairing {input.pairing} --columns {params.columns:q} "
            "--architecture {params.architecture:q} --settings {params.settings:q} "
            "--out {output} --work-dir {params.work_dir} --checkpoint-every {resources.checkpoint_every} "
            "--threads {threads} --accelerator {resources.accelerator} 2> {log}"


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
        columns=lambda wc: as_json(SETTINGS.stage_columns(wc.trained_stage)),
        checkpoint=as_json(to_dict(SETTINGS.checkpoint)),
        perturbations=as_json(to_dict(SETTINGS.perturbations)),
        settings=lambda wc: as_json(SETTINGS.stage_settings(wc.trained_stage, int(wc.rep))),
        overrides=lambda wc, input: f"--overrides {input.chosen}" if input.chosen else "",
        work_dir=lambda wc: f"{RESULTS}/work/{wc.trained_stage}/rep{wc.rep}",
    threads: SETTINGS.compute.train_threads
    resources:
        mem_mb=mem_mb("finetune"),
        runtime=runtime("finetune"),
        gpu=gpus(),
        accelerator=accelerator(),
        checkpoint_every=lambda wc: SETTINGS.checkpoint_every(stage=wc.trained_stage),
    shell:
        "deltatune finetune --data {input.data} --split {input.split} --base {input.base} "
        "--checkpoint {params.checkpoint:q} --perturbations {params.perturbations:q} "
        "--pairing {input.pairing} {params.overrides} "
        "--columns {params.columns:q} --stage {wildcards.trained_stage} "
        "--settings {params.settings:q} --out {output} --work-dir {params.work_dir} "
        "--checkpoint-every {resources.checkpoint_every} "
        "--threads {threads} --accelerator {resources.accelerator} 2> {log}"
