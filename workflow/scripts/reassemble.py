from videnhance.pipeline import reassemble
from videnhance.step import step

sm = snakemake  # noqa: F821 - injected by Snakemake
with step(sm.log[0], sm.threads, "reassemble"):
    reassemble(sm.input.enhanced, sm.input.source, sm.input.video, sm.output.video, sm.output.side_by_side,
               sm.params.mode, sm.params.encode, sm.input.meta)
