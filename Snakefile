# deltatune: LoRA fine-tuning of a State Transition model in cumulative ablation stages,
# each scored with cell-eval on the perturbation effect (pearson_delta).
#
#   snakemake --cores all                         # the embedded default (results/demo)
#   snakemake --cores all --configfile my.yaml    # your own data / checkpoint

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


onstart:
    record_invocation()


# Every rule runs in this image under `--sdm apptainer`: container.image, else containers/images.lock's.
container: WORKFLOW_IMAGE


include: "workflow/rules/data.smk"
include: "workflow/rules/pairing.smk"
include: "workflow/rules/train.smk"


if SEARCH:

    include: "workflow/rules/search.smk"


include: "workflow/rules/predict.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        get_final_output(),
