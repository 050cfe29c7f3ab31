rule report:
    input:
        unpack(get_report_inputs),
    output:
        summary=report(
            f"{RESULTS}/report/summary.csv",
            caption="../report/summary.rst",
            category="Comparison",
        ),
        comparison=report(
            f"{RESULTS}/report/comparison.csv",
            caption="../report/comparison.rst",
            category="Comparison",
        ),
        html=report(
            f"{RESULTS}/report/report.html",
            caption="../report/report_html.rst",
            category="Comparison",
        ),
        figures=report(
            directory(f"{RESULTS}/report/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
        provenance=f"{RESULTS}/report/provenance.json",
        manifest=f"{RESULTS}/report/manifest.json",
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    params:
        manifest=report_manifest,
        config=as_json(SETTINGS.effective(), sort_keys=False),
        out_dir=lambda wc, output: os.path.dirname(output.summary),
    resources:
        mem_mb=mem_mb("report"),
        runtime=runtime("report", hashed=get_screen()),
    shell:
        "deltatune report --manifest {params.manifest:q} --config {params.config:q} "
        "--out-dir {params.out_dir} 2> {log}"


# `snakemake effective_config --configfile my.yaml`: the settings a run would use, every default
# filled in (the config provenance.json records), printed before a run and kept in the file. It
# reruns, and prints, when a setting changes; otherwise the file holds what it printed.
rule effective_config:
    output:
        f"{RESULTS}/effective_config.yaml",
    log:
        f"{RESULTS}/logs/effective_config.log",
    benchmark:
        f"{RESULTS}/benchmarks/effective_config.tsv"
    params:
        config=as_json(SETTINGS.effective(), sort_keys=False),
    localrule: True
    shell:
        "deltatune config --config {params.config:q} --out {output} 2> {log}"
