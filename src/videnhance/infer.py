"""Running a model over frames: batches, optional overlapping tiles, and whole videos streamed
decode → batch → model → encode with no file per frame. bf16 autocast on CUDA, fp32 on CPU."""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .archs import window_radius  # noqa: F401 - also re-exported for callers of infer
from .colour import PLANAR, Colour, rgb_to_yuv420, yuv420_to_rgb
from .errors import ConfigError
from .io import EncodeSettings, FrameReader, FrameWriter, VideoMeta, frame_layout, probe
from .memory import check_step, decoder_bytes, encoder_bytes, fit, is_out_of_memory, lean_encoder
from .tensors import to_float, to_uint8

log = logging.getLogger(__name__)


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but torch sees no CUDA device (no GPU, or a CPU-only torch); "
                          "set device: auto or cpu")
    return device


_ALLOCATOR_TUNED: bool | None = None


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """glibc, opened once (None elsewhere: musl, macOS)."""
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def trim_cpu_heap() -> None:
    """Give the free pages of the heap back to the kernel (glibc's malloc_trim). With
    `tune_cpu_allocator` the heap keeps everything freed, and frames enhanced in tiles free
    frame-sized buffers (the float output, 1.6 GB at 16K) once a frame; without a trim, reused and
    fragmented, they held 6.6 GB where 3.9 GB is used (8K ×2, docs/performance.md)."""
    libc = _glibc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the heap instead of giving it back to the kernel (glibc only).

    glibc serves every block over 32 MB with a fresh mmap and unmaps it on free, so CPU inference
    page-faults and zeroes each large activation again, layer after layer. On the 2-core machine
    that was 19 of 48 CPU-s per 720p ×2 SRResNet frame (2.6 after this; 1.55× faster). It is
    process-wide and permanent, and peak RSS can grow (up to +40% measured, see
    docs/performance.md); set VIDENHANCE_MALLOC_TUNE=0 to keep glibc's defaults. Returns whether
    the tuning is in effect.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is not None:
        return _ALLOCATOR_TUNED
    _ALLOCATOR_TUNED = False
    if os.environ.get("VIDENHANCE_MALLOC_TUNE", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    libc = _glibc()
    if libc is not None and hasattr(libc, "mallopt"):  # not glibc (musl, …): nothing to tune
        m_trim_threshold, m_mmap_max = -1, -4  # from glibc's malloc.h
        _ALLOCATOR_TUNED = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    log.debug("glibc malloc tuned for CPU inference: %s", _ALLOCATOR_TUNED)
    return _ALLOCATOR_TUNED


def _forward(model: nn.Module | None, x: torch.Tensor, scale: int, size: tuple[int, int],
             bf16: bool = True) -> torch.Tensor:
    if model is None:  # the bicubic baseline
        if x.shape[-2:] == size:
            return x
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    if x.device.type == "cuda" and bf16:  # the architecture's descriptor says whether it may (archs.Arch.bf16)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return model(x).float()
    return model(x)


def _tiled(model: nn.Module, x: torch.Tensor, scale: int, tile: int, overlap: int, bf16: bool = True) -> torch.Tensor:
    """Run `model` on overlapping tiles of `x` and keep each tile's centre; the seams fall inside
    overlaps, where the receptive field is complete on both sides."""
    n, h, w = x.shape[0], *x.shape[-2:]
    out = x.new_empty(n, 3, h * scale, w * scale)
    step = max(1, tile - 2 * overlap)
    for y0 in range(0, h, step):
        for x0 in range(0, w, step):
            ya, xa = max(0, y0 - overlap), max(0, x0 - overlap)
            yb, xb = min(h, y0 + step + overlap), min(w, x0 + step + overlap)
            piece = _forward(model, x[..., ya:yb, xa:xb], scale, ((yb - ya) * scale, (xb - xa) * scale), bf16)
            ye, xe = min(h, y0 + step), min(w, x0 + step)
            out[:, :, y0 * scale : ye * scale, x0 * scale : xe * scale] = piece[
                :, :, (y0 - ya) * scale : (ye - ya) * scale, (x0 - xa) * scale : (xe - xa) * scale]
    return out


def _free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


@dataclass
class InferPlan:
    """How frames go through the model: frames per model call and tile side (0 = whole frames).

    Starts as configured and only ever shrinks: after an out-of-memory error the batch is split
    (halving down to 1 frame), then the frame is cut into tiles (side halving, overlap kept) until
    a call fits. One plan lives for a whole video, so later batches start from what worked.
    """

    batch_size: int
    tile: int = 0
    overlap: int = 16
    pad_batches: bool = False  # a torch.compile'd model: a short last batch is padded to the same shape
    bf16: bool = True  # bfloat16 autocast on CUDA, when the architecture allows it
    oom_events: int = 0
    min_tile: int = field(default=0)

    def __post_init__(self) -> None:
        self.batch_size = max(1, int(self.batch_size))
        if not self.min_tile:
            self.min_tile = max(8, 3 * self.overlap)  # a tile keeps a centre at least `overlap` wide

    def shrink(self, n: int, h: int, w: int, err: BaseException) -> bool:
        """Make the next try smaller after `err` on `n` frames of h×w; False when nothing is left to shrink."""
        self.oom_events += 1
        if n > 1:
            self.batch_size = max(1, min(self.batch_size, n) // 2)
            log.warning("out of memory on a batch of %d frames of %dx%d; retrying with batches of %d (%s)",
                        n, w, h, self.batch_size, _short(err))
            return True
        active = self.tile if self.tile and (h > self.tile or w > self.tile) else 0
        limit = active or max(h, w)  # the next tile must be smaller than what just failed
        tile = max(active // 2 if active else _pow2_below(max(h, w)), self.min_tile)
        if tile >= limit:
            log.error("out of memory on one %dx%d frame%s; giving up (smallest tile is %d px for overlap %d)",
                      w, h, f" in {active} px tiles" if active else "", self.min_tile, self.overlap)
            return False
        self.tile = tile
        log.warning("out of memory on one %dx%d frame; retrying in %d px tiles with %d px overlap (%s)",
                    w, h, self.tile, self.overlap, _short(err))
        return True


def _pow2_below(n: int) -> int:
    """The largest power of two strictly below n (1 for n ≤ 2)."""
    return 1 << max(0, (n - 1).bit_length() - 1)


def _short(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"


def _model_call(model: nn.Module | None, x: torch.Tensor, scale: int, size: tuple[int, int],
                plan: InferPlan) -> torch.Tensor:
    h, w = x.shape[-2:]
    if model is not None and plan.tile and (h > plan.tile or w > plan.tile):
        return _tiled(model, x, scale, plan.tile, plan.overlap, plan.bf16)
    return _forward(model, x, scale, size, plan.bf16)


def _upload(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """Integer frames as a tensor on `device`. On CUDA they go through pinned memory,
    asynchronously, and are converted to float on the GPU: a quarter (uint8) or half (int16) of
    the bytes a float copy would move."""
    x = torch.from_numpy(np.ascontiguousarray(frames))
    if device.type == "cuda":
        x = x.pin_memory().to(device, non_blocking=True)
    return x


def _to_device(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 NHWC frames → float NCHW in [0, 1] on `device`, channels_last (the NHWC bytes as they
    are: the permute is free)."""
    return to_float(_upload(frames, device))


@dataclass(frozen=True)
class Layout:
    """The frames' layout on each side of the model: what the reader delivers (`read`) and the
    writer takes (`write`), each "rgb24" (n, H, W, 3) or planar 4:2:0 (n, H·W·3/2), "yuv420p" or
    "yuv420p10le", in `colour`. With 4:2:0 the YUV ↔ RGB conversion runs on the model's device
    (`colour.py`)."""

    height: int
    width: int
    read: str = "rgb24"
    write: str = "rgb24"
    colour: Colour = field(default_factory=Colour)

    def to_model(self, frames: np.ndarray, device: torch.device) -> torch.Tensor:
        if self.read in PLANAR:
            return yuv420_to_rgb(_upload(frames, device), self.height, self.width, self.colour, PLANAR[self.read])
        return _to_device(frames, device)

    def from_model(self, y: torch.Tensor) -> torch.Tensor:
        return rgb_to_yuv420(y, self.colour, PLANAR[self.write]) if self.write in PLANAR else to_uint8(y, inplace=True)

    def out_empty(self, size: tuple[int, int]) -> torch.Tensor:
        shape, dtype = frame_layout(self.write, *size)
        return torch.from_numpy(np.empty((0, *shape), dtype))


def choose_layout(transport: str | None, device: torch.device, meta: VideoMeta, settings: EncodeSettings) -> Layout:
    """`infer.transport`: how frames travel between the ffmpeg processes and the model.

    "yuv420p" carries 4:2:0 planes through both pipes and converts on the model's device: no
    colour conversion in the decoder or the encoder, and half the bytes of rgb24 at 8 bits. Each
    side keeps its own bit depth: a 10-bit 4:2:0 source is read as yuv420p10le and a
    `encode.pix_fmt: yuv420p10le` output written as such, so 10 bits survive end to end. A side
    that cannot (not 4:2:0 at 8 or 10 bits, odd sizes, lossless RGB output, a non-linear matrix)
    stays rgb24. "auto" uses yuv420p on CUDA only: on a CPU, ffmpeg's SIMD conversion costs less
    than torch's (docs/performance.md)."""
    from .config import allowed_values, schema_default

    allowed = allowed_values("infer", "transport")
    transport = transport or schema_default("infer", "transport")
    if transport not in allowed:
        raise ValueError(f"infer.transport must be one of {allowed}, not {transport!r}")
    colour = meta.colour
    base = Layout(meta.height, meta.width, colour=colour)
    if transport == "rgb24" or (transport == "auto" and device.type != "cuda") or not colour.linear:
        return base
    even = meta.width % 2 == 0 and meta.height % 2 == 0  # so the output (×scale) is even too
    source = "yuv420p" if meta.pix_fmt == "yuvj420p" else meta.pix_fmt
    read = source if even and source in PLANAR else "rgb24"
    write = settings.pix_fmt if even and settings.codec != "ffv1" and settings.pix_fmt in PLANAR else "rgb24"
    return Layout(meta.height, meta.width, read, write, colour)


def prepare_model(model: nn.Module | None, device: torch.device, compile: bool = False) -> nn.Module | None:
    """The model on `device` in eval mode; channels_last on CUDA (NHWC tensor-core kernels), and
    wrapped in `torch.compile` when asked (static shapes: `run_model` pads a short last batch so
    the whole video uses one compiled graph)."""
    if model is None:
        return None
    model = model.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if compile:  # callers pad short batches (InferPlan.pad_batches): one graph for the whole video
        model = torch.compile(model, dynamic=False)
    return model


def batch_from_memory(free_bytes: int, per_frame_bytes: int, fraction: float = 0.6, cap: int = 32) -> int:
    """Frames per model call that fit `fraction` of the free memory, between 1 and `cap`."""
    if per_frame_bytes <= 0:
        return cap
    return max(1, min(cap, int(free_bytes * fraction) // per_frame_bytes))


CPU_BATCH = 4  # a CPU frame takes seconds; 4 keeps decoder and encoder fed without holding much


def auto_batch_size(model: nn.Module | None, h: int, w: int, device: torch.device, scale: int, cap: int = 32) -> int:
    """`infer.batch_size: auto`. On CUDA: run one frame, take its peak memory, and fill 60% of
    what `mem_get_info` reports free (at most `cap`). Elsewhere `CPU_BATCH`."""
    if model is None or device.type != "cuda":
        return CPU_BATCH
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    try:
        with torch.inference_mode():
            radius = window_radius(model)
            x = torch.zeros(1, 3, h, w, device=device).contiguous(memory_format=torch.channels_last)
            _forward(model, windows_of(x.expand(2 * radius + 1, -1, -1, -1), radius),
                     scale, (h * scale, w * scale))
        torch.cuda.synchronize(device)
    except Exception as err:  # noqa: BLE001 - one frame does not fit: InferPlan tiles it
        if not is_out_of_memory(err):
            raise
        _free_memory(device)
        return 1
    per_frame = torch.cuda.max_memory_allocated(device) - before
    free, _total = torch.cuda.mem_get_info(device)
    batch = batch_from_memory(free, per_frame, cap=cap)
    log.info("batch size %d: one %dx%d frame peaks at %.0f MiB, %.0f MiB free", batch, w, h,
             per_frame / 2**20, free / 2**20)
    return batch


def windows_of(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Consecutive frames (m, 3, h, w) → the windows (m − 2·radius, 2·radius + 1, 3, h, w) of the
    frames that have `radius` neighbours on each side: one copy on the model's device, made after
    the upload, so each frame crosses the bus and the YUV conversion once, not 2·radius + 1 times."""
    if radius == 0:
        return x
    n = len(x) - 2 * radius
    return torch.stack([x[t : t + n] for t in range(2 * radius + 1)], 1)


def _run_tensor(model: nn.Module | None, frames: np.ndarray, size: tuple[int, int], scale: int,
                device: torch.device, plan: InferPlan, layout: Layout | None = None, radius: int = 0) -> torch.Tensor:
    """Integer frames → the output tensor on `device`, both in `layout` (default: uint8 RGB NHWC);
    out-of-memory retries by `plan`. For a multi-frame model, either `frames` are consecutive and
    the first and last `radius` of them are context only (one output per frame in between, from
    the window around it), or they are windows already, (n, T, h, w, 3) uint8 RGB."""
    windowed = frames.ndim == 5
    layout = layout or Layout(*frames.shape[-3:-1])
    h, w = layout.height, layout.width
    pad = plan.pad_batches
    outs = []
    start, end = 0, len(frames) - 2 * radius
    while start < end:
        chunk = frames[start : start + plan.batch_size + 2 * radius]
        n = len(chunk) - 2 * radius
        if pad and n < plan.batch_size:  # same shape as the others: no recompilation for the last batch
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], plan.batch_size - n, axis=0)])
        failed: BaseException | None = None
        try:
            if windowed:
                x = layout.to_model(chunk.reshape(-1, *chunk.shape[2:]), device)
                x = x.unflatten(0, chunk.shape[:2]).contiguous()  # the layout `windows_of` gives
            else:
                x = windows_of(layout.to_model(chunk, device), radius)
            outs.append(layout.from_model(_model_call(model, x, scale, size, plan))[:n])
            start += n  # only a batch that came out whole moves on: no frame lost or repeated
        except Exception as err:  # noqa: BLE001 - filtered just below
            if model is None or not is_out_of_memory(err):
                raise
            failed = err.with_traceback(None)  # the traceback would pin the failed call's tensors
        if failed is not None:
            x = None  # drop references into the failed call before freeing the cache
            _free_memory(device)
            if not plan.shrink(n, h, w, failed):
                raise failed
    if not outs:
        return layout.out_empty(size)
    return outs[0] if len(outs) == 1 else torch.cat(outs)


@torch.inference_mode()
def run_model(model: nn.Module | None, frames: np.ndarray, out_size: tuple[int, int] | None = None,
              device: torch.device | str = "cpu", batch_size: int = 8, tile: int = 0,
              overlap: int = 16, plan: InferPlan | None = None) -> np.ndarray:
    """uint8 (n, h, w, 3) → uint8 (n, h·s, w·s, 3). `model=None` gives bicubic to `out_size`.

    Windows (n, T, h, w, 3) — one per output frame, centre at T // 2 — go to a multi-frame model
    as they are; a single-frame model (or bicubic) gets their centre frames.

    The scale is the model's `scale` attribute, which every registered architecture's network has
    (`archs.Arch`). Out of (GPU) memory, a batch is retried smaller, then in tiles
    (see `InferPlan`); every frame comes out exactly once and in order. Pass one `plan` across
    calls to keep what worked.
    """
    device = torch.device(device)
    frames_in = 2 * window_radius(model) + 1
    if frames.ndim == 5 and frames_in == 1:
        frames = frames[:, frames.shape[1] // 2]
    if frames_in > 1 and (frames.ndim != 5 or frames.shape[1] != frames_in):
        raise ValueError(f"a {frames_in}-frame model takes windows (n, {frames_in}, h, w, 3), not {frames.shape}")
    h, w = frames.shape[-3:-1]
    scale = model.scale if model is not None else (out_size[0] // h if out_size else 1)
    if model is not None:
        model = model.to(device).eval()
    size = out_size or (h * scale, w * scale)
    if plan is None:
        if not tile:  # from the memory budget: fewer frames per call, or tiles, where whole ones do not fit
            batch_size, tile = fit(model, len(frames), h, w, scale, batch_size, overlap, device)
        plan = InferPlan(batch_size, tile, overlap)
    return _run_tensor(model, frames, size, scale, device, plan).cpu().numpy()


def window_outputs(model: nn.Module, windows: np.ndarray, device: torch.device | str = "cpu",
                   batch_size: int = 4) -> np.ndarray:
    """The model's output for every frame of each window (n, T, h, w, 3) → (n, T, h·s, w·s, 3):
    a multi-frame model sees each frame's own window inside the given one (its edge frames
    repeated), a single-frame model each frame alone."""
    n, t = windows.shape[:2]
    radius = window_radius(model)
    outs = []
    for k in range(t):
        sub = windows[:, np.clip(np.arange(k - radius, k + radius + 1), 0, t - 1)] if radius else windows[:, k]
        outs.append(run_model(model, sub, device=device, batch_size=batch_size))
    return np.stack(outs, 1)


def teacher_outputs(model: nn.Module, frames: np.ndarray, device: torch.device | str = "cpu",
                    batch_size: int = 4) -> np.ndarray:
    """The model's outputs for frames (n, h, w, 3), or for every frame of windows (n, T, h, w, 3)
    (`window_outputs`): the material near-scale pairs are cut from."""
    if frames.ndim == 5:
        return window_outputs(model, frames, device, batch_size)
    return run_model(model, frames, device=device, batch_size=batch_size)


def with_context(batches, radius: int, lead: int = 0, trail: int = 0):
    """Batches of consecutive frames → blocks of frames with `radius` frames of context on each
    side (the first and last frame repeated at the video's ends), so that each frame is the centre
    of exactly one window, in order. Holds at most one batch plus 2·radius frames. A part of a
    video (`segments`) brings its own context: its first `lead` and last `trail` frames (at most
    `radius` each) are context only, and only the rest is repeated."""
    if radius == 0:
        yield from batches
        return
    held = None  # frames not yet output, behind `radius` frames of past context
    for batch in batches:
        if not len(batch):
            continue
        held = np.concatenate([np.repeat(batch[:1], radius - lead, 0) if held is None else held, batch])
        ready = len(held) - 2 * radius
        if ready > 0:
            yield held
            held = held[ready:]
    if held is not None and len(held) + radius - trail > 2 * radius:  # frames left to output
        yield np.concatenate([held, np.repeat(held[-1:], radius - trail, 0)])


def _stream(model: nn.Module | None, batches, size: tuple[int, int], scale: int, device: torch.device,
            plan: InferPlan, layout: Layout | None = None, radius: int = 0):
    """Model outputs (numpy, in `layout.write`'s format: uint8 RGB NHWC by default) for each input
    batch, in order.

    On CUDA, batch k+1 is queued on the GPU before batch k is handed on: batch k's result is
    copied to pinned host memory asynchronously and waited for only then, so the copy and the
    Python work around it overlap the next batch's compute. Elsewhere each result is ready at once.
    """
    pending = None
    with torch.inference_mode():
        for batch in batches:
            out = _run_tensor(model, batch, size, scale, device, plan, layout, radius)
            if device.type == "cuda":
                host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
                host.copy_(out, non_blocking=True)
                done = torch.cuda.Event()
                done.record(torch.cuda.current_stream(device))  # the copy's device, not cuda:0
                item = (done, host)
            else:  # ready now: handed on at once, not held while the next batch is computed
                yield out.numpy()
                continue
            if pending is not None:
                yield _ready(pending)
            pending = item
        if pending is not None:
            yield _ready(pending)


def _ready(item) -> np.ndarray:
    event, host = item
    if event is not None:
        event.synchronize()
    return host.numpy()  # the array keeps the (pinned) tensor alive while the writer holds it


def enhance_video(model: nn.Module | None, input_path: str | Path, output_path: str | Path, scale: int,
                  settings: EncodeSettings, device: str = "auto", batch_size: int | str = "auto", tile: int = 0,
                  overlap: int = 16, meta: VideoMeta | None = None, progress: bool = True,
                  compile: bool = False, transport: str | None = None, bf16: bool = True,
                  span: tuple[int, int] | None = None) -> dict:
    """Stream every frame of `input_path` through `model` into `output_path`; with `span`
    (start, end), only frames [start, end) (one part of a long video, `segments`), decoding up to
    a multi-frame model's radius of context on each side.

    Decoding (ffmpeg process + reader thread), the model (this thread) and encoding (writer thread
    + ffmpeg process) overlap; queues are bounded so memory does not grow with video length.
    `batch_size="auto"` sizes batches from free GPU memory (`auto_batch_size`); `transport` picks
    the pixel format of the pipes (`choose_layout`). The output keeps the source's colour.
    `bf16`: bfloat16 autocast on CUDA, if the architecture allows it (`archs.Arch.bf16`).
    """
    dev = pick_device(device)
    meta = meta or probe(input_path)
    out_w, out_h = meta.width * scale, meta.height * scale
    radius = window_radius(model)
    start, end = span if span is not None else (0, meta.frames)
    decoded = (max(0, start - radius), min(meta.frames, end + radius))
    settings = lean_encoder(settings, out_w, out_h, str(output_path))
    if not tile and model is not None:  # the memory budget (`memory.fit`), before any frame meets the model
        requested = CPU_BATCH if batch_size == "auto" else int(batch_size)
        pipes = decoder_bytes(meta.width, meta.height) + encoder_bytes(settings, out_w, out_h)
        check_step(model, meta.height, meta.width, scale, overlap, dev, pipes, str(output_path))
        budget_batch, tile = fit(model, meta.frames, meta.height, meta.width, scale, requested, overlap, dev,
                                 beside=pipes)
        if tile or budget_batch < requested:
            batch_size = budget_batch
    tuned = dev.type == "cpu" and model is not None and tune_cpu_allocator()
    trim = tuned and tile > 0  # the frame-sized buffers freed after each tiled batch go back to the kernel
    model = prepare_model(model, dev, compile)
    if batch_size == "auto":
        batch_size = auto_batch_size(model, meta.height, meta.width, dev, scale) if not tile else CPU_BATCH
    layout = choose_layout(transport, dev, meta, settings)
    reader = FrameReader(input_path, meta, batch_size=int(batch_size), pix_fmt=layout.read,
                         span=decoded if span is not None else None)
    blocks = with_context(reader, radius, lead=start - decoded[0], trail=decoded[1] - end)
    plan = InferPlan(int(batch_size), tile, overlap, pad_batches=compile, bf16=bf16)
    began = time.monotonic()
    bar = _progress(end - start, f"infer {Path(output_path).name}") if progress else None
    with FrameWriter(output_path, out_w, out_h, meta.fps, settings, pix_fmt=layout.write,
                     colour=layout.colour) as writer:
        for out in _stream(model, blocks, (out_h, out_w), scale, dev, plan, layout, radius):
            writer.write(out)
            if trim:
                trim_cpu_heap()
            if bar is not None:
                bar.update(len(out))
    seconds = time.monotonic() - began
    if writer.frames != end - start:
        raise RuntimeError(f"{output_path}: wrote {writer.frames} frames, the input has {end - start}"
                           f"{f' from frame {start}' if span else ''}")
    stats = {"frames": writer.frames, "seconds": round(seconds, 2), "fps": round(writer.frames / max(seconds, 1e-9), 2),
             "device": str(dev), "batch_size": int(batch_size), "compiled": bool(compile),
             "transport": f"{layout.read}→{layout.write}"}
    if plan.oom_events:
        stats.update(oom_events=plan.oom_events, batch_size=plan.batch_size, tile=plan.tile)
        log.warning("%s: %d out-of-memory retries; finished with batches of %d and tile %s", output_path,
                    plan.oom_events, plan.batch_size, plan.tile or "off")
    return stats


class _progress:
    """A plain-text progress line that works in Snakemake log files (no terminal needed)."""

    def __init__(self, total: int, label: str, every: float = 5.0):
        self.total, self.label, self.every = total, label, every
        self.done, self.start, self.last = 0, time.monotonic(), 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            log.info("%s: %d/%d frames (%.0f%%), %.1f frames/s, eta %.0f s", self.label, self.done, self.total,
                     100 * self.done / max(self.total, 1), rate, eta)
