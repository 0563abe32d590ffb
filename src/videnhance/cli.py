"""`videnhance` command line: one video without Snakemake, demo clips, probing.

Many videos, cached and in parallel, are the workflow's job: `snakemake --cores all --resources gpu=1`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from . import __version__


def _cmd_probe(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .io import probe

    for path in args.videos:
        print(json.dumps(asdict(probe(path)), indent=2))
    return 0


def _cmd_demo_clips(args: argparse.Namespace) -> int:
    from .demo import make_demo_clips

    for path in make_demo_clips(args.out, seconds=args.seconds, force=args.force):
        print(path)
    return 0


def _cmd_enhance(args: argparse.Namespace) -> int:
    """The whole per-video chain for one file, in a work folder (kept with --work)."""
    from .config import load_config_file
    from .data import load_image_sources
    from .io import mux
    from .pipeline import degrade, extract, infer, pretrain_load, probe_video
    from .train import fine_tune, pretrain

    cfg = load_config_file(args.config)
    if args.scale:
        cfg["scale"] = args.scale
    if args.checkpoint:
        cfg["checkpoint"] = args.checkpoint
    scale = cfg["scale"]
    work = Path(args.work or tempfile.mkdtemp(prefix="videnhance-"))
    work.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger("videnhance")
    meta = probe_video(args.input, work / "meta.json", scale, "enhance")
    pretrained = None
    if not cfg["checkpoint"]:
        pretrained = work / f"pretrained_x{scale}.pt"
        if not pretrained.exists():
            log.info("pretraining a base model (pass --checkpoint to skip)")
            images = load_image_sources(cfg["pretrain"]["images"], cfg["pretrain"]["max_images"])
            pretrain(images, pretrained, work / "pretrain.history.csv", scale, cfg["model"], cfg["pretrain"],
                     cfg["degrade"], cfg["device"])
    pretrain_load(work / "base.pt", scale, cfg["model"], cfg["checkpoint"], str(pretrained) if pretrained else None)
    extract(args.input, work / "frames.npz", cfg["extract"]["frames"], cfg["extract"]["val_fraction"],
            meta_json=work / "meta.json")
    degrade(work / "frames.npz", work / "pairs.npz", scale, cfg["degrade"])
    if cfg["fine_tune"]["enabled"]:
        verdict = fine_tune(work / "pairs.npz", work / "base.pt", work / "model.pt", work / "fine_tune.history.csv",
                            work / "verdict.json", cfg["fine_tune"], cfg["device"], degrade_cfg=cfg["degrade"])
        print(f"guard: {verdict['reason']}", file=sys.stderr)
    model = work / ("model.pt" if cfg["fine_tune"]["enabled"] else "base.pt")
    infer(model, args.input, work / "enhanced.mkv", "enhance", cfg["encode"], cfg["infer"], cfg["device"],
          meta_json=work / "meta.json")
    mux(work / "enhanced.mkv", args.input, args.output, source_meta=meta)
    print(args.output)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videnhance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"videnhance {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("enhance", help="enhance one video (fine-tunes on it first)")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True, help="output video (.mkv recommended; audio is copied)")
    p.add_argument("-c", "--config", default=None, help="config YAML (defaults: see config/README.md)")
    p.add_argument("--scale", type=int, choices=(1, 2, 4))
    p.add_argument("--checkpoint", help="base model to start from instead of pretraining one")
    p.add_argument("--work", help="folder for intermediate files (default: a new temporary folder)")
    p.set_defaults(func=_cmd_enhance)

    p = sub.add_parser("demo-clips", help="write the demo clips (from photos bundled with scikit-image)")
    p.add_argument("out", nargs="?", default="demo/videos")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--force", action="store_true", help="rewrite clips that exist")
    p.set_defaults(func=_cmd_demo_clips)

    p = sub.add_parser("probe", help="print what the pipeline sees in a video")
    p.add_argument("videos", nargs="+")
    p.set_defaults(func=_cmd_probe)

    from .bench import register as register_bench
    from .images import register as register_sr_images

    register_bench(sub)
    register_sr_images(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .step import USER_ERRORS

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"videnhance error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
