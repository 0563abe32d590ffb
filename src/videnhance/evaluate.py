"""Per-frame scores of bicubic, the base model ("milestone") and the fine-tuned model, and for a
multi-frame base also the single-frame network it is built around ("single_frame").

Benchmark mode scores the outputs against the ground truth video (streamed in lockstep, memory
flat in length), and how much each flickers: `metrics.warp_error` between each frame and the one
before it, under the ground truth's own motion (whose mean length, in pixels per frame, is the
`motion` column). Enhance mode has no ground truth: it
scores the held-out validation frames of the video itself (degraded frame → model → frame), the
self-supervised protocol.

Memory follows the budget (`memory_mb`, `memory.budget`): frames are decoded in batches sized
from it, scored in row strips sized from it, and bicubic runs through the budgeted `run_model`;
where the optical flow of one frame would exceed it, the flicker column is left empty.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .degrade import crop_to_multiple
from .files import atomic_output
from .infer import pick_device, run_model
from .io import FrameReader, VideoError, VideoMeta, probe
from .memory import budget, decoder_bytes
from .metrics import STRIP_PX, flow_between, psnr, rgb_to_y, score_frame, warp_error
from .models import load_model
from .report import plot_per_frame
from .samples import load_npz
from .scores import ALL_METHODS, COLUMNS

log = logging.getLogger(__name__)


FLICKER_BYTES_PER_PX = 64  # DIS flow on a frame (measured 55 B/px at 7680×4320) and the flow itself
READ_AHEAD = 2  # batches each reader decodes ahead (`FrameReader.prefetch`)
SCORE_BYTES_PER_PX = 180  # `score_frame`'s float64 work per pixel of a strip (measured: 159 MiB for 1 Mpx)


def _frames_per_batch(budget_bytes: int, height: int, width: int, videos: int) -> int:
    """Frames per decoded batch so that the batches `videos` readers hold at once (the one being
    scored, the ones read ahead, the one being read) take at most half the budget: 8 for
    ordinary sizes, fewer for huge frames, never less than 1."""
    held = height * width * 3 * videos * (READ_AHEAD + 2)
    return int(max(1, min(8, budget_bytes // 2 // held)))


def _write(rows: list[dict], out_csv: str | Path, out_plot: str | Path | None) -> pd.DataFrame:
    """The score file, and the video's per-frame plot (a report item of its own)."""
    table = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_output(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    if out_plot:
        plot_per_frame(table, out_plot)
    return table


def _largest_gain_frame(table: pd.DataFrame) -> int:
    wide = table.pivot_table(index="frame", columns="method", values="psnr_y")
    return int((wide.fine_tuned - wide.bicubic).idxmax())


def crops_png(panels: dict[str, np.ndarray], out_png: str | Path, title: str, crop: int = 128) -> None:
    """A row of same-place crops (reference, bicubic, milestone, fine-tuned) around the spot where
    fine-tuned and bicubic differ most; nearest-neighbour zoom so pixels stay visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = panels["reference"].astype(float)
    diff = np.abs(panels["fine_tuned"].astype(float) - panels["bicubic"].astype(float)).sum(-1)
    h, w = diff.shape
    ch, cw = min(crop, h), min(crop, w)
    integral = np.pad(diff, ((1, 0), (1, 0))).cumsum(0).cumsum(1)  # box sums: where is the difference
    sums = integral[ch:, cw:] - integral[:-ch, cw:] - integral[ch:, :-cw] + integral[:-ch, :-cw]
    y, x = np.unravel_index(int(sums.argmax()), sums.shape)
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3))
    for ax, (name, image) in zip(axes, panels.items(), strict=True):
        part = image[y : y + ch, x : x + cw]
        ax.imshow(part, interpolation="nearest")
        crop_psnr = psnr(rgb_to_y(ref[y : y + ch, x : x + cw]), rgb_to_y(part.astype(float)))
        label = name if name == "reference" else f"{name}\n{crop_psnr:.2f} dB (crop)"
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def evaluate_benchmark(video_id: str, *, ground_truth: str | Path, input_video: str | Path, milestone: str | Path,
                       enhanced: str | Path, scale: int, out_csv: str | Path, border: int = 0,
                       out_crops: str | Path | None = None, gt_meta_json: str | Path | None = None,
                       single_frame: str | Path | None = None, out_plot: str | Path | None = None,
                       span: tuple[int, int] | None = None) -> pd.DataFrame:
    """`single_frame`: the output of a multi-frame base's own single-frame network, scored as its
    own method so the table shows what the neighbouring frames add. `span` (start, end): only
    those frames (one part of a long video, `segments`; `join_scores` puts the parts together),
    with the frame before them decoded too, for the flicker of the first."""
    gt_meta = VideoMeta.from_json(gt_meta_json) if gt_meta_json else probe(ground_truth)
    start, end = span if span is not None else (0, gt_meta.frames)
    decoded = (max(0, start - 1), end) if span is not None else None
    methods = [m for m in ALL_METHODS if m != "single_frame" or single_frame is not None]
    outputs_of = {"milestone": milestone, "fine_tuned": enhanced, "single_frame": single_frame}
    # one decoder a video read: the ground truth, the input (1/scale² of its pixels) and each output
    pipes = (len(methods) * decoder_bytes(gt_meta.width, gt_meta.height)
             + decoder_bytes(gt_meta.width // scale, gt_meta.height // scale))
    allowed = budget("cpu", beside=pipes)
    batch = _frames_per_batch(allowed, gt_meta.height, gt_meta.width, len(methods) + 1)
    with_flicker = FLICKER_BYTES_PER_PX * gt_meta.height * gt_meta.width <= allowed
    if not with_flicker:
        log.warning("%s: measuring flicker on %dx%d frames needs about %.0f MiB, over the memory budget of "
                    "%.0f MiB (memory_mb); the flicker column is left empty", video_id, gt_meta.width,
                    gt_meta.height, FLICKER_BYTES_PER_PX * gt_meta.height * gt_meta.width / 2**20, allowed / 2**20)
    strip_px = int(min(STRIP_PX, max(1 << 16, allowed // 4 // SCORE_BYTES_PER_PX)))
    readers = [FrameReader(ground_truth, gt_meta, batch_size=batch, prefetch=READ_AHEAD, span=decoded)]
    readers += [FrameReader(p, probe(p, decode_check=False), batch_size=batch, prefetch=READ_AHEAD, span=decoded)
                for p in [input_video, *(outputs_of[m] for m in methods[1:])]]
    counts = {str(r.path): r.meta.frames for r in readers}
    if len(set(counts.values())) != 1:
        raise VideoError(f"frame counts differ, cannot score {video_id}: {counts}")
    rows, frame = [], decoded[0] if decoded else 0
    best_gain, panels = -float("inf"), {}  # the frame for crops.png, kept during the one decoding pass
    previous = None  # the frame before (ground truth, outputs), for the flicker measure
    for gt, lr, *models in zip(*readers, strict=True):
        gt = crop_to_multiple(gt, scale)
        batch = [run_model(None, lr, gt.shape[1:3]), *models]
        for i in range(len(gt)):
            outputs = [b[i] for b in batch]
            if frame < start:  # the part's context: only the flicker of its first frame needs it
                previous = (gt[i].copy(), *(out.copy() for out in outputs)) if with_flicker else None
                frame += 1
                continue
            scores = {m: score_frame(gt[i], out, border, strip_px) for m, out in zip(methods, outputs, strict=True)}
            flow = flow_between(previous[0], gt[i]) if previous is not None else None
            motion = float(flow.square().sum(1).sqrt().mean()) if flow is not None else float("nan")
            for k, m in enumerate(methods):
                scores[m]["flicker"] = (warp_error(previous[k + 1], outputs[k], previous[0], gt[i], flow)
                                        if previous is not None else float("nan"))
                scores[m]["motion"] = motion
            if with_flicker:
                previous = (gt[i].copy(), *(out.copy() for out in outputs))
            rows += [{"video": video_id, "protocol": "ground truth", "frame": frame, "method": m, **scores[m]}
                     for m in methods]
            gain = scores["fine_tuned"]["psnr_y"] - scores["bicubic"]["psnr_y"]
            if gain > best_gain:
                best_gain, best_frame = gain, frame
                panels = {"reference": gt[i].copy(), **{m: out.copy() for m, out in zip(methods, outputs, strict=True)}}
            frame += 1
    table = _write(rows, out_csv, out_plot)
    log.info("%s: mean Y-PSNR %s", video_id, table.groupby("method").psnr_y.mean().round(3).to_dict())
    if out_crops and panels:
        crops_png(panels, out_crops, f"{video_id}, frame {best_frame} (ground truth)")
    return table


def join_scores(video_id: str, parts: list[str | Path], *, out_csv: str | Path, ground_truth: str | Path,
                input_video: str | Path, milestone: str | Path, enhanced: str | Path, scale: int,
                out_crops: str | Path | None = None, out_plot: str | Path | None = None,
                gt_meta_json: str | Path | None = None, single_frame: str | Path | None = None) -> pd.DataFrame:
    """The score files of a long video's parts (`evaluate_benchmark` with `span`) as one, checked
    to hold every frame once, with the video's plot and the crops of the frame fine-tuning gained
    the most on (that frame alone decoded again, from each video)."""
    table = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)
    gt_meta = VideoMeta.from_json(gt_meta_json) if gt_meta_json else probe(ground_truth)
    for method, frames in table.groupby("method").frame:
        if not np.array_equal(frames.to_numpy(), np.arange(gt_meta.frames)):
            raise VideoError(f"{video_id}: the {len(parts)} score parts do not hold frames 0–{gt_meta.frames - 1} "
                             f"once each for {method}")
    with atomic_output(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    if out_plot:
        plot_per_frame(table, out_plot)
    if out_crops:
        frame = _largest_gain_frame(table)

        def one(path: str | Path, meta: VideoMeta | None = None) -> np.ndarray:
            return next(iter(FrameReader(path, meta or probe(path, decode_check=False), batch_size=1,
                                         span=(frame, frame + 1))))

        gt = crop_to_multiple(one(ground_truth, gt_meta), scale)
        outputs = {"bicubic": run_model(None, one(input_video), gt.shape[1:3])[0],
                   **({"single_frame": one(single_frame)[0]} if single_frame else {}),
                   "milestone": one(milestone)[0], "fine_tuned": one(enhanced)[0]}
        crops_png({"reference": gt[0], **outputs}, out_crops, f"{video_id}, frame {frame} (ground truth)")
    log.info("%s: %d parts joined, mean Y-PSNR %s", video_id, len(parts),
             table.groupby("method").psnr_y.mean().round(3).to_dict())
    return table


def evaluate_selfval(video_id: str, *, pairs_path: str | Path, base_model: str | Path, model: str | Path,
                     out_csv: str | Path, border: int = 0, device: str = "auto",
                     out_crops: str | Path | None = None, out_plot: str | Path | None = None) -> pd.DataFrame:
    dev = pick_device(device)
    pairs = load_npz(pairs_path)
    is_val = pairs["is_val"].astype(bool)
    protocol = "self-validation"
    if not is_val.any():  # fine_tune kept the base model then, so this only compares base and bicubic
        is_val[-1] = True
        protocol = "training frame"
        log.warning("%s: no held-out frames; scoring the last training frame", video_id)
    lr, hr, frames = pairs["lr"][is_val], pairs["hr"][is_val], pairs["indices"][is_val]
    base = load_model(base_model)
    single = base.single_frame()
    outputs = {
        "bicubic": run_model(None, lr, hr.shape[1:3]),
        "single_frame": run_model(single.module, lr, device=dev, batch_size=2) if single else None,
        "milestone": run_model(base.module, lr, device=dev, batch_size=2),
        "fine_tuned": run_model(load_model(model).module, lr, device=dev, batch_size=2),
    }
    methods = [m for m in ALL_METHODS if outputs[m] is not None]
    rows = [{"video": video_id, "protocol": protocol, "frame": int(f), "method": m,
             **score_frame(hr[i], outputs[m][i], border)}
            for i, f in enumerate(frames) for m in methods]
    table = _write(rows, out_csv, out_plot)
    if out_crops:
        frame = _largest_gain_frame(table)
        i = int(np.flatnonzero(frames == frame)[0])
        crops_png({"reference": hr[i], **{m: outputs[m][i] for m in methods}}, out_crops,
                  f"{video_id}, {'held-out' if protocol == 'self-validation' else 'training'} frame {frame} "
                  f"({protocol})")
    return table
