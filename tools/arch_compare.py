"""Equal-time pretraining of the base networks, then the single-image check (docs/quality.md).

SRResNet 32×6, SRResNet 64×16 and the seed's fastai U-Net (resnet34) are each pretrained ×4 (BI) on
the same photos for about SECONDS: a short timing run sets each net's step count so that its
one-cycle schedule fills the time (`max_seconds` caps it at 1.15×). Then each model is scored on
Set5/Set14 (`videnhance sr-images`) and timed on one 120×90 frame. One JSON line per network.

    .venv/bin/python tools/arch_compare.py 240 --out /tmp/arch --data ../shared/data
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from videnhance.config import validate_config
from videnhance.data import load_image_sources
from videnhance.infer import run_model
from videnhance.models import load_model
from videnhance.settings import Model, Settings
from videnhance.training.pretrain import pretrain

NETWORKS = [("srresnet_32x6", {"arch": "srresnet", "channels": 32, "blocks": 6}),
            ("srresnet_64x16", {"arch": "srresnet", "channels": 64, "blocks": 16}),
            ("unet_resnet34", {"arch": "unet", "encoder": "resnet34"})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seconds", type=float, help="training time per network")
    parser.add_argument("--out", default="results/arch_compare", help="models, logs and score tables go here")
    parser.add_argument("--data", default="../shared/data", help="holds train/BSDS200 and images/Set5, Set14")
    args = parser.parse_args()
    out, data = Path(args.out), Path(args.data)
    out.mkdir(parents=True, exist_ok=True)
    train = {"images": [str(data / "train/BSDS200"), "skimage"], "copies": 1, "batch_size": 16, "patch": 32, "lr": 1e-3}
    cfg = validate_config({"scale": 4, "pretrain": train, "degrade": {"downscale": ["bicubic"], "copies": 1}})
    s = Settings.from_dict(cfg)
    images = load_image_sources(s.pretrain.images, s.pretrain.max_images)
    frame = np.random.default_rng(0).integers(0, 256, (2, 90, 120, 3), dtype=np.uint8)
    for name, model_keys in NETWORKS:
        model_cfg = Model.defaults(**model_keys)
        timing = s.pretrain.replace(steps=8, steps_per_epoch=4)
        start = time.time()
        pretrain(images, out / f"{name}_timing.pt", out / f"{name}_timing.csv", 4, model_cfg, timing, s.degrade,
                 "cpu")
        steps = max(8, int(args.seconds / ((time.time() - start) / 8)))
        run = s.pretrain.replace(steps=steps, steps_per_epoch=max(1, steps // 10), max_seconds=args.seconds * 1.15)
        stats = pretrain(images, out / f"{name}.pt", out / f"{name}.csv", 4, model_cfg, run, s.degrade, "cpu")
        model = load_model(out / f"{name}.pt").module
        run_model(model, frame[:1])  # warm-up
        start = time.time()
        run_model(model, frame, batch_size=2)
        per_frame = (time.time() - start) / len(frame)
        subprocess.run([sys.executable, "-m", "videnhance.cli", "sr-images", str(out / f"{name}.pt"),
                        "--set", str(data / "images/Set5"), "--set", str(data / "images/Set14"),
                        "--csv", str(out / f"{name}_sr.csv"), "--md", str(out / f"{name}_sr.md")],
                       check=True, capture_output=True)
        print(json.dumps({"name": name, "parameters": sum(p.numel() for p in model.parameters()),
                          "planned_steps": steps, **stats, "s_per_120x90_frame_x4": round(per_frame, 3),
                          "scores": str(out / f"{name}_sr.md")}), flush=True)


if __name__ == "__main__":
    main()
