from videnhance import pipeline
from videnhance.step import rule_step

sm = snakemake  # noqa: F821 - injected by Snakemake
with rule_step(sm) as settings:
    part = sm.params.get("part")  # infer_part: this part's frames; infer: the whole video
    pipeline.infer(**sm.input, **sm.output, settings=settings, single_frame=sm.wildcards.which == "single_frame",
                   part=tuple(part) if part is not None else None)
