"""`videnhance bench io|model|infer|finetune|memory`: how fast this machine decodes, runs the model,
encodes and enhances whole videos, measured against ffmpeg doing the same work on its own.

  io      ffmpeg alone (decode to null, file→file transcode with our encoder settings) next to our
          decode into numpy batches, our encode from numpy, and our passthrough (decode → identity
          → encode), also through the inference path with each transport (rgb24, yuv420p) on
          --device. Ends with `passthrough_ratio: R` (our passthrough ÷ ffmpeg transcode, frames/s).
  model   model-only frames/s of the default network (SRResNet 64 channels × 16 blocks, random
          weights) or of a base (--model package:NAME or a model file), input in channels_last as
          `run_model` gives it: fp32 on CPU (with the allocator tuning enhance_video uses); bf16
          autocast + channels_last weights on CUDA. Time-bounded: runs until --seconds have
          passed, at least one batch. For package:NAME on a CPU, ncnn runs the same .param/.bin
          beside it at the same threads (fp32, its fast convolutions on: what the *-ncnn-vulkan
          tools and Video2X run) and `model_vs_ncnn_…: R` gives our frames/s ÷ ncnn's.
  infer   end-to-end `enhance_video` frames/s next to each stage alone (model, our decoder at the
          input size, our encoder at the output size); ends with `infer_ratio: R` (end-to-end ÷
          the slowest stage).
  finetune  a video's fine-tuning as the pipeline runs it (extract → degrade → fine_tune, the
          config's budget): seconds and iterations/s; ends with `it_per_s: R`.
  memory  `enhance_video` on clips of N and 10·N seconds, each in a fresh process; ends with
          `memory_ratio: R` (peak RSS of the long run ÷ the short one; the target is < 1.2).

Without --input, a test clip (ffmpeg lavfi testsrc2, x264 crf 18) is made in a temporary folder.
Every measurement of our own code runs in a fresh Python process, so its peak RSS is its own.
`peak_rss_mb` = that process's peak + the peaks of the ffmpeg processes it ran during the timed
part (decoder and encoder run at the same time, so this is an upper bound of their sum). Peaks
are VmHWM from /proc on Linux, not getrusage's ru_maxrss: a child inherits ru_maxrss from the
process that spawned it (vfork + exec), so a worker started from a Python that imported torch
would report ≥ 500 MB before doing anything. Elsewhere ru_maxrss is the fallback. The table
also gives CPU milliseconds per frame (all processes, user + system): on a machine shared with
other jobs, wall-clock frames/s swing with the load, CPU time per frame much less.
--csv appends the rows (header written once) with the columns in `COLUMNS`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ..config import allowed_values, schema_default
from .sampling import run_work
from .suites import MODEL_CASES, bench_finetune, bench_infer, bench_io, bench_memory, bench_model
from .table import Row, machine_line, parse_size, write_csv
from .workloads import MODELS, WORK, is_base_name


def _add_commands(sub) -> None:
    def common(p: argparse.ArgumentParser, size_help: str, seconds_help: str) -> None:
        p.add_argument("--size", type=parse_size, help=size_help)
        p.add_argument("--seconds", type=float, help=seconds_help)
        p.add_argument("--csv", help="append the figures to this CSV file")
        p.add_argument("--input", help="measure on this video instead of a generated clip")
        p.add_argument("--batch-size", type=int, help="frames per batch (default: CPU 1 model / 4 infer, CUDA 8)")
        p.add_argument("--repeat", type=int, default=1,
                       help="io: run each measurement this often and keep the fastest (default 1)")

    def torch_opts(p: argparse.ArgumentParser, scale_default: str) -> None:
        p.add_argument("--scale", type=int, choices=(1, 2, 3, 4, 8), help=f"upscaling factor (default {scale_default})")
        p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
        p.add_argument("--model", type=_bench_model,
                       help="network: default = SRResNet 64×16, tiny = 8×2, temporal = default + a 3-frame "
                            "DIS-aligned fusion branch (temporal_none: unaligned), bicubic = no network; or a base "
                            "as the pipeline loads it: package:NAME (`model` on a CPU also times ncnn running the "
                            "same file) or a model file")
        p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own)")

    p = sub.add_parser("io", help="ffmpeg alone vs our decode/encode/passthrough")
    common(p, "clip size (default 1280x720)", "clip length (default 5)")
    p.add_argument("--scale", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"),
                   help="where the passthrough_model rows run their identity model (default cpu)")
    p.set_defaults(bench=_cmd_io)

    p = sub.add_parser("model", help="model-only frames/s")
    common(p, "input frame size (default: 960x540 ×4 and 1280x720 ×2)", "time bound per case (default 5)")
    torch_opts(p, "2 with --size")
    p.add_argument("--compile", choices=("off", "on", "both"), default="off",
                   help="torch.compile the network (on), or measure eager and compiled side by side (both)")
    p.set_defaults(bench=_cmd_model)

    p = sub.add_parser("infer", help="end-to-end enhance_video vs each stage alone")
    common(p, "input size (default 320x180)", "clip length, and the model stage's time bound (default 3)")
    torch_opts(p, "2")
    p.add_argument("--transport", default=schema_default("infer", "transport"),
                   choices=allowed_values("infer", "transport"),
                   help="pixel format between ffmpeg and the model (infer.transport; default: the config's)")
    p.set_defaults(bench=_cmd_infer)

    p = sub.add_parser("finetune", help="a video's fine-tune as the pipeline runs it: seconds and iterations/s")
    common(p, "clip size (default 1280x720)", "clip length (default 4)")
    p.add_argument("--scale", type=int, choices=(1, 2, 3, 4, 8), help="upscaling factor (default: the config's)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own)")
    p.add_argument("--config",
                   help="a pipeline config file (default: the built-in defaults, those of config/config.yaml)")
    p.add_argument("--steps", type=int, help="fine-tuning steps instead of the config's")
    p.set_defaults(bench=_cmd_finetune)

    p = sub.add_parser("memory", help="peak RSS of enhance_video on N and 10·N seconds (target ratio < 1.2)")
    common(p, "input size (default 320x180)", "N, the short clip's length (default 2)")
    torch_opts(p, "2")
    p.set_defaults(model=None)  # memory: tiny on CPU (600 frames of the default net take minutes), default on CUDA
    p.set_defaults(bench=_cmd_memory)


def _bench_model(name: str) -> str:
    if name in MODELS or is_base_name(name):
        return name
    raise argparse.ArgumentTypeError(f"{name!r}: choose one of {', '.join(sorted(MODELS))}, package:NAME "
                                     "(videnhance import-weights --list) or a model file")


def _given(value, default):
    return default if value is None else value


def _cmd_io(args) -> list[Row]:
    return bench_io(args.size or (1280, 720), _given(args.seconds, 5), args.input, batch_size=args.batch_size or 8,
                    repeat=args.repeat, device=args.device)


def _cmd_model(args) -> list[Row]:
    cases = [(*args.size, args.scale or 2)] if args.size else None
    if cases is None and args.scale:
        cases = [(w, h, args.scale) for w, h, _ in MODEL_CASES]
    compile = {"off": False, "on": True, "both": None}[args.compile]
    return bench_model(cases, _given(args.seconds, 5), args.device, args.batch_size, args.model or "default",
                       args.threads,
                       compile=compile)


def _cmd_infer(args) -> list[Row]:
    return bench_infer(args.size or (320, 180), args.scale or 2, _given(args.seconds, 3), args.input, args.device,
                       args.batch_size, args.model or "default", threads=args.threads, transport=args.transport)


def _cmd_finetune(args) -> list[Row]:
    from ..config import load_config_file

    config = load_config_file(args.config) if args.config else None
    return bench_finetune(args.size or (1280, 720), _given(args.seconds, 4), args.input, args.device, config,
                          args.steps, args.scale, args.threads)


def _cmd_memory(args) -> list[Row]:
    return bench_memory(args.size or (320, 180), _given(args.seconds, 2), args.scale or 2, args.device, args.batch_size,
                        args.model, threads=args.threads)


def run_bench(args: argparse.Namespace) -> int:
    """The `bench` command's entry (set as `func` by `register`)."""
    print(machine_line())
    rows = args.bench(args)
    if args.csv:
        write_csv(rows, args.csv)
        print(f"csv: {len(rows)} rows appended to {args.csv}")
    print(machine_line().replace("machine:", "machine after:"))
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add `bench` (with io/model/infer/finetune/memory under it) to the CLI's subparsers."""
    p = subparsers.add_parser("bench", help="measure decode/encode, the model, fine-tuning and whole-video inference",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_commands(p.add_subparsers(dest="bench_command", required=True))
    p.set_defaults(func=run_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_work"]:  # one measurement in this fresh process; the result as a JSON line
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        spec = json.loads(argv[1])
        print(json.dumps(run_work(WORK[spec["kind"]], spec)))
        return 0
    parser = argparse.ArgumentParser(prog="python -m videnhance.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_commands(parser.add_subparsers(dest="bench_command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_bench(args)



