from videnhance.pipeline import pretrain_load
from videnhance.step import step

sm = snakemake  # noqa: F821 - injected by Snakemake
with step(sm.log[0], sm.threads, "pretrain_load"):
    user = sm.params.user_checkpoint
    pretrain_load(sm.output.model, int(sm.wildcards.scale), sm.params.model, checkpoint=user,
                  pretrained=None if user else sm.input.checkpoint)
