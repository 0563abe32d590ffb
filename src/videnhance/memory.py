"""A memory budget for every step that runs a model on whole frames.

`infer` retries smaller after a CUDA out-of-memory error, but on a CPU there is no such error: a
frame too large for the machine grows the process until the kernel's out-of-memory killer ends
it (and perhaps other people's processes). So before a model meets frames, `fit` sizes the call
from a budget: how many bytes the model needs per input pixel (`bytes_per_pixel`, measured once
per model on a small probe with forward hooks, so it holds for any architecture), times the
pixels of a batch, must stay under the budget, else fewer frames per call, else tiles, sized from
what is left of the budget once the whole frames around them are counted (`frame_bytes`).

The budget is `memory_mb` in the config (0: auto). Auto is half of what the machine or the job
has left on a CPU (MemAvailable, and the cgroup's limit under Slurm or a container) and 70 % of
the free memory on a CUDA device. A configured budget is the whole step's on a CPU: what the
process already holds and what its ffmpeg processes will hold are taken off it. Workflow steps
set it once (`set_budget`, from `step.rule_step`).

The ffmpeg processes are not small at large sizes: an encoder holds its look-ahead, reference and
in-flight frames, a decoder its threads' frames and the queues of ffmpeg's own pipeline, all in
proportion to the frame. `decoder_bytes` and `encoder_bytes` estimate them from figures measured
with ffmpeg 9.0 fed as fast as it takes frames, its worst case (docs/performance.md): x264 at its
defaults holds up to 170 + 5 × threads bytes a pixel (measured up to 4K), which puts 15360×8640
frames at about 24 GB on two cores. `lean_encoder` switches x264/x265 to a 5-frame look-ahead without B-frames, on slice
threads (about 100 bytes a pixel, files 10–30 % larger at the same CRF) when the default would
take more than a third of what the step may use; `check_step` refuses a step that cannot fit
before it starts.
"""

from __future__ import annotations

import logging
import math
import os
import weakref
from pathlib import Path

from .archs import window_radius
from .errors import VideoError

log = logging.getLogger(__name__)

_configured_mb = 0
_per_pixel: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
PROBE = 32  # side of the probe input
MIN_TILE = 256  # the tile `check_step` asks room for
CPU_FRACTION, CUDA_FRACTION = 0.5, 0.7
PIPES_RESERVE = 256 * 2**20  # a step's ffmpeg processes, where the caller does not say what they hold
FFMPEG_BASE = 48 * 2**20  # an ffmpeg process before its first frame
# Bytes per pixel of an ffmpeg process, measured with ffmpeg 9.0 (docs/performance.md, "ffmpeg's own memory")
DECODE_PX, DECODE_PX_PER_THREAD = 55, 3  # a decoder into our pipe (`-thread_queue_size 1` on its output)
ENCODE_PX = {"ffv1": 170}  # threads do not change it
X264_PX, X264_PX_PER_THREAD = 170, 5  # x264/x265 at their defaults; other codecs are counted the same way
LEAN_PX = 100  # x264/x265 lean (`io.LEAN_X264`: a 5-frame look-ahead, no B-frames, slice threads)
LEAN_SHARE = 1 / 3  # an encoder that would take more than this share of the step's memory runs lean


def set_budget(mb: int | None) -> None:
    """`memory_mb` from the config: the budget in MiB, 0 or None for auto."""
    global _configured_mb
    _configured_mb = int(mb or 0)


def _cgroup_left() -> int | None:
    """Bytes the cgroup (Slurm job, container) still allows, when it has a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            return max(0, int(limit) - usage)
    return None


def _mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _resident() -> int:
    """Bytes this process holds now (interpreter, torch, the model, data loaded), 0 if unknown."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def _kind(device) -> str:
    """"cpu", "cuda", … of a torch.device or its name."""
    return getattr(device, "type", str(device).split(":")[0])


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def decoder_bytes(width: int, height: int) -> int:
    """What an ffmpeg process decoding width×height frames into one of our pipes holds at most:
    its frame threads (ffmpeg's automatic count, cores + 1 up to 16) and its queues."""
    threads = min(_cpus() + 1, 16)
    return int(FFMPEG_BASE + (DECODE_PX + DECODE_PX_PER_THREAD * threads) * width * height)


def encoder_bytes(settings, width: int, height: int) -> int:
    """What an ffmpeg process encoding width×height frames from our pipe with `settings`
    (`io.EncodeSettings`) holds at most, fed faster than it encodes."""
    if settings.codec in ENCODE_PX:
        per_px = ENCODE_PX[settings.codec]
    elif settings.lean and settings.codec in ("libx264", "libx265"):
        per_px = LEAN_PX
    else:  # x264 counts 1.5 threads a core
        per_px = X264_PX + X264_PX_PER_THREAD * max(1, _cpus() * 3 // 2)
    return int(FFMPEG_BASE + per_px * width * height)


def host_limit() -> int:
    """Bytes the step may use in host memory: `memory_mb` when configured, else what the machine
    or the job has left."""
    if _configured_mb > 0:
        return _configured_mb * 2**20
    return _host_left()


def _host_left() -> int:
    left = [v for v in (_mem_available(), _cgroup_left()) if v is not None]
    if not left:  # not Linux: what the page size and physical pages say
        left = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")] if hasattr(os, "sysconf") else [8 << 30]
    return int(min(left))


def lean_encoder(settings, width: int, height: int, what: str = "the output"):
    """`settings`, switched to x264/x265's lean mode (`io.LEAN_X264`) when their default would hold
    more than `LEAN_SHARE` of the step's memory for width×height frames. Files come out 10–30 %
    larger at the same CRF (measured at 1080p and 4K; `-tune zerolatency`, which drops the
    look-ahead altogether, made them 5–8 times larger)."""
    if settings.codec not in ("libx264", "libx265") or settings.lean:
        return settings
    need, limit = encoder_bytes(settings, width, height), host_limit()
    if need <= limit * LEAN_SHARE:
        return settings
    import dataclasses

    lean = dataclasses.replace(settings, lean=True)
    log.warning("%s: %s at its defaults holds about %.0f MiB for %dx%d frames, over a third of the step's "
                "%.0f MiB; encoding with a short look-ahead and no B-frames (about %.0f MiB)", what, settings.codec,
                need / 2**20, width, height, limit / 2**20, encoder_bytes(lean, width, height) / 2**20)
    return lean


def budget(device, beside: int = PIPES_RESERVE) -> int:
    """The budget in bytes for model calls on `device` (a torch.device or its name). On a CPU,
    `beside` is what the step's ffmpeg processes hold (`decoder_bytes`, `encoder_bytes`). A
    configured `memory_mb` is the step's on a CPU: what the process already holds and `beside`
    come off it (at least an eighth of it is left for the frames; `check_step` refuses, before
    it starts, an infer that cannot fit)."""
    kind = _kind(device)
    if _configured_mb > 0:
        total = _configured_mb * 2**20
        if kind == "cuda":
            return total
        return int(max(total / 8, total - _resident() - beside))
    if kind == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free * CUDA_FRACTION)
    left = _host_left()
    return int(max(left / 8, min(left * CPU_FRACTION, left - beside)))


def is_out_of_memory(err: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError, or a RuntimeError that says "out of memory" (older torch,
    cuDNN/cuBLAS workspaces, MPS)."""
    import torch

    oom_type = getattr(torch.cuda, "OutOfMemoryError", None) or getattr(torch, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(err, oom_type):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def bytes_per_pixel(model, scale: int) -> float:
    """Bytes a call of `model` holds per input pixel of one output frame, in float32: the largest
    activation any layer makes, four times over (a layer's input and output, a block's input and
    its skip connection are alive together), plus the output. Measured on a PROBE×PROBE input
    (a window of frames for a multi-frame model) with forward hooks; cached per model. Without a
    model (bicubic): the input and the output, twice."""
    if model is None:
        return 2 * (12 + 12 * scale * scale)
    if model in _per_pixel:
        return _per_pixel[model]
    import torch

    largest = [0]

    def record(_module, _inputs, output) -> None:
        for t in output if isinstance(output, tuple | list) else (output,):
            if isinstance(t, torch.Tensor):
                largest[0] = max(largest[0], t.numel() * 4)

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(record) for m in leaves]
    frames = 2 * window_radius(model) + 1
    side = PROBE * max(1, getattr(model, "multiple_of", 1))
    shape = (1, frames, 3, side, side) if frames > 1 else (1, 3, side, side)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        with torch.inference_mode():
            out = model(torch.rand(shape, device=device))
    except Exception as err:  # noqa: BLE001 - filtered just below
        if not is_out_of_memory(err):
            raise
        log.warning("the memory probe (%dx%d) ran out of memory; the out-of-memory retries size the calls", side, side)
        _per_pixel[model] = 0.0  # unknown: whole frames first, then `InferPlan` shrinks on errors
        return 0.0
    finally:
        for h in hooks:
            h.remove()
    pixels = side * side
    value = (4 * largest[0] + out.numel() * 4 + frames * 12 * pixels) / pixels
    _per_pixel[model] = value
    return value


def fit(model, n: int, h: int, w: int, scale: int, batch_size: int, overlap: int, device,
        min_tile: int = 0, beside: int = PIPES_RESERVE) -> tuple[int, int]:
    """(frames per call, tile side or 0) that keep a call of `model` on `n` frames of h×w under
    the budget: the configured batch if it fits, else fewer frames, else one frame in tiles.
    `beside`: what the step's ffmpeg processes hold (`decoder_bytes`, `encoder_bytes`)."""
    allowed = budget(device, beside)
    per_px = bytes_per_pixel(model, scale)
    if per_px <= 0:
        return max(1, min(batch_size, n or 1)), 0
    frame = per_px * h * w
    batch = max(1, min(batch_size, n or 1))
    if frame * batch <= allowed:
        return batch, 0
    if frame <= allowed or model is None:  # bicubic is not tiled: fewer frames is all it can do
        if frame > allowed:
            log.warning("one %dx%d frame upscaled ×%d needs about %.0f MiB, over the memory budget of %.0f MiB",
                        w, h, scale, frame / 2**20, allowed / 2**20)
        return max(1, int(allowed // frame)), 0
    # tiles: the whole frame stays in memory around them, so what is left of the budget sizes a tile
    held = frame_bytes(h, w, scale)
    left = allowed - held
    if left < allowed / 8:
        log.warning("a %dx%d frame upscaled ×%d holds about %.0f MiB as whole frames (input, output, queues), "
                    "most of the memory budget of %.0f MiB: the tiles get an eighth of it", w, h, scale,
                    held / 2**20, allowed / 2**20)
        left = allowed / 8
    side = int(math.sqrt(left / per_px)) - 2 * overlap
    tile = max(side // 8 * 8, min_tile or max(8, 3 * overlap))
    log.info("a %dx%d frame needs about %.0f MiB in one call (budget %.0f MiB, %.0f MiB of it whole frames): "
             "%d px tiles", w, h, frame / 2**20, allowed / 2**20, held / 2**20, tile)
    return 1, tile


def check_step(model, h: int, w: int, scale: int, overlap: int, device, beside: int, what: str) -> None:
    """Refuse, before any work, a step that streams h×w frames through `model` ×`scale` when its
    configured `memory_mb` (on a CPU) cannot hold this process, its ffmpeg processes (`beside`),
    the whole frames around the tiles and one `MIN_TILE` tile; without a configured budget (or on
    a GPU, where `memory_mb` is the device's), warn when the machine has less left."""
    kind = _kind(device)
    whole = frame_bytes(h, w, scale)
    tile_px = (min(MIN_TILE, h) + 2 * overlap) * (min(MIN_TILE, w) + 2 * overlap)
    tile = tile_px * bytes_per_pixel(model, scale) if kind == "cpu" else 0
    need, resident = beside + whole + tile, _resident()
    detail = (f"{what}: {w}x{h} frames ×{scale} (ffmpeg about {beside / 2**20:.0f} MiB, whole frames "
              f"{whole / 2**20:.0f} MiB, a {MIN_TILE} px tile {tile / 2**20:.0f} MiB, this process "
              f"{resident / 2**20:.0f} MiB)")
    if kind == "cpu" and _configured_mb > 0:
        if resident + need > _configured_mb * 2**20:
            least = math.ceil((resident + need) / 2**20 / 100) * 100
            raise VideoError(f"{detail}: the step needs at least {least} MiB, more than memory_mb "
                             f"{_configured_mb}. Give it more (memory_mb, and the job's mem_mb under Slurm), "
                             "or enhance at a smaller scale.")
        return
    left = _host_left()
    if need > left:
        log.warning("%s: needs about %.0f MiB beside this process; the machine has %.0f MiB left",
                    detail, need / 2**20, left / 2**20)


def frame_bytes(h: int, w: int, scale: int) -> int:
    """Bytes one h×w frame holds whole while it is enhanced in tiles: its float input (12 B a
    pixel), the float output the tiles are written into and its uint8 copy (15 B an output
    pixel), and the uint8 frames the reader and writer queue on either side (two of each)."""
    return int(h * w * (12 + 15 * scale * scale + 2 * (3 + 3 * scale * scale)))
