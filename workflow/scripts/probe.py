from videnhance.pipeline import probe_video
from videnhance.step import step

sm = snakemake  # noqa: F821 - injected by Snakemake
with step(sm.log[0], sm.threads, "probe"):
    probe_video(sm.input.video, sm.output.meta, sm.params.scale, sm.params.mode)
