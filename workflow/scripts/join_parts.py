from videnhance import pipeline
from videnhance.step import rule_step

sm = snakemake  # noqa: F821 - injected by Snakemake
with rule_step(sm) as settings:
    pipeline.join_parts(parts=list(sm.input.parts), meta=sm.input.meta, **sm.output, settings=settings)
