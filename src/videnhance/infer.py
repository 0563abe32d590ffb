"""Running a model over frames: batches, optional overlapping tiles, and whole videos streamed
decode → batch → model → encode with no file per frame. bf16 autocast on CUDA, fp32 on CPU."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .io import EncodeSettings, FrameReader, FrameWriter, VideoMeta, probe

log = logging.getLogger(__name__)


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device; use device: auto or cpu")
    return device


def _forward(model: nn.Module | None, x: torch.Tensor, scale: int, size: tuple[int, int]) -> torch.Tensor:
    if model is None:  # the bicubic baseline
        if x.shape[-2:] == size:
            return x
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    if x.device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return model(x).float()
    return model(x)


def _tiled(model: nn.Module, x: torch.Tensor, scale: int, tile: int, overlap: int) -> torch.Tensor:
    """Run `model` on overlapping tiles of `x` and keep each tile's centre; the seams fall inside
    overlaps, where the receptive field is complete on both sides."""
    n, c, h, w = x.shape
    out = x.new_empty(n, c, h * scale, w * scale)
    step = max(1, tile - 2 * overlap)
    for y0 in range(0, h, step):
        for x0 in range(0, w, step):
            ya, xa = max(0, y0 - overlap), max(0, x0 - overlap)
            yb, xb = min(h, y0 + step + overlap), min(w, x0 + step + overlap)
            piece = _forward(model, x[:, :, ya:yb, xa:xb], scale, ((yb - ya) * scale, (xb - xa) * scale))
            ye, xe = min(h, y0 + step), min(w, x0 + step)
            out[:, :, y0 * scale : ye * scale, x0 * scale : xe * scale] = piece[
                :, :, (y0 - ya) * scale : (ye - ya) * scale, (x0 - xa) * scale : (xe - xa) * scale]
    return out


@torch.inference_mode()
def run_model(model: nn.Module | None, frames: np.ndarray, out_size: tuple[int, int] | None = None,
              device: torch.device | str = "cpu", batch_size: int = 8, tile: int = 0,
              overlap: int = 16) -> np.ndarray:
    """uint8 (n, h, w, 3) → uint8 (n, h·s, w·s, 3). `model=None` gives bicubic to `out_size`."""
    device = torch.device(device)
    scale = getattr(model, "scale", None) or (out_size[0] // frames.shape[1] if out_size else 1)
    if model is not None:
        model = model.to(device).eval()
    h, w = frames.shape[1:3]
    size = out_size or (h * scale, w * scale)
    outs = []
    for start in range(0, len(frames), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(frames[start : start + batch_size])).to(device)
        x = x.permute(0, 3, 1, 2).float().div_(255)
        if model is not None and tile and (h > tile or w > tile):
            y = _tiled(model, x, scale, tile, overlap)
        else:
            y = _forward(model, x, scale, size)
        outs.append(y.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(outs) if outs else np.empty((0, *size, 3), np.uint8)


def enhance_video(model: nn.Module | None, input_path: str | Path, output_path: str | Path, scale: int,
                  settings: EncodeSettings, device: str = "auto", batch_size: int = 8, tile: int = 0,
                  overlap: int = 16, meta: VideoMeta | None = None, progress: bool = True) -> dict:
    """Stream every frame of `input_path` through `model` into `output_path`.

    Decoding (ffmpeg process + reader thread), the model (this thread) and encoding (writer thread
    + ffmpeg process) overlap; queues are bounded so memory does not grow with video length.
    """
    dev = pick_device(device)
    meta = meta or probe(input_path)
    out_w, out_h = meta.width * scale, meta.height * scale
    reader = FrameReader(input_path, meta, batch_size=batch_size)
    start = time.monotonic()
    bar = _progress(meta.frames, f"infer {Path(output_path).name}") if progress else None
    with FrameWriter(output_path, out_w, out_h, meta.fps, settings) as writer:
        for batch in reader:
            writer.write(run_model(model, batch, (out_h, out_w), dev, batch_size, tile, overlap))
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    seconds = time.monotonic() - start
    if writer.frames != meta.frames:
        raise RuntimeError(f"{output_path}: wrote {writer.frames} frames, the input has {meta.frames}")
    return {"frames": writer.frames, "seconds": round(seconds, 2), "fps": round(writer.frames / max(seconds, 1e-9), 2),
            "device": str(dev)}


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

    def close(self) -> None:
        pass
