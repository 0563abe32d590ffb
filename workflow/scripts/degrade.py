from videnhance.pipeline import degrade
from videnhance.step import step

sm = snakemake  # noqa: F821 - injected by Snakemake
with step(sm.log[0], sm.threads, "degrade"):
    degrade(sm.input.frames, sm.output.pairs, sm.params.scale, sm.params.degrade)
