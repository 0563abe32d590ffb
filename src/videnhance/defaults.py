"""The measured defaults (docs/quality.md), torch-free so the workflow reads them while it builds
the job graph: `checkpoint: auto`, the base per scale (`base_for`), and `fine_tune.lr: auto`, the
rate per base (`fine_tune_lr`)."""

from __future__ import annotations

from .weights import PREFIX

AUTO = "auto"
# scale → the default base: the strongest measured on the benchmark protocol (docs/quality.md,
# "the bases"): SPAN at ×2 and ×4 (Set5/Set14/BSD100 above every other base; ch48 and ch52 tie
# within 0.02 dB, and ch48 costs 15 % less), SRMDNF at ×3 (the only ×3 network that ships); at ×1
# our own `pretrain`
DEFAULT_BASES = {2: PREFIX + "spanx2_ch48", 3: PREFIX + "srmdnf_x3", 4: PREFIX + "spanx4_ch48"}
DEFAULT_ARCH = "srresnet"  # `auto` chooses for the default architecture; another arch is pretrained as asked
# fine_tune.lr: auto → the peak rate measured per base (docs/quality.md). By architecture where it
# was measured; else by kind: a residual net of ours (zero tail = bicubic) takes 2e-3 (the ×2
# sweep), a network trained elsewhere to full output 2e-4 (waifu2x, animevideov3).
AUTO_LR = {"span": 3e-4, "srmd": 1e-4, "upconv7": 2e-4}
AUTO_LR_BY_KIND = {"residual": 2e-3, "full_output": 2e-4}


def base_for(checkpoint: str | dict | None, scale: int, arch: str = DEFAULT_ARCH) -> str | None:
    """The base source at `scale` for the `checkpoint` setting: a file or `package:NAME`, or None
    (train one with `pretrain`). A mapping gives one per scale; a scale it does not list is `auto`."""
    if isinstance(checkpoint, dict):
        checkpoint = checkpoint.get(scale, checkpoint.get(str(scale), AUTO))
    if checkpoint == AUTO:
        return DEFAULT_BASES.get(int(scale)) if arch == DEFAULT_ARCH else None
    return checkpoint or None


def fine_tune_lr(lr: float | str, arch: str, residual: bool) -> float:
    """The fine-tuning peak rate: `lr` as configured, or for `auto` the rate measured for this
    architecture, else for its kind of base (residual over bicubic or full output)."""
    if lr == AUTO:
        return AUTO_LR.get(arch, AUTO_LR_BY_KIND["residual" if residual else "full_output"])
    return float(lr)
