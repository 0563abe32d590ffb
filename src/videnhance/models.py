"""Networks (plain nn.Modules built from keyword arguments, registered in `archs`) and the model
file format.

A model file is a state_dict plus a small header: arch name, its kwargs, scale, provenance.
Loading never unpickles code (`torch.load(weights_only=True)` or safetensors) and checks the
arch and scale with a message a user can act on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .archs import Arch, get_arch
from .errors import ModelFileError

FORMAT = "videnhance-model"
FORMAT_VERSION = 1


class ResBlock(nn.Module):
    def __init__(self, channels: int, res_scale: float):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x), inplace=True)) * self.res_scale


class SRResNet(nn.Module):
    """The fast default: EDSR-like residual blocks in low-resolution space, pixel-shuffle
    upsampling, and a global residual over the bicubic upscale (so an untrained net ≈ bicubic).

    Input and output are RGB in [0, 1], (n, 3, h, w) → (n, 3, h·scale, w·scale).
    """

    def __init__(self, scale: int, channels: int, blocks: int, res_scale: float = 1.0):
        super().__init__()
        if scale not in (1, 2, 3, 4, 8):
            raise ValueError(f"SRResNet supports scale 1, 2, 3, 4, 8, not {scale}")
        self.scale = scale
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(channels, res_scale) for _ in range(blocks)],
                                  nn.Conv2d(channels, channels, 3, padding=1))
        up: list[nn.Module] = []
        steps = {1: [], 2: [2], 3: [3], 4: [2, 2], 8: [2, 2, 2]}[scale]
        for r in steps:
            up += [nn.Conv2d(channels, channels * r * r, 3, padding=1), nn.PixelShuffle(r)]
        self.upsample = nn.Sequential(*up)
        self.tail = nn.Conv2d(channels, 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # start as bicubic: training only has to learn the detail
        nn.init.zeros_(self.tail.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The low-resolution features the upsampler renders (a multi-frame model adds to them)."""
        feat = self.head(x - 0.5)
        return feat + self.body(feat)

    def render(self, x: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """The output: bicubic upscale of `x` plus the detail rendered from `feat`."""
        base = x if self.scale == 1 else F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return base + self.tail(self.upsample(feat))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.render(x, self.features(x))


class UNetSR(nn.Module):
    """The seed's model: a fastai DynamicUnet (resnet34 encoder, blur, weight norm) on the
    bicubic-upscaled input, predicting a residual over it. No pretrained encoder (offline)."""

    def __init__(self, scale: int, encoder: str, img_size: int = 128):
        super().__init__()
        from fastai.vision.all import DynamicUnet, NormType, create_body
        from torchvision import models as tvm

        self.scale = scale
        arch = getattr(tvm, encoder)
        body = create_body(arch(weights=None), pretrained=False)
        self.unet = DynamicUnet(body, n_out=3, img_size=(img_size, img_size), blur=True,
                                norm_type=NormType.Weight, self_attention=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = x if self.scale == 1 else F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return base + self.unet(base - 0.5)


def build_model(arch: str, scale: int, **kwargs: Any) -> nn.Module:
    """A freshly initialised network of a registered architecture (`archs`)."""
    return get_arch(arch).build(scale, **kwargs)


@dataclass(frozen=True)
class LoadedModel:
    """A model file, loaded: the network (eval mode, CPU), its architecture's descriptor, the
    scale and constructor arguments it was built with, and where it came from."""

    module: nn.Module
    arch: Arch
    scale: int
    kwargs: dict
    provenance: dict
    source: Path

    @property
    def frames_in(self) -> int:
        """Input frames per output frame (`archs.Arch.frames`)."""
        return self.arch.frames(self.kwargs)

    @property
    def bf16(self) -> bool:
        """Whether it may run under bfloat16 autocast: the architecture's say, and for a community
        network what spandrel reports for it."""
        return self.arch.bf16 and bool(self.kwargs.get("bf16", True))

    def single_frame(self) -> LoadedModel | None:
        """The single-frame network a multi-frame one is built around (its `single`, as the Arch
        contract names it), as a model of its own; None for a single-frame model."""
        if self.frames_in == 1:
            return None
        arch = get_arch("srresnet")
        kwargs = {key: self.kwargs[key] for key in arch.config_keys}
        return LoadedModel(self.module.single, arch, self.scale, kwargs,
                           {**self.provenance, "single_frame_of": self.arch.name}, self.source)

    def save(self, path: str | Path, provenance: dict, module: nn.Module | None = None) -> None:
        """Write `module` (default: this one) in our format, as this architecture and scale."""
        save_model(module if module is not None else self.module, path, self.arch.name, self.scale, self.kwargs,
                   provenance)


def save_model(model: nn.Module, path: str | Path, arch: str, scale: int, kwargs: dict,
               provenance: dict | None = None) -> None:
    from .files import atomic_output

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": arch, "scale": int(scale),
               "kwargs": dict(kwargs), "provenance": json.dumps(provenance or {}), "state_dict": state}
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def _load_payload(path: Path) -> dict:
    """Our header (arch, scale, kwargs, provenance; absent for a plain state_dict) and the tensors."""
    if not path.is_file():
        raise ModelFileError(f"{path}: checkpoint file not found. Fix `checkpoint` in the config, "
                             "or remove it to use the pipeline's own pretrained model.")
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
        header = json.loads(meta.get(FORMAT, "{}"))
        if not header:  # a plain state_dict: unwrap it as for .pth below
            from spandrel import canonicalize_state_dict

            state = canonicalize_state_dict(state)
        return {**header, "state_dict": state, "metadata": {k: v for k, v in meta.items() if k != FORMAT}}
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, …
        raise ModelFileError(
            f"{path}: not a loadable weights file ({type(err).__name__}: {str(err)[:200]}). Only plain "
            "state_dicts and videnhance model files are accepted; pickled code is refused."
        ) from err
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        return payload
    if isinstance(payload, dict):
        from spandrel import canonicalize_state_dict  # unwraps params_ema, "module." prefixes, …

        state = canonicalize_state_dict(payload)
        if state and all(isinstance(v, torch.Tensor) for v in state.values()):
            return {"state_dict": state}  # a bare state_dict: arch/scale come from the config or spandrel
    raise ModelFileError(f"{path}: not a videnhance model file or a state_dict.")


def _fit(model: nn.Module, state: dict) -> list[str]:
    """Load `state` into `model`; what did not fit (empty: all of it did)."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # tensor shapes differ
        return [str(err).splitlines()[1].strip()]
    return [*missing, *unexpected]


def load_model(path: str | Path, arch: str | None = None, scale: int | None = None,
               kwargs: dict | None = None) -> LoadedModel:
    """Load a checkpoint; `arch`/`scale`/`kwargs` are what the configuration expects.

    A header in the file wins over `kwargs`, but its arch and scale must match what was asked for.
    A plain state_dict is loaded as the configured architecture if it fits it, else as the
    community architecture spandrel recognises in it (`community`).
    """
    path = Path(path)
    payload = _load_payload(path)
    state = payload["state_dict"]
    file_arch, file_scale = payload.get("arch"), payload.get("scale")
    if arch and file_arch and file_arch != arch and not get_arch(file_arch).from_weights:
        raise ModelFileError(f"{path}: holds a {file_arch!r} model, the config asks for {arch!r}. "
                             f"Set model.arch: {file_arch} or use another checkpoint.")
    if not file_arch:
        return _load_plain(path, state, arch, scale, kwargs, payload.get("metadata") or {})
    if scale and int(file_scale) != int(scale):
        raise ModelFileError(f"{path}: is a ×{file_scale} model, this video needs ×{scale}. "
                             f"Use a ×{scale} checkpoint or set scale: {file_scale}.")
    model_kwargs = payload.get("kwargs") or dict(kwargs or {})
    descriptor = get_arch(file_arch)
    model = descriptor.build(int(file_scale), state_dict=state, **model_kwargs)
    misfit = _fit(model, state)
    if misfit:
        raise ModelFileError(f"{path}: damaged model file: its weights do not fit the ×{file_scale} {file_arch} "
                             f"it describes (e.g. {misfit[:3]}).")
    provenance = payload.get("provenance") or "{}"
    provenance = json.loads(provenance) if isinstance(provenance, str) else dict(provenance)
    return LoadedModel(model.eval(), descriptor, int(file_scale), model_kwargs, provenance, path)


def _load_plain(path: Path, state: dict, arch: str | None, scale: int | None, kwargs: dict | None,
                metadata: dict) -> LoadedModel:
    """A state_dict without our header: the configured architecture if it fits, else spandrel's.
    `metadata`: a safetensors file's own (`import-weights` writes the network and its licence)."""
    from .community import recognise, refuse_unsafe

    asked = get_arch(arch) if arch else None
    misfit: list[str] = []
    if asked is not None and not asked.from_weights:
        if not scale:
            raise ModelFileError(f"{path}: a bare state_dict needs model.arch and scale in the config.")
        if kwargs is None:  # sizes not given: the schema's (`model.*` defaults), the one home of defaults
            from .settings import Model

            kwargs = asked.kwargs_from(Model.defaults(arch=asked.name))
        model = asked.build(int(scale), **dict(kwargs))
        misfit = _fit(model, state)
        if not misfit:
            return LoadedModel(model.eval(), asked, int(scale), dict(kwargs or {}), dict(metadata), path)
        if asked.frames(dict(kwargs or {})) > 1:
            raise ModelFileError(f"{path}: weights do not fit a ×{scale} {arch} with {kwargs} (e.g. {misfit[:3]}). "
                                 "Check model.* in the config.")
    refuse_unsafe(path)
    try:
        model, file_scale, info = recognise(path, state)
    except ModelFileError as err:
        if misfit:
            raise ModelFileError(f"{path}: weights do not fit a ×{scale} {arch} with {kwargs} (e.g. {misfit[:3]}), "
                                 "and spandrel does not recognise them either. Check model.channels/blocks in "
                                 "the config.") from err
        raise
    if scale and file_scale != int(scale):
        raise ModelFileError(f"{path}: is a ×{file_scale} {info['name']} model, this video needs ×{scale}. "
                             f"Use a ×{scale} checkpoint or set scale: {file_scale}.")
    provenance = {**metadata, "community": info["name"], "file": str(path)}
    return LoadedModel(model.eval(), get_arch("spandrel"), file_scale, info, provenance, path)


def describe_base(path: str | Path) -> dict:
    """What the report says about a base model file: where it came from, its network, its size
    and, where known, its licence."""
    loaded = load_model(path)
    prov = loaded.provenance
    source = prov.get("source_provenance") or {}
    network = loaded.kwargs.get("name") if loaded.arch.from_weights else loaded.arch.name
    if loaded.kwargs.get("tags"):
        network += f" ({', '.join(loaded.kwargs['tags'])})"
    if source.get("network"):  # converted from ncnn weights: the family, and the file it came from
        network = f"{source['network']} ({Path(source.get('imported_from', '')).stem or network})"
    return {"scale": loaded.scale, "source": prov.get("source", str(path)), "network": network,
            "parameters": sum(p.numel() for p in loaded.module.parameters()),
            "trained_by": "pretrain (this pipeline)" if source.get("stage") == "pretrain" else "the file's authors",
            "licence": source.get("licence", "")}
