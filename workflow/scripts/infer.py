from videnhance.config import runtime_settings
from videnhance.pipeline import infer
from videnhance.step import step

sm = snakemake  # noqa: F821 - injected by Snakemake
with step(sm.log[0], sm.threads, "infer"):
    run = runtime_settings(sm.config)
    infer(sm.input.model, sm.input.video, sm.output.video, sm.params.mode, sm.params.encode, run["infer"],
          run["device"], meta_json=sm.input.meta if "meta" in sm.input.keys() else None)
