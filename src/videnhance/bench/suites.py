"""The benchmarks: each runs workloads (in fresh processes) next to what they are compared with
(ffmpeg alone, or each stage alone) and prints a table and the ratio lines the docs quote."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from ..io import EncodeSettings, probe, run_ffmpeg
from .sampling import ffmpeg_timed, run_work
from .table import Row, fps_of, print_table, size_text
from .workloads import CLIP_FPS, HELD_FRAMES_BYTES, MODELS, WORK, is_base_name, make_test_clip

MODEL_CASES = ((960, 540, 4), (1280, 720, 2))  # `bench model` without --size: 540p→×4 and 720p→×2


def measure(spec: dict, isolate: bool = True) -> dict:
    """Run one measurement; in a fresh Python process unless `isolate=False` (then peak RSS is
    this process's peak so far, not the measurement's own)."""
    if not isolate:
        return run_work(WORK[spec["kind"]], spec)
    cmd = [sys.executable, "-m", "videnhance.bench", "_work", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench {spec['kind']} failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"bench {spec['kind']}: no result; stderr: {proc.stderr.strip()[-1500:]}")
    return json.loads(lines[-1])


def _best(results: list[dict]) -> dict:
    """Of repeated runs, the fastest (the one least disturbed by other jobs)."""
    return max(results, key=lambda r: fps_of(r["frames"], r["seconds"]))


def _measure_best(spec: dict, repeat: int, isolate: bool) -> dict:
    return _best([measure(spec, isolate) for _ in range(max(1, repeat))])


def _ffmpeg_best(args: list[str], repeat: int) -> tuple[float, float | None, float]:
    runs = [ffmpeg_timed(args) for _ in range(max(1, repeat))]
    return min(runs, key=lambda r: r[0])


def _row_from(result: dict, benchmark: str, measure_name: str, size: str, scale: int, device: str) -> Row:
    rss = result["py_rss_mb"] + result["ffmpeg_rss_mb"]
    note = f"rss py {result['py_rss_mb']:.0f} + ffmpeg {result['ffmpeg_rss_mb']:.0f} MB"
    cpu = None
    if "py_cpu_s" in result:
        cpu = result["py_cpu_s"] + result["ffmpeg_cpu_s"]
        note += f"; cpu py {result['py_cpu_s']:.2f} + ffmpeg {result['ffmpeg_cpu_s']:.2f} s"
    return Row(benchmark, measure_name, size, scale, device, result["frames"], result["seconds"],
               fps_of(result["frames"], result["seconds"]), peak_rss_mb=rss, peak_gpu_mb=result.get("peak_gpu_mb"),
               cpu_seconds=cpu, note=note)


def _default_batch(kind: str, device: str) -> int:
    cuda = device.startswith("cuda")
    if kind == "model":
        return 8 if cuda else 1  # big CPU frames take seconds each: one at a time
    return 8 if cuda else 4


@contextmanager
def _source_clip(input: str | Path | None, size: tuple[int, int], seconds: float):
    """A scratch folder, the clip to measure (the user's, or a generated one) and its metadata."""
    with tempfile.TemporaryDirectory(prefix="videnhance-bench-") as tmp:
        tmp = Path(tmp)
        src = Path(input) if input else make_test_clip(tmp / "src.mp4", size, seconds)
        yield tmp, src, probe(src)



def bench_io(size: tuple[int, int] = (1280, 720), seconds: float = 5, input: str | Path | None = None,
             settings: EncodeSettings | None = None, batch_size: int = 8, repeat: int = 1, isolate: bool = True,
             out=None, device: str = "cpu") -> list[Row]:
    """ffmpeg alone vs our decode, encode and passthrough on one clip; prints `passthrough_ratio: R`.

    `passthrough` moves the reader's batches straight to the writer. `passthrough_model_<fmt>`
    runs the whole inference path (`enhance_video`) with an identity model on `device`, with
    frames carried as `fmt` (`infer.transport`): upload, uint8 → float (and YUV → RGB), back, and
    download, as a real model's frames would go."""
    out = out or sys.stdout
    settings = settings or EncodeSettings()
    rows: list[Row] = []
    with _source_clip(input, size, seconds) as (tmp, src, meta):
        w, h, n = meta.width, meta.height, meta.frames
        st = size_text(w, h)
        enc = settings.args(w, h)
        rate = f"{meta.fps_num}/{meta.fps_den}"
        dst = str(tmp / "out.mkv")

        def ff(name: str, args: list[str], frames: int = n) -> Row:
            secs, rss, cpu = _ffmpeg_best(args, repeat)
            row = Row("io", name, st, 1, "cpu", frames, secs, fps_of(frames, secs), peak_rss_mb=rss, cpu_seconds=cpu)
            rows.append(row)
            return row

        src_in = ["-i", str(src), "-map", "0:v:0", "-fps_mode", "passthrough"]
        dec = ff("ffmpeg_decode", [*src_in, "-f", "null", "-"])
        dec_rgb = ff("ffmpeg_decode_rgb24", [*src_in, "-f", "rawvideo", "-pix_fmt", "rgb24", os.devnull])
        dec_rgb.ratio, dec_rgb.reference = dec_rgb.fps / dec.fps, "ffmpeg_decode"
        tc = ff("ffmpeg_transcode", [*src_in, *enc, dst])
        tc_rgb = ff("ffmpeg_transcode_rgb24", [*src_in, "-vf", "format=rgb24", *enc, dst])
        tc_rgb.ratio, tc_rgb.reference = tc_rgb.fps / tc.fps, "ffmpeg_transcode"
        enc_ref = tc
        if n * w * h * 3 <= 4 * HELD_FRAMES_BYTES:  # raw RGB file for the encoder alone
            raw = tmp / "frames.rgb"
            run_ffmpeg([*src_in, "-f", "rawvideo", "-pix_fmt", "rgb24", str(raw)], what="raw frames")
            enc_ref = ff("ffmpeg_encode_rgb24", ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", st, "-r", rate,
                                                 "-i", str(raw), *enc, dst])
            raw.unlink()

        spec = {"input": str(src), "output": dst, "batch_size": batch_size, "settings": asdict(settings)}
        ours = {}
        for kind, ref in (("decode", dec), ("encode", enc_ref), ("passthrough", tc)):
            result = _measure_best({**spec, "kind": kind}, repeat, isolate)
            row = _row_from(result, "io", kind, st, 1, "cpu")
            row.ratio, row.reference = row.fps / ref.fps, ref.measure
            rows.append(row)
            ours[kind] = row
        fmts = ("rgb24", "yuv420p") if w % 2 == 0 and h % 2 == 0 else ("rgb24",)
        if "yuv420p" in fmts and meta.pix_fmt == "yuv420p":  # the pipes of a GPU run: no conversion on the CPU
            result = _measure_best({**spec, "kind": "passthrough", "pix_fmt": "yuv420p"}, repeat, isolate)
            row = _row_from(result, "io", "passthrough_yuv420p", st, 1, "cpu")
            row.ratio, row.reference = row.fps / tc.fps, tc.measure
            rows.append(row)
            ours["yuv420p"] = row
        dev = _resolve_device(device)
        for fmt in fmts:  # the inference path with an identity model (bicubic at ×1 returns its input)
            model_spec = {**spec, "kind": "infer", "model": "bicubic", "scale": 1, "device": dev, "transport": fmt}
            result = _measure_best(model_spec, repeat, isolate)
            row = _row_from(result, "io", f"passthrough_model_{fmt}", st, 1, dev)
            row.ratio, row.reference = row.fps / tc.fps, tc.measure
            rows.append(row)
            ours[f"model_{fmt}"] = row
        for fmt in fmts:  # diagnostics: the cost of Python and of the RGB conversion
            result = _measure_best({**spec, "kind": "pipe", "pix_fmt": fmt}, repeat, isolate)
            row = _row_from(result, "io", f"pipe_{fmt}", st, 1, "cpu")
            row.ratio, row.reference = row.fps / tc.fps, tc.measure
            rows.append(row)
    print_table(rows, out, title=f"io: {st}, {n} frames, encoder {' '.join(enc)} (best of {max(1, repeat)})")
    print(f"decode_vs_ffmpeg_rgb24: {ours['decode'].fps / dec_rgb.fps:.3f}", file=out)
    print(f"passthrough_vs_ffmpeg_transcode_rgb24: {ours['passthrough'].fps / tc_rgb.fps:.3f}", file=out)
    for fmt in fmts:
        print(f"passthrough_model_{fmt}_ratio: {ours[f'model_{fmt}'].ratio:.3f}", file=out)
    if "yuv420p" in ours:
        print(f"passthrough_yuv420p_ratio: {ours['yuv420p'].ratio:.3f}", file=out)
    print(f"passthrough_ratio: {ours['passthrough'].ratio:.3f}", file=out)
    return rows


def bench_model(cases: list[tuple[int, int, int]] | None = None, seconds: float = 5, device: str = "auto",
                batch_size: int | None = None, model: str = "default", threads: int | None = None,
                isolate: bool = True, out=None, compile: bool | None = False) -> list[Row]:
    """Model-only frames/s for each (width, height, scale); `compile=None` measures eager and
    torch.compile side by side (compile time reported apart, in the note)."""
    out = out or sys.stdout
    rows = []
    for w, h, scale in cases or MODEL_CASES:
        dev = _resolve_device(device)
        for compiled in ((False, True) if compile is None else (compile,)):
            spec = {"kind": "model", "size": [w, h], "scale": scale, "device": dev, "model": model,
                    "seconds": seconds, "batch_size": batch_size or _default_batch("model", dev), "threads": threads,
                    "compile": compiled}
            rows.append(_model_row(measure(spec, isolate), model, compiled, w, h, scale, dev))
        if model.startswith("package:") and dev == "cpu":  # the anchor: ncnn running the same file
            ncnn = _model_row(measure({**spec, "kind": "ncnn", "compile": False}, isolate), "ncnn", False, w, h, scale,
                              dev)
            for row in rows[-(2 if compile is None else 1):]:
                row.ratio, row.reference = row.fps / ncnn.fps, ncnn.measure
            rows.append(ncnn)
            print(f"model_vs_ncnn_{size_text(w, h)}_x{scale}: {rows[-2].ratio:.3f} (our frames/s ÷ ncnn's; the "
                  f"target, within 1.2× of ncnn's time per frame, is ≥ 0.833)", file=out)
    weights = "its own weights" if is_base_name(model) else f"{MODELS.get(model)}, random weights"
    print_table(rows, out, title=f"model: {model} ({weights}), time-bounded {seconds} s")
    return rows


def _model_row(result: dict, model: str, compiled: bool, w: int, h: int, scale: int, dev: str) -> Row:
    name = f"{model}_{result['dtype']}_b{result['batch_size']}{'_compiled' if compiled else ''}"
    row = _row_from(result, "model", name, size_text(w, h), scale, dev)
    where = result.get("gpu") or f"{result['threads']} threads"
    if result.get("compile_s") is not None:
        where += f", compile {result['compile_s']:.1f} s"
    row.note = f"{where}; {row.note}"
    return row


def bench_infer(size: tuple[int, int] = (320, 180), scale: int = 2, seconds: float = 3,
                input: str | Path | None = None, device: str = "auto", batch_size: int | None = None,
                model: str = "default", settings: EncodeSettings | None = None, threads: int | None = None,
                isolate: bool = True, out=None, transport: str | None = None) -> list[Row]:
    """End-to-end enhance_video next to each stage alone; prints `infer_ratio: R`. The decoder
    and encoder stages move frames in the formats the end-to-end run uses (`infer.transport`)."""
    import torch

    from ..infer import choose_layout

    out = out or sys.stdout
    settings = settings or EncodeSettings()
    dev = _resolve_device(device)
    batch = batch_size or _default_batch("infer", dev)
    rows: list[Row] = []
    with _source_clip(input, size, seconds) as (tmp, src, meta):
        w, h, n = meta.width, meta.height, meta.frames
        ow, oh = w * scale, h * scale
        layout = choose_layout(transport, torch.device(dev), meta, settings)
        base = {"settings": asdict(settings), "threads": threads, "device": dev, "model": model, "scale": scale}
        e2e = _row_from(measure({**base, "kind": "infer", "input": str(src), "output": str(tmp / "out.mkv"),
                                 "batch_size": batch, "transport": transport}, isolate),
                        "infer", "enhance_video", size_text(w, h), scale, dev)
        stages = [
            _row_from(measure({**base, "kind": "model", "size": [w, h], "seconds": seconds, "batch_size": batch,
                               "warmup": True},
                              isolate), "infer", "stage_model", size_text(w, h), scale, dev),
            _row_from(measure({**base, "kind": "decode", "input": str(src), "batch_size": batch,
                               "pix_fmt": layout.read},
                              isolate), "infer", "stage_decode", size_text(w, h), scale, "cpu"),
        ]
        big = make_test_clip(tmp / "big.mp4", (ow, oh), n / CLIP_FPS,
                             settings=EncodeSettings(crf=18, preset="ultrafast"))
        stages.append(_row_from(measure({**base, "kind": "encode", "input": str(big), "output": str(tmp / "enc.mkv"),
                                         "batch_size": batch, "frames": n, "pix_fmt": layout.write}, isolate),
                                "infer", "stage_encode", size_text(ow, oh), scale, "cpu"))
        stages[1].note += f"; frames as {layout.read}"
        stages[2].note += f"; frames as {layout.write}"
    slowest = min(stages, key=lambda r: r.fps)
    e2e.ratio, e2e.reference = e2e.fps / slowest.fps, slowest.measure
    for stage in stages:
        stage.ratio, stage.reference = stage.fps / e2e.fps, "enhance_video"
    rows = [e2e, *stages]
    print_table(rows, out, title=f"infer: {size_text(w, h)} → ×{scale} {size_text(ow, oh)}, {n} frames, model {model}, "
                                 f"batch {batch}, encoder {' '.join(settings.args(ow, oh))}")
    print(f"transport: {layout.read}→{layout.write}", file=out)
    print(f"slowest_stage: {slowest.measure.removeprefix('stage_')}", file=out)
    print(f"infer_ratio: {e2e.ratio:.3f}", file=out)
    return rows


def bench_finetune(size: tuple[int, int] = (1280, 720), seconds: float = 4, input: str | Path | None = None,
                   device: str = "auto", config: dict | None = None, steps: int | None = None, scale: int | None = None,
                   threads: int | None = None, isolate: bool = True, out=None) -> list[Row]:
    """A video's fine-tuning as the pipeline runs it (`config`: the schema defaults unless given),
    timed from the pairs to the kept model. Prints `fine_tune_seconds: S` and `it_per_s: R`.
    The row's `frames` are training steps, so its `fps` is iterations/s."""
    from ..config import validate_config
    from ..settings import Settings

    out = out or sys.stdout
    raw = copy.deepcopy(config or {})
    if steps is not None:
        raw["fine_tune"] = {**raw.get("fine_tune", {}), "steps": steps}
    if scale is not None:
        raw["scale"] = scale
    cfg = validate_config(raw)
    s = Settings.from_dict(cfg)
    dev = _resolve_device(device)
    with _source_clip(input, size, seconds) as (tmp, src, meta):
        spec = {"kind": "finetune", "input": str(src), "workdir": str(tmp), "config": cfg, "device": dev,
                "threads": threads}
        result = measure(spec, isolate)
        row = _row_from(result, "finetune", f"fine_tune_{s.fine_tune.pairs}", size_text(meta.width, meta.height),
                        s.scale, dev)
        row.note += (f"; {s.model.arch} {s.model.channels}x{s.model.blocks}, batch {s.fine_tune.batch_size}, patch "
                     f"{s.fine_tune.patch}, {s.extract.frames} frames; kept {result['kept']}; training alone "
                     f"{result['train_seconds']:.1f} s")
    print_table([row], out, title=f"finetune: {size_text(meta.width, meta.height)} ×{s.scale}, "
                                  f"{s.fine_tune.steps} steps in {s.fine_tune.rounds} round(s)")
    if not result["frames"]:
        print(f"warning: no training step ran ({result['reason']}); raise extract.frames or val_fraction", file=out)
    print(f"fine_tune_seconds: {row.seconds:.1f}", file=out)
    print(f"it_per_s: {result['it_per_s']:.2f}", file=out)
    return [row]


def bench_memory(size: tuple[int, int] = (320, 180), seconds: float = 2, scale: int = 2, device: str = "auto",
                 batch_size: int | None = None, model: str | None = None, settings: EncodeSettings | None = None,
                 threads: int | None = None, out=None) -> list[Row]:
    """Peak RSS of enhance_video on an N- and a 10·N-second clip, each in a fresh process."""
    out = out or sys.stdout
    settings = settings or EncodeSettings()
    dev = _resolve_device(device)
    model = model or ("default" if dev.startswith("cuda") else "tiny")
    batch = batch_size or _default_batch("infer", dev)
    rows = []
    with tempfile.TemporaryDirectory(prefix="videnhance-bench-") as tmp:
        tmp = Path(tmp)
        for length in (seconds, 10 * seconds):
            src = make_test_clip(tmp / f"src_{length:g}s.mp4", size, length)
            spec = {"kind": "infer", "input": str(src), "output": str(tmp / "out.mkv"), "scale": scale, "device": dev,
                    "model": model, "batch_size": batch, "settings": asdict(settings), "threads": threads}
            rows.append(_row_from(measure(spec, isolate=True), "memory", f"enhance_video_{length:g}s", size_text(*size),
                                  scale, dev))
    rows[1].ratio, rows[1].reference = rows[1].peak_rss_mb / rows[0].peak_rss_mb, rows[0].measure
    if rows[0].peak_gpu_mb and rows[1].peak_gpu_mb:
        rows[1].note += f"; gpu ratio {rows[1].peak_gpu_mb / rows[0].peak_gpu_mb:.3f}"
    print_table(rows, out, title=f"memory: enhance_video, model {model}, batch {batch}, fresh process per run")
    verdict = "ok" if rows[1].ratio < 1.2 else "NOT FLAT"
    print(f"memory_ratio: {rows[1].ratio:.3f} (target < 1.2: {verdict})", file=out)
    return rows


def _resolve_device(device: str) -> str:
    if device == "cpu":
        return "cpu"
    from ..infer import pick_device

    return str(pick_device(device))


