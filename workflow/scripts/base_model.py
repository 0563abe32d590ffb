from videnhance import pipeline
from videnhance.step import rule_step

sm = snakemake  # noqa: F821 - injected by Snakemake
with rule_step(sm) as settings:
    pipeline.base_model(**sm.input, **sm.output, settings=settings)
