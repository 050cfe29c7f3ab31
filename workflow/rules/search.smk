# The hyper-parameter search (config `search`): each trial one job, scored on the validation
# perturbations; the winner trains as stage `tuned` (train.smk) and is scored on the test ones.


rule trial:
    input:
        data=f"{RESULTS}/data/target_line.h5ad",
        split=f"{RESULTS}/data/split.tsv",
        base=get_base_model(),
        pairing=pairing_index("target_line", SETTINGS.stages[SEARCH.start].pairing),
        plates=get_inference_pairing(),
        reference=f"{RESULTS}/data/reference.npz",
    output:
        f"{RESULTS}/search/trials/trial{{trial}}.json",
    log:
        f"{RESULTS}/logs/search/trial{{trial}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/search/trial{{trial}}.tsv"
    params:
        columns=lambda wc: as_json(SETTINGS.trial_columns(int(wc.trial))),
        checkpoint=as_json(to_dict(SETTINGS.checkpoint)),
        perturbations=as_json(to_dict(SETTINGS.perturbations)),
        settings=lambda wc: as_json(SETTINGS.trial_settings(int(wc.trial))),
        overrides=lambda wc: as_json(SETTINGS.trial_values[int(wc.trial)]),
        inference=as_json(SETTINGS.inference_settings(0)),
        evaluation=as_json(SETTINGS.evaluation_settings("evaluate")),
    threads: SETTINGS.compute.train_threads
    resources:
        mem_mb=mem_mb("trial"),
        runtime=runtime("trial"),
        gpu=gpus(),
        accelerator=accelerator(),
        checkpoint_every=lambda wc: SETTINGS.checkpoint_every(trial=int(wc.trial)),
    shell:
        "deltatune trial --data {input.data} --split {input.split} --base {input.base} "
        "--checkpoint {params.checkpoint:q} --perturbations {params.perturbations:q} "
        "--pairing {input.pairing} --plates {input.plates} --reference {input.reference} --columns {params.columns:q} "
        "--settings {params.settings:q} --overrides {params.overrides:q} --inference {params.inference:q} "
        "--evaluation {params.evaluation:q} --trial {wildcards.trial} --out {output} "
        "--checkpoint-every {resources.checkpoint_every} --threads {threads} "
        "--accelerator {resources.accelerator} 2> {log}"


rule choose:
    input:
        [f"{RESULTS}/search/trials/trial{k}.json" for k in range(len(SETTINGS.trials))],
    output:
        chosen=f"{RESULTS}/search/chosen.json",
        table=f"{RESULTS}/search/trials.tsv",
    log:
        f"{RESULTS}/logs/search/choose.log",
    benchmark:
        f"{RESULTS}/benchmarks/search/choose.tsv"
    params:
        metric=SEARCH.metric,
    resources:
        mem_mb=mem_mb("choose"),
        runtime=runtime("choose"),
    shell:
        "deltatune choose --trials {input} --metric {params.metric} --out {output.chosen} "
        "--out-table {output.table} 2> {log}"
