# A user's screen (data.path) replaces the simulated one: then this rule does not exist.
if SETTINGS.screen is not None:

    rule simulate:
        output:
            get_screen(),
        log:
            f"{RESULTS}/logs/simulate.log",
        benchmark:
            f"{RESULTS}/benchmarks/simulate.tsv"
        params:
            settings=as_json(to_dict(SETTINGS.screen)),
            out=lambda wc, output: (
                f"--out-dir {os.path.dirname(output[0])}" if SETTINGS.screen.plate_files else f"--out {output[0]}"
            ),
        resources:
            mem_mb=mem_mb("simulate"),
            runtime=runtime("simulate"),
        shell:
            "deltatune simulate --settings {params.settings:q} {params.out} 2> {log}"


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
        checkpoint=as_json(to_dict(SETTINGS.checkpoint)),
    resources:
        mem_mb=mem_mb("genes"),
        runtime=runtime("genes"),
    shell:
        "deltatune genes --base {input.base} --checkpoint {params.checkpoint:q} --out {output} 2> {log}"


# Every configured column is checked (obs only: seconds), first (priority) and beside preprocessing,
# which reads only some of them: renaming a column preprocessing does not read reruns the check, not
# preprocessing and all that follows. A failed check stops the workflow before any training: jobs
# already running finish, none starts. (Preprocessing does not take the check as an input: neither
# as a plain input, which would rerun everything after every check, nor as ancient(), under which
# Snakemake stops looking at the params of every job downstream of a rerun check.)
rule check_obs:
    input:
        screen=get_screen(),
    output:
        f"{RESULTS}/data/obs_check.json",
    log:
        f"{RESULTS}/logs/check_obs.log",
    benchmark:
        f"{RESULTS}/benchmarks/check_obs.tsv"
    params:
        columns=as_json(SETTINGS.columns_for("check_obs")),
        settings=as_json(SETTINGS.check_obs_settings()),
    priority: 100
    resources:
        mem_mb=mem_mb("check_obs"),
        runtime=runtime("check_obs"),
    shell:
        "deltatune check-obs --input {input.screen:q} --columns {params.columns:q} --settings {params.settings:q} "
        "--out {output} 2> {log}"


rule preprocess:
    input:
        screen=get_screen(),
        genes=get_model_genes(),
        split_toml=SETTINGS.preprocess.split.toml or [],
        base_split=BASE_SPLIT or [],
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
        columns=as_json(SETTINGS.columns_for("preprocess")),
        settings=as_json(SETTINGS.preprocess_settings()),
        genes=lambda wc, input: f"--genes {input.genes}" if input.genes else "",
        base_split=lambda wc, input: f"--base-split {shlex.quote(input.base_split)}" if input.base_split else "",
    resources:
        mem_mb=mem_mb("preprocess"),
        runtime=runtime("preprocess"),
    shell:
        "deltatune preprocess --input {input.screen:q} {params.genes} {params.base_split} --columns {params.columns:q} "
        "--settings {params.settings:q} --out-base {output.base} --out-target {output.target} "
        "--out-split {output.split} --out-summary {output.summary} 2> {log}"
