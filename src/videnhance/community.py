"""Community checkpoints as base models, through spandrel (the loader chaiNNer and others share).

A `.safetensors` or `.pth` file holding a Real-ESRGAN, SwinIR, SPAN, Compact, … network becomes a
base like our own: `models.load_model` reads it without ever executing code (`refuse_unsafe`
turns away what spandrel would open unsafely), spandrel recognises the
architecture and its hyper-parameters from the tensors, and `build` wraps the network in `Padded`,
which pads every input to the network's size requirements and crops the output back, so training,
tiles and whole frames all see a plain ×scale module. What spandrel reports (scale, channels, size
requirements, bf16 support, tiling advice, purpose) becomes the model file's keyword arguments,
so a fine-tuned copy is rebuilt from our file exactly as the original was.

Only the architectures in `TRAINABLE` are fine-tuned: each is checked by a one-step training and
file round-trip test (tests/test_community.py). The others run for inference only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ModelFileError

log = logging.getLogger(__name__)

# spandrel architecture ids verified to train here (one step, random weights, in our test suite)
TRAINABLE = ("ESRGAN", "Compact", "SPAN", "SwinIR", "RCAN", "PLKSR")

# suffixes we open; spandrel reads `.pt` with torch.jit.load first, which runs code
SAFE_SUFFIXES = (".safetensors", ".pth", ".ckpt")


class Padded(nn.Module):
    """A community network behind its size requirements: the input is padded (reflect where it
    can, replicate where it is smaller than the pad) up to `minimum` and a multiple of
    `multiple_of` (square if `square`), and the output is cropped back to (h·scale, w·scale)."""

    def __init__(self, net: nn.Module, scale: int, multiple_of: int = 1, minimum: int = 0, square: bool = False):
        super().__init__()
        self.net, self.scale = net, int(scale)
        self.multiple_of, self.minimum, self.square = max(1, int(multiple_of)), int(minimum), bool(square)

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        """The input size the network is run at for an (h, w) input."""
        def side(n: int) -> int:
            n = max(n, self.minimum)
            return -(-n // self.multiple_of) * self.multiple_of

        ph, pw = side(h), side(w)
        if self.square:
            ph = pw = max(ph, pw)
        return ph, pw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = self.padded_size(h, w)
        if (ph, pw) != (h, w):
            pad = (0, pw - w, 0, ph - h)
            mode = "reflect" if pw - w < w and ph - h < h else "replicate"
            x = F.pad(x, pad, mode=mode)
        else:
            x = x.clone()  # some networks scale their input in place (RCAN: x *= rgb_range); the caller's stays
        y = self.net(x)
        return y[..., : h * self.scale, : w * self.scale]


def refuse_unsafe(path: Path) -> None:
    """Refuse a file spandrel would open unsafely: a `.pt` (or other suffix) that is not one of our
    files may be TorchScript, which spandrel loads with torch.jit.load, with no safe mode. The
    tensors themselves are read by `models.load_model` (safetensors, or weights_only)."""
    suffix = path.suffix.lower()
    if suffix not in SAFE_SUFFIXES:
        raise ModelFileError(
            f"{path}: a {suffix or 'suffix-less'} file that is not a videnhance model is not opened "
            "(a .pt may be TorchScript, which runs code when loaded). Save its weights as .safetensors "
            "(safetensors.torch.save_file(state_dict, 'model.safetensors')) and point `checkpoint` at that.")


def recognise(path: Path | str, state: dict[str, torch.Tensor]) -> tuple[Padded, int, dict]:
    """The network spandrel recognises in `state` (wrapped in `Padded`), its scale, and the
    keyword arguments our model file keeps for it."""
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    try:
        descriptor = ModelLoader().load_from_state_dict(state)
    except UnsupportedModelError as err:
        raise ModelFileError(
            f"{path}: neither a videnhance model nor an architecture spandrel recognises. Use a "
            "checkpoint of a spandrel-supported architecture (Real-ESRGAN, SwinIR, HAT, SPAN, Compact, …) "
            "or one written by this pipeline.") from err
    except Exception as err:  # noqa: BLE001 - an architecture's detection can fail on odd shapes in any way
        raise ModelFileError(f"{path}: spandrel could not build a network from these weights "
                             f"({type(err).__name__}: {str(err)[:200]}); is the file complete?") from err
    if not isinstance(descriptor, ImageModelDescriptor):
        raise ModelFileError(f"{path}: a {descriptor.architecture.name} model needs a mask (inpainting); "
                             "only image-to-image models can be a base.")
    if (descriptor.input_channels, descriptor.output_channels) != (3, 3):
        raise ModelFileError(f"{path}: a {descriptor.architecture.name} model with {descriptor.input_channels} "
                             f"input and {descriptor.output_channels} output channels; a base must map RGB to RGB.")
    req = descriptor.size_requirements
    module = Padded(descriptor.model, int(descriptor.scale), req.multiple_of, req.minimum, req.square)
    return module, int(descriptor.scale), {
            "spandrel_arch": descriptor.architecture.id, "name": descriptor.architecture.name,
            "tags": list(descriptor.tags), "purpose": descriptor.purpose,
            "multiple_of": int(req.multiple_of), "minimum": int(req.minimum), "square": bool(req.square),
            "bf16": bool(descriptor.supports_bfloat16), "fp16": bool(descriptor.supports_half),
            "tiling": descriptor.tiling.name.lower(),
            "parameters": int(sum(p.numel() for p in descriptor.model.parameters()))}


def build(scale: int, state_dict: dict[str, torch.Tensor] | None = None, **info) -> Padded:
    """The network spandrel builds from `state_dict` (the community file's tensors, or our file's
    `net.`-prefixed ones), wrapped in `Padded`; `info` is what `recognise` recorded."""
    if state_dict is None:
        raise ModelFileError("model.arch: spandrel builds its network from a checkpoint's weights; "
                             "set `checkpoint` to a .safetensors or .pth file.")
    if all(key.startswith("net.") for key in state_dict):
        state_dict = {key[4:]: value for key, value in state_dict.items()}
    module, found_scale, found = recognise("the model file", state_dict)
    expected = info.get("spandrel_arch")
    if expected and found["spandrel_arch"] != expected:
        raise ModelFileError(f"weights recognised as {found['spandrel_arch']}, the model file says {expected}")
    if found_scale != int(scale):
        raise ModelFileError(f"a ×{found_scale} {found['name']} model, not ×{scale}")
    return module


def check_trainable(kwargs: dict, source: str | Path) -> None:
    """Refuse to fine-tune an architecture not verified to train here, with what to do instead."""
    arch = kwargs.get("spandrel_arch")
    if arch and arch not in TRAINABLE:
        raise ModelFileError(
            f"{source}: {kwargs.get('name', arch)} is not among the architectures verified to fine-tune here "
            f"({', '.join(TRAINABLE)}). Set fine_tune.enabled: false to enhance with it as it is.")
