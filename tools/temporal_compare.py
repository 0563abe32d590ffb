"""Temporal milestone against the single-frame milestone, per clip, on ground truth (benchmark BI).

Starts from a pretrained single-frame base (`--base`, an srresnet model file), trains the
temporal model's fusion branch on synthetic motion (`training.pretrain.pretrain_temporal`, the pipeline's
stage 2, with the config's `pretrain` and `degrade` settings) once per alignment, and scores on
each clip's first `--frames` frames, downscaled ×scale (BI): bicubic, single-frame, temporal
(Y-PSNR, BT.601, border 0, after rounding to 8 bits), the flicker of each (`metrics.flicker`)
and the seconds per frame of each model on this machine.

    .venv/bin/python tools/temporal_compare.py demo/videos/coffee_pushin.mp4 $DATA/videos/pysot_bag.avi \
        --base base_x4.pt --config config/benchmark_x4.yaml cpu.yaml --align dis none --out /tmp/tc --md tc.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from videnhance.config import safe_id, validate_config
from videnhance.data import load_image_sources
from videnhance.degrade import DegradeChain, crop_to_multiple, eval_degrade
from videnhance.infer import run_model
from videnhance.io import FrameReader, probe
from videnhance.metrics import flicker, psnr, rgb_to_y
from videnhance.models import load_model, save_model
from videnhance.settings import Settings
from videnhance.temporal import TemporalSR
from videnhance.training.pretrain import pretrain_temporal


def merged(paths: list[str]) -> Settings:
    cfg: dict = {}
    for p in paths:
        for key, value in (yaml.safe_load(Path(p).read_text()) or {}).items():
            cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return Settings.from_dict(validate_config(cfg))


def windows(frames: np.ndarray, radius: int) -> np.ndarray:
    n = len(frames)
    return np.stack([frames[np.clip(np.arange(i - radius, i + radius + 1), 0, n - 1)] for i in range(n)])


def y_psnr(gt: np.ndarray, out: np.ndarray) -> np.ndarray:
    return np.array([psnr(rgb_to_y(a), rgb_to_y(b)) for a, b in zip(gt, out, strict=True)])


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="+")
    parser.add_argument("--base", required=True, help="a pretrained single-frame srresnet model file")
    parser.add_argument("--config", nargs="+", default=["config/benchmark_x4.yaml"])
    parser.add_argument("--align", nargs="+", default=["dis", "none"])
    parser.add_argument("--frames", type=int, default=40, help="first frames of each clip scored")
    parser.add_argument("--out", default="/tmp/temporal_compare")
    parser.add_argument("--md", default=None)
    parser.add_argument("--static", action="store_true",
                        help="also score each temporal model on windows of the centre frame repeated (no motion)")
    args = parser.parse_args()
    settings = merged(args.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = load_model(args.base)
    scale, m = base.scale, settings.model
    images = None
    models = {}
    for align in args.align:
        path = out / f"temporal_{align}_x{scale}.pt"
        kwargs = {"channels": base.kwargs["channels"], "blocks": base.kwargs["blocks"], "radius": m.radius,
                  "align": align, "fuse_channels": m.fuse_channels, "fuse_blocks": m.fuse_blocks}
        if not path.exists():
            images = images or load_image_sources(settings.pretrain.images, settings.pretrain.max_images)
            model = TemporalSR(scale, **kwargs)
            model.load_single(base.module)
            torch.manual_seed(settings.pretrain.seed)
            stats = pretrain_temporal(model, images, scale, settings.pretrain,
                                      DegradeChain.from_settings(settings.degrade), out / f"temporal_{align}.csv",
                                      torch.device("cpu"))
            save_model(model, path, "temporal", scale, kwargs, {"stage": "pretrain_temporal", **stats})
            print(f"{align}: stage 2 trained in {stats['seconds']:.0f} s ({stats['steps']} steps)", flush=True)
        models[align] = load_model(path).module
    rows = []
    for clip in args.clips:
        meta = probe(clip)
        frames = []
        for batch in FrameReader(clip, meta, batch_size=16):
            frames.append(batch)
            if sum(len(f) for f in frames) >= args.frames:
                break
        gt = crop_to_multiple(np.concatenate(frames)[: args.frames], scale)
        lr = eval_degrade(gt, scale, "BI")
        row = {"clip": safe_id(clip), "frames": len(gt), "size": f"{lr.shape[2]}x{lr.shape[1]}"}
        outputs = {"bicubic": (run_model(None, lr, out_size=gt.shape[1:3]), 0.0)}
        outputs["single"] = timed(lambda lr=lr: run_model(base.module, lr, batch_size=4))
        for align, model in models.items():
            outputs[f"temporal_{align}"] = timed(lambda model=model, lr=lr: run_model(model, windows(lr, model.radius),
                                                                                      batch_size=4))
            if args.static:  # the centre frame repeated: what the extra layers give without the neighbours
                still = np.repeat(lr[:, None], model.frames_in, axis=1)
                outputs[f"static_{align}"] = timed(lambda model=model, still=still: run_model(model, still,
                                                                                              batch_size=4))
        for name, (result, seconds) in outputs.items():
            row[name] = {"psnr_y": float(y_psnr(gt, result).mean()), "flicker": flicker(result, gt),
                         "s_per_frame": seconds / len(gt)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=2))
    names = ["bicubic", "single", *[f"{kind}_{a}" for a in models for kind in ("temporal", "static")
                                    if f"{kind}_{a}" in rows[0]]]
    lines = [f"| clip | frames | input | {' | '.join(names)} | {' | '.join(f'Δ {n}' for n in names[2:])} |",
             "|---" * (3 + len(names) + len(names) - 2) + "|"]
    for r in rows:
        cells = [f"{r[n]['psnr_y']:.3f} / {r[n]['flicker']:.2f}" for n in names]
        deltas = [f"{r[n]['psnr_y'] - r['single']['psnr_y']:+.3f}" for n in names[2:]]
        lines.append(f"| {r['clip']} | {r['frames']} | {r['size']} | {' | '.join(cells)} | {' | '.join(deltas)} |")
    mean = {n: np.mean([r[n]["psnr_y"] for r in rows]) for n in names}
    gains = [f"{mean[n] - mean['single']:+.3f}" for n in names[2:]]
    lines.append(f"| mean | | | {' | '.join(f'{mean[n]:.3f}' for n in names)} | {' | '.join(gains)} |")
    speed = {n: np.mean([r[n]["s_per_frame"] for r in rows]) for n in names[1:]}
    lines.append("")
    lines.append("Seconds per frame (CPU, batch 4, mean over clips): "
                 + ", ".join(f"{n} {speed[n]:.3f}" for n in names[1:]))
    text = "\n".join(lines)
    print(text)
    if args.md:
        Path(args.md).write_text(text + "\n")


if __name__ == "__main__":
    main()
