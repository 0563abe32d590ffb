# videnhance: per-video transfer learning for video super-resolution.
# Run:   snakemake --cores all --resources gpu=1
# Docs:  README.md (usage), config/README.md (every config key), profiles/ (workstation: picked up by plain `snakemake`; slurm)
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/video.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/enhance.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),
