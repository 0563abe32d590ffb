from videnhance import pipeline
from videnhance.step import rule_step

sm = snakemake  # noqa: F821 - injected by Snakemake
with rule_step(sm) as settings:
    part = sm.params.get("part")  # evaluate_part: this part's frames (benchmark mode); evaluate: every frame
    pipeline.evaluate(**sm.input, **sm.output, settings=settings, part=tuple(part) if part is not None else None)
