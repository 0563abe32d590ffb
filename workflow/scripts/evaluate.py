from videnhance.config import runtime_settings
from videnhance.evaluate import evaluate_benchmark, evaluate_selfval
from videnhance.step import step

sm = snakemake  # noqa: F821 - injected by Snakemake
with step(sm.log[0], sm.threads, "evaluate"):
    border = sm.params.evaluate["crop_border"]
    if sm.params.mode == "benchmark":
        evaluate_benchmark(sm.wildcards.video, sm.input.ground_truth, sm.input.input, sm.input.milestone,
                           sm.input.enhanced, sm.params.scale, sm.output.scores, border, sm.output.crops,
                           gt_meta_json=sm.input.meta)
    else:
        evaluate_selfval(sm.wildcards.video, sm.input.pairs, sm.input.base, sm.input.model, sm.output.scores,
                         border, runtime_settings(sm.config)["device"], sm.output.crops)
