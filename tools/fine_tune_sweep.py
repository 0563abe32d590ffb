"""Compare fine-tuning strategies on clips a benchmark run has already prepared.

The sweep behind the strategy table in docs/quality.md. It reuses a benchmark-mode run's files
(`<results>/base/x<S>.pt`, `<results>/<clip>/pairs.npz`, `<results>/<clip>/input.mkv`), fine-tunes
the base model once per variant, and scores every frame of the clip against its ground truth
(Y-PSNR, as `evaluate` does). It prints one JSON line per (clip, variant):
`delta` = fine-tuned − base model over all frames, `val_gain` = the same on the held-out frame pairs
(one of the two held-out signals the guard sees; `tools/guard_signal.py` reports both).

    .venv/bin/python tools/fine_tune_sweep.py --results /tmp/bench_x4/results --scale 4 \
        --clip coffee_pushin=demo/videos/coffee_pushin.mp4 \
        --variants '[{"name": "near_1e-4", "pairs": "near_scale", "lr": 1e-4, "steps": 200}]'

A variant with a `pipeline` key runs the pipeline's own `training.fine_tune` instead (rounds with
early stopping, the guard) with `--config`'s fine_tune section plus the overrides given, e.g.
`{"name": "p", "pipeline": {"steps": 400, "steps_per_epoch": 25, "lr": 4e-3}}`; it reports the
delivered model's `delta`, what the guard `kept` and each round's held-out gain.

Variant keys of the other variants:
- name, lr, steps (per round), patch (low-res side, default 32), loss (default {"l1": 1.0});
- pairs: frame | near_scale | near_scale+frame;
- rounds (near_scale: the targets are remade by the current model each round);
- shrink (near_scale: a list of factors, each applied to every frame; default [0.95, 0.85]);
- scales (frame: extra ZSSR-style copies of each frame shrunk by these factors before degrading);
- frames (train on this many frames of the input video instead of the extracted ones, sampled
  evenly outside the held-out stretches);
- closeups (a fraction, e.g. 0.5: train only on that share of the training frames, the ones with
  the least high-frequency energy per pixel, i.e. the most zoomed-in: frame sampling that favours
  close-ups);
- generic (a fraction, e.g. 0.25: that share of the training pairs are generic photos from
  `--generic-images`, photo/scale → photo, redrawn each round).

Degradation is BI (torch bicubic), as in the benchmark configs. Note that a training batch's
patch side is capped by the smallest low-res image, which the output's `patch` reports.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from videnhance.config import load_config_file
from videnhance.data import FixedBatches, PatchBatches, load_image_sources
from videnhance.degrade import DegradeChain, crop_to_multiple, eval_degrade, resize
from videnhance.infer import run_model
from videnhance.io import FrameReader, probe
from videnhance.layout import Results, VideoFiles
from videnhance.metrics import score_frame
from videnhance.models import load_model
from videnhance.samples import load_npz
from videnhance.settings import Settings
from videnhance.training.fine_tune import fine_tune
from videnhance.training.learner import fit, seed_everything
from videnhance.training.near_scale import near_scale_pairs


def frames_of(path: str) -> np.ndarray:
    return np.concatenate(list(FrameReader(path, probe(path), batch_size=16)))


def mean_psnr(model, lr: np.ndarray, hr: np.ndarray, device) -> float:
    out = run_model(model, lr, out_size=hr.shape[1:3], device=device, batch_size=8)
    return float(np.mean([score_frame(h, o)["psnr_y"] for h, o in zip(hr, out, strict=True)]))


def frame_pairs(frames, scale: int, scales=(1.0,)):
    lrs, hrs = [], []
    for im in frames:
        h, w = im.shape[:2]
        for f in scales:
            size = (int(h * f) // scale * scale, int(w * f) // scale * scale)
            if min(size) < 4 * scale:
                continue
            father = im[: size[0], : size[1]] if f == 1.0 else resize(im[None], size)[0]
            lrs.append(eval_degrade(father[None], scale, "BI")[0])
            hrs.append(father)
    return lrs, hrs


def near_pairs(teacher, frames, scale: int, shrink, device):
    """The pipeline's `near_scale_pairs`, once per listed factor, whole (uncropped) targets, BI."""
    lrs, hrs = [], []
    for f in shrink:
        more = near_scale_pairs(teacher, np.stack(frames), scale, DegradeChain.defaults(), (f, f), 1, crop=1 << 30,
                                seed=0, device=device)
        lrs, hrs = lrs + more[0], hrs + more[1]
    return lrs, hrs


def closest_frames(frames: list[np.ndarray], share: float) -> list[np.ndarray]:
    """The `share` of `frames` with the lowest mean |Laplacian| of luma per pixel: in a push-in the
    close-ups, where the same content covers the most pixels."""
    def detail(im: np.ndarray) -> float:
        y = im.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        lap = 4 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]
        return float(np.abs(lap).mean())

    order = np.argsort([detail(im) for im in frames])
    keep = max(1, round(share * len(frames)))
    return [frames[i] for i in sorted(order[:keep])]


def extra_frames(video: str, indices: np.ndarray, is_val: np.ndarray, count: int) -> np.ndarray:
    """`count` frames of the input sampled evenly, leaving out each held-out stretch (from the
    sampled frame before it to the one after it), so the held-out frames stay unseen."""
    frames = frames_of(video)
    banned = np.zeros(len(frames), bool)
    for i, v in enumerate(is_val):
        if v:
            lo = indices[i - 1] if i > 0 else 0
            hi = indices[i + 1] if i + 1 < len(indices) else len(frames) - 1
            banned[lo + 1 : hi] = True
    allowed = np.flatnonzero(~banned)
    return frames[allowed[np.linspace(0, len(allowed) - 1, min(count, len(allowed))).round().astype(int)]]


def run_variant(results: str, clip: str, scale: int, variant: dict, device, log_dir: str, photos=()):
    seed_everything(0)
    pairs = load_npz(Results(results).video(clip).pairs)
    val = pairs["is_val"].astype(bool)
    train_frames = list(pairs["hr"][~val])  # the input video's own frames
    if variant.get("frames"):  # more of the input's frames, away from the held-out stretches
        train_frames = list(extra_frames(Results(results).video(clip).input_video, pairs["indices"], val,
                                         int(variant["frames"])))
    if variant.get("closeups"):
        train_frames = closest_frames(train_frames, float(variant["closeups"]))
    model = load_model(Results(results).base(scale)).module
    kind = variant.get("pairs", "frame")
    seconds = 0.0
    for r in range(int(variant.get("rounds", 1))):
        lrs, hrs = [], []
        if kind.startswith("near_scale"):
            lrs, hrs = near_pairs(model, train_frames, scale, variant.get("shrink", [0.95, 0.85]), device)
        if kind.endswith("frame"):
            more = frame_pairs(train_frames, scale, variant.get("scales", [1.0]))
            lrs, hrs = lrs + more[0], hrs + more[1]
        share = float(variant.get("generic", 0))
        if share:
            count = min(len(photos), max(1, round(share * len(lrs) / (1 - share))))
            picked = np.random.default_rng(r).choice(len(photos), count, replace=False)
            more = frame_pairs([crop_to_multiple(photos[i][None], scale)[0] for i in picked], scale)
            lrs, hrs = lrs + more[0], hrs + more[1]
        steps = int(variant["steps"])
        epochs = max(1, steps // 25)
        train = PatchBatches(lrs, hrs, scale, variant.get("patch", 32), 16, steps // epochs, seed=r, device=device)
        valid = FixedBatches(list(pairs["lr"][val]), list(pairs["hr"][val]), batch_size=2, device=device)
        start = time.time()
        log_csv = f"{log_dir}/{clip}_{variant['name']}_{r}.csv"
        fit(model, train, valid, epochs, variant["lr"], variant.get("loss", {"l1": 1.0}), log_csv, device,
            progress=False)
        seconds += time.time() - start
    return model, seconds, train.patch


def run_pipeline_variant(results: str, clip: str, scale: int, variant: dict, config: dict, device):
    """The pipeline's fine_tune on this clip's pairs; returns the delivered model and the verdict."""
    settings = Settings.from_dict(config)
    cfg = settings.fine_tune.replace(**variant["pipeline"])
    with tempfile.TemporaryDirectory() as tmp:
        work = VideoFiles(tmp)  # the fine-tune's own outputs, named as under results/<video>/
        verdict = fine_tune(Results(results).video(clip).pairs, Results(results).base(scale), work.model,
                            work.history, work.verdict, cfg, str(device), degrade_cfg=settings.degrade)
        model = load_model(work.model).module
    return model, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, help="a benchmark-mode run's results folder")
    parser.add_argument("--scale", type=int, required=True)
    parser.add_argument("--clip", action="append", required=True, help="ID=GROUND_TRUTH_VIDEO (repeatable)")
    parser.add_argument("--variants", required=True, help="JSON list of variants (see the module doc)")
    parser.add_argument("--log-dir", default="/tmp")
    parser.add_argument("--config", default="config/benchmark_x4.yaml",
                        help="config whose fine_tune and degrade sections `pipeline` variants start from")
    parser.add_argument("--generic-images", action="append", default=None,
                        help="photo sources for the `generic` key, as in pretrain.images (default: skimage)")
    args = parser.parse_args()
    device = torch.device("cpu")
    base = load_model(Results(args.results).base(args.scale)).module
    variants = json.loads(args.variants)
    config = load_config_file(args.config) if any("pipeline" in v for v in variants) else None
    photos = load_image_sources(args.generic_images or ["skimage"]) if any(v.get("generic") for v in variants) else []
    for spec in args.clip:
        clip, gt_path = spec.split("=", 1)
        lr = frames_of(Results(args.results).video(clip).input_video)
        gt = crop_to_multiple(frames_of(gt_path), args.scale)
        base_psnr = mean_psnr(base, lr, gt, device)
        print(json.dumps({"clip": clip, "bicubic": round(mean_psnr(None, lr, gt, device), 3),
                          "milestone": round(base_psnr, 3)}), flush=True)
        pairs = load_npz(Results(args.results).video(clip).pairs)
        val = pairs["is_val"].astype(bool)
        val_base = mean_psnr(base, pairs["lr"][val], pairs["hr"][val], device)
        for variant in variants:
            if "pipeline" in variant:
                model, verdict = run_pipeline_variant(args.results, clip, args.scale, variant, config, device)
                print(json.dumps({"clip": clip, **variant,
                                  "delta": round(mean_psnr(model, lr, gt, device) - base_psnr, 3),
                                  "kept": verdict.kept,
                                  "val_gain": round(verdict.signals.get("frame", {}).get("gain_db", 0.0), 3),
                                  "rounds": verdict.round_report, "seconds": verdict.seconds}), flush=True)
                continue
            model, seconds, patch = run_variant(args.results, clip, args.scale, variant, device, args.log_dir, photos)
            print(json.dumps({"clip": clip, **variant,
                              "delta": round(mean_psnr(model, lr, gt, device) - base_psnr, 3),
                              "val_gain": round(mean_psnr(model, pairs["lr"][val], pairs["hr"][val], device)
                                                - val_base, 3),
                              "seconds": round(seconds, 1), "patch": patch}), flush=True)


if __name__ == "__main__":
    main()
