from videnhance.pipeline import extract
from videnhance.step import step

sm = snakemake  # noqa: F821 - injected by Snakemake
with step(sm.log[0], sm.threads, "extract"):
    extract(sm.input.video, sm.output.frames, sm.params.extract["frames"], sm.params.extract["val_fraction"],
            meta_json=sm.input.meta if "meta" in sm.input.keys() else None)
