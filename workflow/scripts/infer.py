from videnhance.pipeline import infer
from videnhance.step import step

sm = snakemake  # noqa: F821 - injected by Snakemake
with step(sm.log[0], sm.threads, "infer"):
    infer(sm.input.model, sm.input.video, sm.output.video, sm.params.mode, sm.params.encode, sm.params.infer,
          sm.params.device, meta_json=sm.input.meta if "meta" in sm.input.keys() else None)
