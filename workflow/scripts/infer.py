from videnhance import pipeline
from videnhance.step import rule_step

sm = snakemake  # noqa: F821 - injected by Snakemake
with rule_step(sm) as settings:
    pipeline.infer(**sm.input, **sm.output, settings=settings, single_frame=sm.wildcards.which == "single_frame")
