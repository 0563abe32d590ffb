"""`videnhance bench io|model|infer|finetune|memory`: how fast this machine decodes, runs the model,
encodes and enhances whole videos, measured against ffmpeg doing the same work on its own.

  io      ffmpeg alone (decode to null, file→file transcode with our encoder settings) next to our
          decode into numpy batches, our encode from numpy, and our passthrough (decode → identity
          → encode), also through the inference path with each transport (rgb24, yuv420p) on
          --device. Ends with `passthrough_ratio: R` (our passthrough ÷ ffmpeg transcode, frames/s).
  model   model-only frames/s of the default network (SRResNet 64 channels × 16 blocks, random
          weights), input in channels_last as `run_model` gives it: fp32 on CPU (with the
          allocator tuning enhance_video uses); bf16 autocast + channels_last weights on CUDA. Time-bounded: runs until
          --seconds have passed, at least one batch.
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
import contextlib
import csv
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .colour import TRANSPORTS
from .io import (
    EncodeSettings,
    FrameReader,
    FrameWriter,
    VideoMeta,
    ffmpeg_exe,
    frame_layout,
    probe,
    run_ffmpeg,
)

log = logging.getLogger(__name__)

COLUMNS = ("benchmark", "measure", "size", "scale", "device", "frames", "seconds", "fps", "ratio",
           "peak_rss_mb", "peak_gpu_mb")
CLIP_FPS = 30
MODEL_CASES = ((960, 540, 4), (1280, 720, 2))  # `bench model` without --size: 540p→×4 and 720p→×2
MODELS = {"default": {"channels": 64, "blocks": 16}, "tiny": {"channels": 8, "blocks": 2}, "bicubic": None}
HELD_FRAMES_BYTES = 1 << 30  # the encode measurement keeps at most this much decoded video in memory


@dataclass
class Row:
    benchmark: str
    measure: str
    size: str
    scale: int
    device: str
    frames: int
    seconds: float
    fps: float
    ratio: float | None = None
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None
    reference: str = ""  # what `ratio` divides by (table only, not a CSV column)
    cpu_seconds: float | None = None  # CPU time of every process involved (table only)
    note: str = ""  # e.g. the RSS split between Python and ffmpeg (table only)

    def csv_values(self) -> list:
        out = []
        for name in COLUMNS:
            value = getattr(self, name)
            if value is None:
                out.append("")
            elif isinstance(value, float):
                out.append(f"{value:.4g}" if name in ("ratio",) else f"{value:.3f}".rstrip("0").rstrip("."))
            else:
                out.append(value)
        return out


# ---------------------------------------------------------------------------------------------
# helpers


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1280x720, not {text!r}") from None
    if w < 2 or h < 2:
        raise argparse.ArgumentTypeError(f"size {text!r} is too small")
    return w, h


def size_text(w: int, h: int) -> str:
    return f"{w}x{h}"


def _rss_mb(maxrss: int) -> float:
    """ru_maxrss is KiB on Linux, bytes on macOS."""
    return maxrss / (1 << 20) if sys.platform == "darwin" else maxrss / 1024


def _fps(frames: int, seconds: float) -> float:
    return frames / seconds if seconds > 0 else float("nan")


def make_test_clip(path: str | Path, size: tuple[int, int], seconds: float, fps: int = CLIP_FPS,
                   settings: EncodeSettings | None = None) -> Path:
    """A synthetic clip (lavfi testsrc2: moving colour pattern, text, gradients), x264 crf 18."""
    path = Path(path)
    w, h = size
    frames = max(1, round(seconds * fps))
    settings = settings or EncodeSettings()
    run_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}", "-frames:v", str(frames),
                *settings.args(w, h), str(path)], what=f"{path} (benchmark clip)")
    return path


def _vm_hwm_mb(pid: int | str = "self") -> float | None:
    """A live process's own peak RSS (VmHWM; Linux). None when gone, a zombie, or not Linux.

    Used instead of getrusage's ru_maxrss, which a child inherits from its parent: a process
    spawned (vfork + exec) by a 500 MB Python reports at least 500 MB there."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class PeakWatcher:
    """Samples the peak RSS (VmHWM, monotonic) of the processes it is given, every `interval` s,
    until they exit; `peaks` maps pid → MB. The last sample is at most `interval` old."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peaks: dict[int, float] = {}
        self._live: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, pid: int) -> None:
        with self._lock:
            self._live.add(pid)
        self.sample()

    def sample(self) -> None:
        with self._lock:
            for pid in list(self._live):
                mb = _vm_hwm_mb(pid)
                if mb is None:
                    self._live.discard(pid)
                else:
                    self.peaks[pid] = max(self.peaks.get(pid, 0.0), mb)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> PeakWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_now() -> tuple[float, float]:
    """(this process's, its reaped children's) user + system CPU seconds."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def ffmpeg_timed(args: list[str]) -> tuple[float, float | None, float]:
    """Run ffmpeg with `args`; (wall seconds, its peak RSS in MB, its CPU seconds)."""
    cmd = [ffmpeg_exe(), "-nostdin", "-y", "-v", "error", *args]
    with tempfile.TemporaryFile() as err, PeakWatcher() as watcher:
        cpu0 = _cpu_now()[1]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        watcher.add(proc.pid)
        proc.wait()
        seconds = time.perf_counter() - start
        cpu = _cpu_now()[1] - cpu0
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {err.read().decode(errors='replace')[-600:]}")
    return seconds, watcher.peaks.get(proc.pid), cpu


def passthrough(src: str | Path, dst: str | Path, settings: EncodeSettings | None = None, batch_size: int = 8,
                meta: VideoMeta | None = None, pix_fmt: str = "rgb24") -> int:
    """Decode `src` into numpy batches of `pix_fmt` and encode them unchanged into `dst`; the
    frame count. With yuv420p neither ffmpeg converts: this is the CPU's share of a GPU run with
    `infer.transport: yuv420p`, whose conversions happen on the GPU."""
    meta = meta or probe(src)
    with FrameWriter(dst, meta.width, meta.height, meta.fps, settings or EncodeSettings(), pix_fmt=pix_fmt,
                     colour=meta.colour) as writer:
        for batch in FrameReader(src, meta, batch_size=batch_size, pix_fmt=pix_fmt):
            writer.write(batch)
    return writer.frames


def build_bench_model(name: str, scale: int):
    """The network to time: random weights (a fixed seed), tail not zero so the output has detail."""
    if name not in MODELS:
        raise ValueError(f"unknown bench model {name!r}; choose one of {sorted(MODELS)}")
    if MODELS[name] is None:
        return None
    import torch

    from .models import SRResNet

    torch.manual_seed(0)
    model = SRResNet(scale=scale, **MODELS[name])
    torch.nn.init.normal_(model.tail.weight, std=1e-3)
    return model.eval()


def _default_batch(kind: str, device: str) -> int:
    cuda = device.startswith("cuda")
    if kind == "model":
        return 8 if cuda else 1  # big CPU frames take seconds each: one at a time
    return 8 if cuda else 4


# ---------------------------------------------------------------------------------------------
# measurements of our own code: each runs in a fresh process (see `measure`)


def _work_decode(spec: dict) -> dict:
    """FrameReader alone, delivering `pix_fmt` (rgb24 unless given: what the inference reads)."""
    meta = probe(spec["input"])
    _timing_starts()
    start = time.perf_counter()
    reader = FrameReader(spec["input"], meta, batch_size=spec["batch_size"], pix_fmt=spec.get("pix_fmt", "rgb24"))
    frames = sum(len(b) for b in reader)
    return {"frames": frames, "seconds": time.perf_counter() - start}


def _work_encode(spec: dict) -> dict:
    """FrameWriter from frames already in memory, in `pix_fmt` (rgb24 unless given): all of the
    clip, or a cycle of its first HELD_FRAMES_BYTES when it is bigger."""
    import numpy as np

    meta = probe(spec["input"])
    pix_fmt = spec.get("pix_fmt", "rgb24")
    shape, dtype = frame_layout(pix_fmt, meta.height, meta.width)
    frame_bytes = int(np.prod(shape)) * dtype.itemsize
    room = max(1, spec.get("held_bytes", HELD_FRAMES_BYTES) // frame_bytes)
    held, count = [], 0
    for batch in FrameReader(spec["input"], meta, batch_size=spec["batch_size"], pix_fmt=pix_fmt):
        if count < room:
            held.append(np.array(batch[: room - count]))
            count += len(held[-1])
    total = spec.get("frames") or meta.frames
    settings = EncodeSettings(**spec["settings"])
    _timing_starts()
    start = time.perf_counter()
    with FrameWriter(spec["output"], meta.width, meta.height, meta.fps, settings, pix_fmt=pix_fmt,
                     colour=meta.colour) as writer:
        i = 0
        while writer.frames < total:
            writer.write(held[i % len(held)][: total - writer.frames])
            i += 1
    return {"frames": writer.frames, "seconds": time.perf_counter() - start, "held_frames": count}


def _work_passthrough(spec: dict) -> dict:
    meta = probe(spec["input"])
    _timing_starts()
    start = time.perf_counter()
    frames = passthrough(spec["input"], spec["output"], EncodeSettings(**spec["settings"]), spec["batch_size"], meta,
                         spec.get("pix_fmt", "rgb24"))
    return {"frames": frames, "seconds": time.perf_counter() - start}


def _work_pipe(spec: dict) -> dict:
    """The least Python can add: bytes from a decoding ffmpeg straight into an encoding one, in
    `pix_fmt` (rgb24 as our reader/writer carry, or yuv420p: no colour conversion, half the bytes)."""
    meta = probe(spec["input"])
    fmt = spec["pix_fmt"]
    settings = EncodeSettings(**spec["settings"])
    ff = ffmpeg_exe()
    buf = memoryview(bytearray(1 << 22))
    _timing_starts()
    start = time.perf_counter()
    dec = subprocess.Popen([ff, "-nostdin", "-v", "error", "-i", spec["input"], "-map", "0:v:0", "-fps_mode",
                            "passthrough", "-f", "rawvideo", "-pix_fmt", fmt, "-"], stdout=subprocess.PIPE)
    enc = subprocess.Popen([ff, "-nostdin", "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", fmt, "-s",
                            f"{meta.width}x{meta.height}", "-r", f"{meta.fps_num}/{meta.fps_den}", "-i", "-",
                            *settings.args(meta.width, meta.height), spec["output"]], stdin=subprocess.PIPE)
    while got := dec.stdout.readinto(buf):
        enc.stdin.write(buf[:got])
    enc.stdin.close()
    if enc.wait() or dec.wait():
        raise RuntimeError(f"pipe {fmt}: ffmpeg failed (decoder {dec.returncode}, encoder {enc.returncode})")
    return {"frames": meta.frames, "seconds": time.perf_counter() - start}


def _set_threads(spec: dict):
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    return torch


def _work_model(spec: dict) -> dict:
    """Model-only frames/s on random input; halves the batch on out-of-memory."""
    torch = _set_threads(spec)
    import torch.nn.functional as F

    from .infer import is_out_of_memory, pick_device, prepare_model, tune_cpu_allocator

    dev = pick_device(spec["device"])
    if dev.type == "cpu" and spec["model"] != "bicubic":
        tune_cpu_allocator()  # as enhance_video does
    w, h = spec["size"]
    scale = spec["scale"]
    cuda = dev.type == "cuda"
    model = prepare_model(build_bench_model(spec["model"], scale), dev, bool(spec.get("compile")))  # as enhance_video
    compile_s = None

    def call(x):
        if model is None:
            return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
        if cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return model(x)
        return model(x)

    batch = int(spec["batch_size"])
    with torch.inference_mode():
        while True:
            try:
                # channels_last, as run_model feeds the model (NHWC frames permuted): ~10% faster on CPU too
                x = torch.rand(batch, 3, h, w, device=dev).contiguous(memory_format=torch.channels_last)
                if spec.get("compile") and model is not None:  # compile on the timed shape, timed apart
                    t0 = time.perf_counter()
                    call(x)
                    if cuda:
                        torch.cuda.synchronize()
                    compile_s = time.perf_counter() - t0
                if cuda:
                    for _ in range(2):  # warm-up: kernels picked, memory pools grown
                        call(x)
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                elif spec.get("warmup"):
                    call(x)  # a whole batch first: the allocator's first big requests are slow
                else:
                    call(x[:1, :, : min(h, 64), : min(w, 64)])  # warm-up on a crop: a full CPU frame takes seconds
                _timing_starts()
                frames, start = 0, time.perf_counter()
                while True:
                    call(x)
                    if cuda:
                        torch.cuda.synchronize()
                    frames += batch
                    seconds = time.perf_counter() - start
                    if seconds >= spec["seconds"]:
                        break
                break
            except Exception as err:  # noqa: BLE001 - only out-of-memory is retried
                if not is_out_of_memory(err) or batch == 1:
                    raise
                log.warning("bench model: out of memory with batch %d; trying %d", batch, batch // 2)
                x = None
                batch //= 2
                if cuda:
                    torch.cuda.empty_cache()
    out = {"frames": frames, "seconds": seconds, "batch_size": batch,
           "dtype": "bf16" if cuda and model is not None else "fp32", "threads": torch.get_num_threads(),
           "compiled": bool(spec.get("compile")), "compile_s": compile_s}
    if cuda:
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / (1 << 20)
        out["gpu"] = torch.cuda.get_device_name(dev)
    return out


def _work_infer(spec: dict) -> dict:
    torch = _set_threads(spec)

    from .infer import enhance_video, pick_device

    dev = pick_device(spec["device"])
    model = build_bench_model(spec["model"], spec["scale"])
    meta = probe(spec["input"])
    _timing_starts()
    start = time.perf_counter()
    stats = enhance_video(model, spec["input"], spec["output"], spec["scale"], EncodeSettings(**spec["settings"]),
                          device=str(dev), batch_size=spec["batch_size"], tile=spec.get("tile", 0), meta=meta,
                          progress=False, transport=spec.get("transport", "auto"))
    out = {"frames": stats["frames"], "seconds": time.perf_counter() - start, "threads": torch.get_num_threads(),
           "transport": stats["transport"]}
    if dev.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / (1 << 20)
    return out


def _work_finetune(spec: dict) -> dict:
    """The pipeline's own chain (`pipeline.run_video`) on one clip with the config in `spec`, up to
    `fine_tune`, from a freshly initialised base (an untrained SRResNet is exactly bicubic, and
    costs the same to fine-tune as a pretrained one). Only `fine_tune` is timed: it is a video's
    GPU step."""
    torch = _set_threads(spec)

    from .config import full_video_settings
    from .infer import pick_device
    from .models import arch_kwargs, build_model, save_model
    from .pipeline import run_video

    cfg, work = spec["config"], Path(spec["workdir"])
    settings = {**full_video_settings(cfg, {"id": "bench", "mode": "enhance"}), "device": spec["device"]}
    scale, dev = cfg["scale"], pick_device(spec["device"])
    kwargs = arch_kwargs(cfg["model"])
    torch.manual_seed(0)
    save_model(build_model(cfg["model"]["arch"], scale, **kwargs), work / "fresh.pt", cfg["model"]["arch"], scale, kwargs)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def before(step: str) -> None:
        if step == "fine_tune":
            _timing_starts()

    result = run_video(spec["input"], work / "out.mkv", settings, work / "video", base_checkpoint=work / "fresh.pt",
                       until="fine_tune", before=before)
    verdict = result["verdict"]
    out = {"frames": verdict["steps"], "seconds": result["seconds"]["fine_tune"], "train_seconds": verdict["seconds"],
           "it_per_s": verdict.get("it_per_s", 0.0), "kept": verdict["kept"], "reason": verdict["reason"],
           "threads": torch.get_num_threads()}
    if dev.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(dev) / (1 << 20)
    return out


WORK = {"decode": _work_decode, "encode": _work_encode, "passthrough": _work_passthrough, "pipe": _work_pipe,
        "model": _work_model, "infer": _work_infer, "finetune": _work_finetune}


_WATCHER: PeakWatcher | None = None


class _WatchedPopen(subprocess.Popen):
    """Popen that hands every ffmpeg it starts to the running measurement's PeakWatcher."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        argv0 = self.args[0] if isinstance(self.args, list | tuple) else self.args
        if _WATCHER is not None and "ffmpeg" in Path(str(argv0)).name:
            _WATCHER.add(self.pid)


@contextlib.contextmanager
def _watch_children():
    """While the block runs, the peak RSS of every ffmpeg that io.py starts is recorded."""
    global _WATCHER
    saved = subprocess.Popen
    with PeakWatcher() as watcher:
        _WATCHER, subprocess.Popen = watcher, _WatchedPopen
        try:
            yield watcher
        finally:
            _WATCHER, subprocess.Popen = None, saved


_CPU_START: tuple[float, float] | None = None


def _timing_starts() -> None:
    """Forget the ffmpeg runs before the timed part (probing, holding frames in memory); start
    counting CPU time."""
    global _CPU_START
    _CPU_START = _cpu_now()
    if _WATCHER is not None:
        _WATCHER.sample()
        _WATCHER.peaks.clear()


def _run_work(spec: dict) -> dict:
    global _CPU_START
    _CPU_START = None
    with _watch_children() as watcher:
        result = WORK[spec["kind"]](spec)
        watcher.sample()
    if _CPU_START is not None:
        own, kids = _cpu_now()
        result["py_cpu_s"], result["ffmpeg_cpu_s"] = own - _CPU_START[0], kids - _CPU_START[1]
    own = _vm_hwm_mb()
    result["py_rss_mb"] = own if own is not None else _rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    result["ffmpeg_rss_each"] = sorted(watcher.peaks.values())
    result["ffmpeg_rss_mb"] = sum(watcher.peaks.values())  # decoder and encoder run at the same time
    return result


def measure(spec: dict, isolate: bool = True) -> dict:
    """Run one measurement; in a fresh Python process unless `isolate=False` (then peak RSS is
    this process's peak so far, not the measurement's own)."""
    if not isolate:
        return _run_work(spec)
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
    return max(results, key=lambda r: _fps(r["frames"], r["seconds"]))


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
               _fps(result["frames"], result["seconds"]), peak_rss_mb=rss, peak_gpu_mb=result.get("peak_gpu_mb"),
               cpu_seconds=cpu, note=note)


# ---------------------------------------------------------------------------------------------
# the benchmarks


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
            row = Row("io", name, st, 1, "cpu", frames, secs, _fps(frames, secs), peak_rss_mb=rss, cpu_seconds=cpu)
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
            result = measure(spec, isolate)
            name = f"{model}_{result['dtype']}_b{result['batch_size']}{'_compiled' if compiled else ''}"
            row = _row_from(result, "model", name, size_text(w, h), scale, dev)
            where = result.get("gpu") or f"{result['threads']} threads"
            if result.get("compile_s") is not None:
                where += f", compile {result['compile_s']:.1f} s"
            row.note = f"{where}; {row.note}"
            rows.append(row)
    print_table(rows, out, title=f"model: SRResNet {MODELS.get(model)}, random weights, time-bounded {seconds} s")
    return rows


def bench_infer(size: tuple[int, int] = (320, 180), scale: int = 2, seconds: float = 3,
                input: str | Path | None = None, device: str = "auto", batch_size: int | None = None,
                model: str = "default", settings: EncodeSettings | None = None, threads: int | None = None,
                isolate: bool = True, out=None, transport: str = "auto") -> list[Row]:
    """End-to-end enhance_video next to each stage alone; prints `infer_ratio: R`. The decoder
    and encoder stages move frames in the formats the end-to-end run uses (`infer.transport`)."""
    import torch

    from .infer import choose_layout

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
            _row_from(measure({**base, "kind": "decode", "input": str(src), "batch_size": batch, "pix_fmt": layout.read},
                              isolate), "infer", "stage_decode", size_text(w, h), scale, "cpu"),
        ]
        big = make_test_clip(tmp / "big.mp4", (ow, oh), n / CLIP_FPS, settings=EncodeSettings(crf=18, preset="ultrafast"))
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
    from .config import validate_config

    out = out or sys.stdout
    cfg = validate_config(config or {})
    if steps is not None:
        cfg["fine_tune"]["steps"] = steps
    if scale is not None:
        cfg["scale"] = scale
    dev = _resolve_device(device)
    with _source_clip(input, size, seconds) as (tmp, src, meta):
        spec = {"kind": "finetune", "input": str(src), "workdir": str(tmp), "config": cfg, "device": dev,
                "threads": threads}
        result = measure(spec, isolate)
        row = _row_from(result, "finetune", f"fine_tune_{cfg['fine_tune']['pairs']}", size_text(meta.width, meta.height),
                        cfg["scale"], dev)
        row.note += (f"; {cfg['model']['arch']} {cfg['model']['channels']}x{cfg['model']['blocks']}, batch "
                     f"{cfg['fine_tune']['batch_size']}, patch {cfg['fine_tune']['patch']}, {cfg['extract']['frames']} "
                     f"frames; kept {result['kept']}; training alone {result['train_seconds']:.1f} s")
    print_table([row], out, title=f"finetune: {size_text(meta.width, meta.height)} ×{cfg['scale']}, "
                                  f"{cfg['fine_tune']['steps']} steps in {cfg['fine_tune']['rounds']} round(s)")
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
    from .infer import pick_device

    return str(pick_device(device))


# ---------------------------------------------------------------------------------------------
# output


def print_table(rows: list[Row], out=None, title: str = "") -> None:
    out = out or sys.stdout
    header = ["measure", "size", "×", "device", "frames", "seconds", "fps", "ratio", "vs", "rss MB", "gpu MB",
              "cpu ms/frame", "note"]
    body = [[r.measure, r.size, str(r.scale), r.device, str(r.frames), f"{r.seconds:.2f}", f"{r.fps:.2f}" if r.fps >= 1 else f"{r.fps:.3g}",
             "" if r.ratio is None else f"{r.ratio:.3f}", r.reference,
             "" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f}",
             "" if r.peak_gpu_mb is None else f"{r.peak_gpu_mb:.0f}",
             "" if r.cpu_seconds is None else f"{1000 * r.cpu_seconds / max(r.frames, 1):.1f}", r.note] for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    if title:
        print(f"\n{title}", file=out)
    for line in [header, *body]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip(), file=out)


def write_csv(rows: list[Row], path: str | Path) -> None:
    """Append rows; write the header only into a new or empty file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(row.csv_values())


def machine_line() -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"machine: {platform.node()}, {os.cpu_count()} CPU cores, load average {load}, python {platform.python_version()}"


# ---------------------------------------------------------------------------------------------
# command line


def _add_commands(sub) -> None:
    def common(p: argparse.ArgumentParser, size_help: str, seconds_help: str) -> None:
        p.add_argument("--size", type=parse_size, help=size_help)
        p.add_argument("--seconds", type=float, help=seconds_help)
        p.add_argument("--csv", help="append the figures to this CSV file")
        p.add_argument("--input", help="measure on this video instead of a generated clip")
        p.add_argument("--batch-size", type=int, help="frames per batch (default: CPU 1 model / 4 infer, CUDA 8)")
        p.add_argument("--repeat", type=int, default=1, help="io: run each measurement this often and keep the fastest (default 1)")

    def torch_opts(p: argparse.ArgumentParser, scale_default: str) -> None:
        p.add_argument("--scale", type=int, choices=(1, 2, 3, 4, 8), help=f"upscaling factor (default {scale_default})")
        p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
        p.add_argument("--model", choices=sorted(MODELS), help="network: default = SRResNet 64×16, tiny = 8×2, "
                                                                 "bicubic = no network")
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
    p.add_argument("--transport", default="auto", choices=TRANSPORTS,
                   help="pixel format between ffmpeg and the model (infer.transport; default auto)")
    p.set_defaults(bench=_cmd_infer)

    p = sub.add_parser("finetune", help="a video's fine-tune as the pipeline runs it: seconds and iterations/s")
    common(p, "clip size (default 1280x720)", "clip length (default 4)")
    p.add_argument("--scale", type=int, choices=(1, 2, 3, 4, 8), help="upscaling factor (default: the config's)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own)")
    p.add_argument("--config", help="a pipeline config file (default: the built-in defaults, steps 300)")
    p.add_argument("--steps", type=int, help="fine-tuning steps instead of the config's")
    p.set_defaults(bench=_cmd_finetune)

    p = sub.add_parser("memory", help="peak RSS of enhance_video on N and 10·N seconds (target ratio < 1.2)")
    common(p, "input size (default 320x180)", "N, the short clip's length (default 2)")
    torch_opts(p, "2")
    p.set_defaults(model=None)  # memory: tiny on CPU (600 frames of the default net take minutes), default on CUDA
    p.set_defaults(bench=_cmd_memory)


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
    return bench_model(cases, _given(args.seconds, 5), args.device, args.batch_size, args.model or "default", args.threads,
                       compile=compile)


def _cmd_infer(args) -> list[Row]:
    return bench_infer(args.size or (320, 180), args.scale or 2, _given(args.seconds, 3), args.input, args.device,
                       args.batch_size, args.model or "default", threads=args.threads, transport=args.transport)


def _cmd_finetune(args) -> list[Row]:
    from .config import load_config_file

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
        print(json.dumps(_run_work(json.loads(argv[1]))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m videnhance.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_commands(parser.add_subparsers(dest="bench_command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_bench(args)


if __name__ == "__main__":
    sys.exit(main())
