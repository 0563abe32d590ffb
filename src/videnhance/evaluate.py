"""Per-frame scores of bicubic, the base model ("milestone") and the fine-tuned model.

Benchmark mode scores the three outputs against the ground truth video (streamed in lockstep,
memory flat in length). Enhance mode has no ground truth: it scores the held-out validation
frames of the video itself (degraded frame → model → frame), the self-supervised protocol.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from .data import load_npz
from .degrade import crop_to_multiple
from .infer import pick_device, run_model
from .io import FrameReader, VideoError, atomic_output
from .metrics import score_frame
from .models import load_model

log = logging.getLogger(__name__)
METHODS = ("bicubic", "milestone", "fine_tuned")
COLUMNS = ["video", "protocol", "frame", "method", "psnr_y", "ssim_y", "psnr_rgb"]


def _write(rows: list[dict], out_csv: str | Path) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_output(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table


def evaluate_benchmark(video_id: str, ground_truth: str | Path, input_video: str | Path, milestone: str | Path,
                       enhanced: str | Path, scale: int, out_csv: str | Path, border: int = 0) -> pd.DataFrame:
    readers = [FrameReader(p, batch_size=8) for p in (ground_truth, input_video, milestone, enhanced)]
    counts = {str(r.path): r.meta.frames for r in readers}
    if len(set(counts.values())) != 1:
        raise VideoError(f"frame counts differ, cannot score {video_id}: {counts}")
    rows, frame = [], 0
    for gt, lr, ms, ft in zip(*readers, strict=True):
        gt = crop_to_multiple(gt, scale)
        bicubic = run_model(None, lr, gt.shape[1:3])
        for i in range(len(gt)):
            for method, out in zip(METHODS, (bicubic[i], ms[i], ft[i]), strict=True):
                rows.append({"video": video_id, "protocol": "ground truth", "frame": frame, "method": method,
                             **score_frame(gt[i], out, border)})
            frame += 1
    table = _write(rows, out_csv)
    log.info("%s: mean Y-PSNR %s", video_id, table.groupby("method").psnr_y.mean().round(3).to_dict())
    return table


def evaluate_selfval(video_id: str, pairs_path: str | Path, base_model: str | Path, model: str | Path,
                     out_csv: str | Path, border: int = 0, device: str = "auto") -> pd.DataFrame:
    dev = pick_device(device)
    pairs = load_npz(pairs_path)
    is_val = pairs["is_val"].astype(bool)
    if not is_val.any():
        is_val[-1] = True
        log.warning("%s: no held-out frames; scoring the last training frame", video_id)
    lr, hr, frames = pairs["lr"][is_val], pairs["hr"][is_val], pairs["indices"][is_val]
    outputs = {
        "bicubic": run_model(None, lr, hr.shape[1:3]),
        "milestone": run_model(load_model(base_model)[0], lr, device=dev, batch_size=2),
        "fine_tuned": run_model(load_model(model)[0], lr, device=dev, batch_size=2),
    }
    rows = [{"video": video_id, "protocol": "self-validation", "frame": int(f), "method": m,
             **score_frame(hr[i], outputs[m][i], border)}
            for i, f in enumerate(frames) for m in METHODS]
    return _write(rows, out_csv)


def summarize(scores: pd.DataFrame) -> pd.DataFrame:
    """Per video and method: mean of the per-frame scores."""
    return (scores.groupby(["video", "protocol", "method"], sort=False)[["psnr_y", "ssim_y", "psnr_rgb"]]
            .mean().reset_index())
