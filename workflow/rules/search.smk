# The hyper-parameter search (config `search`): each trial one job, scored on the validation
# perturbations; the winner trains as stage `tuned` (train.smk) and is scored on the test ones.


rule trial:
    input:
        data=f"{RESULTS}/data/target_line.h5ad",
        split=f"{RESULTS}/data/split.tsv",
        base=get_base_model(),
        pairing=pairing_index("target_line", STAGES[SEARCH.start]["pairing"]),
        plates=get_inference_pairing(),
        reference=f"{RESULTS}/data/reference.npz",
    output:
        f"{RESULTS}/search/trials/trial{{trial}}.json",
    log:
        f"{RESULTS}/logs/search/trial{{trial}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/search/trial{{trial}}.tsv"
    params:
        columns=columns_json(),
        checkpoint=checkpoint_settings(),
        perturbations=perturbation_settings(),
        settings=lambda wc: as_json(TRIALS[int(wc.trial)]),
        overrides=lambda wc: as_json(TRIAL_VALUES[int(wc.trial)]),
        inference=as_json(step_settings.inference_settings(config, 0)),
        evaluation=as_json(config["evaluation"]),
        metric=SEARCH.metric,
        accelerator=config["compute"]["accelerator"],
    threads: config["compute"]["train_threads"]
    resources:
        mem_mb=mem_mb("trial"),
        runtime=runtime("trial"),
        gpu=gpus(),
    shell:
        "deltatune trial --data {input.data} --split {input.split} --base {input.base} "
        "--checkpoint {params.checkpoint:q} --perturbations {params.perturbations:q} "
        "--pairing {input.pairing} --plates {input.plates} --reference {input.reference} --columns {params.columns:q} "
        "--settings {params.settings:q} --overrides {params.overrides:q} --inference {params.inference:q} "
        "--evaluation {params.evaluation:q} --metric {params.metric} --trial {wildcards.trial} --out {output} "
        "--threads {threads} --accelerator {params.accelerator} 2> {log}"


rule choose:
    input:
        [f"{RESULTS}/search/trials/trial{k}.json" for k in range(len(TRIALS))],
    output:
        chosen=f"{RESULTS}/search/chosen.json",
        table=f"{RESULTS}/search/trials.tsv",
    log:
        f"{RESULTS}/logs/search/choose.log",
    benchmark:
        f"{RESULTS}/benchmarks/search/choose.tsv"
    resources:
        mem_mb=mem_mb("choose"),
        runtime=runtime("choose"),
    shell:
        "deltatune choose --trials {input} --out {output.chosen} --out-table {output.table} 2> {log}"
