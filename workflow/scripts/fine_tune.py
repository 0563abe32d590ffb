from videnhance.config import runtime_settings
from videnhance.pipeline import skip_fine_tune
from videnhance.step import step
from videnhance.train import fine_tune

sm = snakemake  # noqa: F821 - injected by Snakemake
with step(sm.log[0], sm.threads, "fine_tune"):
    cfg = sm.params.fine_tune
    if cfg["enabled"]:
        fine_tune(sm.input.pairs, sm.input.base, sm.output.model, sm.output.history, sm.output.verdict, cfg,
                  runtime_settings(sm.config)["device"], degrade_cfg=sm.params.degrade)
    else:
        skip_fine_tune(sm.input.base, sm.output.model, sm.output.history, sm.output.verdict)
