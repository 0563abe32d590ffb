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
process already holds and a reserve for its ffmpeg processes are taken off it (an x264 encoder
of frames of 8K and more needs more than the reserve: docs/performance.md). Workflow steps set it
once (`set_budget`, from `step.rule_step`).
"""

from __future__ import annotations

import logging
import math
import os
import weakref
from pathlib import Path

log = logging.getLogger(__name__)

_configured_mb = 0
_per_pixel: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
PROBE = 32  # side of the probe input
CPU_FRACTION, CUDA_FRACTION = 0.5, 0.7
PIPES_RESERVE = 256 * 2**20  # a step's ffmpeg decoder and encoder, beside its own process


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


def budget(device) -> int:
    """The budget in bytes for model calls on `device` (a torch.device or its name). A configured
    `memory_mb` is the step's on a CPU: what the process already holds and `PIPES_RESERVE` for its
    ffmpeg processes come off it (at least an eighth of it is left for the frames)."""
    kind = getattr(device, "type", str(device).split(":")[0])
    if _configured_mb > 0:
        total = _configured_mb * 2**20
        if kind == "cuda":
            return total
        return int(max(total / 8, total - _resident() - PIPES_RESERVE))
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * CUDA_FRACTION)
    left = [v for v in (_mem_available(), _cgroup_left()) if v is not None]
    if not left:  # not Linux: what the page size and physical pages say
        left = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")] if hasattr(os, "sysconf") else [8 << 30]
    return int(min(left) * CPU_FRACTION)


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

    from .infer import window_radius

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
        from .infer import is_out_of_memory

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
        min_tile: int = 0) -> tuple[int, int]:
    """(frames per call, tile side or 0) that keep a call of `model` on `n` frames of h×w under
    the budget: the configured batch if it fits, else fewer frames, else one frame in tiles."""
    allowed = budget(device)
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


def frame_bytes(h: int, w: int, scale: int) -> int:
    """Bytes one h×w frame holds whole while it is enhanced in tiles: its float input (12 B a
    pixel), the float output the tiles are written into and its uint8 copy (15 B an output
    pixel), and the uint8 frames the reader and writer queue on either side (two of each)."""
    return int(h * w * (12 + 15 * scale * scale + 2 * (3 + 3 * scale * scale)))
