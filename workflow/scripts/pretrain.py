from videnhance.config import runtime_settings
from videnhance.data import load_image_sources
from videnhance.step import step
from videnhance.train import pretrain

sm = snakemake  # noqa: F821 - injected by Snakemake
with step(sm.log[0], sm.threads, "pretrain"):
    cfg = sm.params.pretrain
    images = load_image_sources(cfg["images"], cfg["max_images"])
    pretrain(images, sm.output.model, sm.output.history, int(sm.wildcards.scale), sm.params.model, cfg,
             sm.params.degrade, runtime_settings(sm.config)["device"])
