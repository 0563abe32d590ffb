from videnhance.pipeline import degrade_gt
from videnhance.step import step

sm = snakemake  # noqa: F821 - injected by Snakemake
with step(sm.log[0], sm.threads, "degrade_gt"):
    degrade_gt(sm.input.ground_truth, sm.output.video, sm.params.scale, sm.params.degradation,
               meta_json=sm.input.meta)
