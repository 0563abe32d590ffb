"""What one measurement runs (`WORK[kind](spec)`), normally in a fresh Python process so its
peak memory is its own. `spec` is a JSON-able dict; each workload calls `timing_starts()` where
its timed part begins and returns at least the frames it moved and the seconds it took."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

from ..io import (
    EncodeSettings,
    FrameReader,
    FrameWriter,
    VideoMeta,
    ffmpeg_exe,
    frame_layout,
    probe,
    run_ffmpeg,
    spawn,
)
from .sampling import timing_starts

log = logging.getLogger(__name__)

CLIP_FPS = 30
MODELS = {"default": {"channels": 64, "blocks": 16}, "tiny": {"channels": 8, "blocks": 2}, "bicubic": None,
          # the multi-frame model around the default srresnet: 3-frame windows, DIS-aligned or not
          "temporal": {"arch": "temporal", "channels": 64, "blocks": 16, "radius": 1, "align": "dis",
                       "fuse_channels": 32, "fuse_blocks": 2},
          "temporal_none": {"arch": "temporal", "channels": 64, "blocks": 16, "radius": 1, "align": "none",
                            "fuse_channels": 32, "fuse_blocks": 2}}
HELD_FRAMES_BYTES = 1 << 30  # the encode measurement keeps at most this much decoded video in memory


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


def is_base_name(name: str) -> bool:
    """A bench model given as a base (`package:NAME` or a model file), not one of `MODELS`."""
    return name.startswith("package:") or name.endswith((".pt", ".pth", ".safetensors"))


def build_bench_model(name: str, scale: int):
    """The network to time: one of `MODELS` with random weights (a fixed seed, tail not zero so
    the output has detail), or a base as the pipeline loads it (`package:NAME`, a model file)."""
    if is_base_name(name):
        from ..bases import load_base

        return load_base(name, scale=scale).module.eval()
    if name not in MODELS:
        raise ValueError(f"unknown bench model {name!r}; choose one of {sorted(MODELS)}, package:NAME or a file")
    if MODELS[name] is None:
        return None
    import torch

    from ..models import build_model

    torch.manual_seed(0)
    kwargs = dict(MODELS[name])
    model = build_model(kwargs.pop("arch", "srresnet"), scale, **kwargs)
    single = getattr(model, "single", model)  # a multi-frame model: its srresnet, and its fusion branch too
    torch.nn.init.normal_(single.tail.weight, std=1e-3)
    if single is not model:
        torch.nn.init.normal_(model.fuse_tail.weight, std=1e-3)
    return model.eval()


def _work_decode(spec: dict) -> dict:
    """FrameReader alone, delivering `pix_fmt` (rgb24 unless given: what the inference reads)."""
    meta = probe(spec["input"])
    timing_starts()
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
    timing_starts()
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
    timing_starts()
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
    timing_starts()
    start = time.perf_counter()
    dec = spawn([ff, "-nostdin", "-v", "error", "-i", spec["input"], "-map", "0:v:0", "-fps_mode",
                            "passthrough", "-f", "rawvideo", "-pix_fmt", fmt, "-"], stdout=subprocess.PIPE)
    enc = spawn([ff, "-nostdin", "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", fmt, "-s",
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

    from ..infer import is_out_of_memory, pick_device, prepare_model, tune_cpu_allocator, window_radius, windows_of

    dev = pick_device(spec["device"])
    if dev.type == "cpu" and spec["model"] != "bicubic":
        tune_cpu_allocator()  # as enhance_video does
    w, h = spec["size"]
    scale = spec["scale"]
    cuda = dev.type == "cuda"
    network = build_bench_model(spec["model"], scale)
    radius = window_radius(network)  # a multi-frame model gets the windows streaming builds
    model = prepare_model(network, dev, bool(spec.get("compile")))  # as enhance_video
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
                x = torch.rand(batch + 2 * radius, 3, h, w, device=dev).contiguous(memory_format=torch.channels_last)
                x = windows_of(x, radius)
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
                    call(x[:1, ..., : min(h, 64), : min(w, 64)])  # warm-up on a crop: a full CPU frame takes seconds
                timing_starts()
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


def _work_ncnn(spec: dict) -> dict:
    """ncnn itself running a packaged model's own .param/.bin on the CPU at `threads` (fp32, its
    fast convolutions on: what Video2X and the *-ncnn-vulkan tools run), frame by frame, on the
    input our network's `prepare` gives (SRMD's degradation maps, upconv_7's padding); the anchor
    of `bench model` for a converted network."""
    import ncnn
    import numpy as np

    torch = _set_threads(spec)
    from ..ncnn_import import graph_ends, ncnn_net, read_param
    from ..weights import packaged_files

    param, weights = packaged_files(spec["model"])
    net = ncnn_net(param, weights, threads=int(spec.get("threads") or torch.get_num_threads()))
    inp, outp = graph_ends(read_param(param))
    network = build_bench_model(spec["model"], spec["scale"])
    w, h = spec["size"]
    with torch.inference_mode():
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
        array = np.ascontiguousarray(network.prepare(x)[0].numpy() if hasattr(network, "prepare") else x[0].numpy())

    def call(a: np.ndarray) -> None:
        extractor = net.create_extractor()
        extractor.input(inp, ncnn.Mat(a))  # borrows `a`: it lives until the extraction is done
        extractor.extract(outp)

    call(np.ascontiguousarray(array[:, : min(h, 64), : min(w, 64)]))  # warm-up on a crop, as `model` does
    timing_starts()
    frames, start = 0, time.perf_counter()
    while True:
        call(array)
        frames += 1
        seconds = time.perf_counter() - start
        if seconds >= spec["seconds"]:
            break
    return {"frames": frames, "seconds": seconds, "batch_size": 1, "dtype": "fp32", "threads": net.opt.num_threads,
            "compiled": False, "compile_s": None}


def _work_infer(spec: dict) -> dict:
    torch = _set_threads(spec)

    from ..infer import enhance_video, pick_device

    dev = pick_device(spec["device"])
    model = build_bench_model(spec["model"], spec["scale"])
    meta = probe(spec["input"])
    timing_starts()
    start = time.perf_counter()
    stats = enhance_video(model, spec["input"], spec["output"], spec["scale"], EncodeSettings(**spec["settings"]),
                          device=str(dev), batch_size=spec["batch_size"], tile=spec.get("tile", 0), meta=meta,
                          progress=False, transport=spec.get("transport"))
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

    from ..archs import arch_kwargs
    from ..infer import pick_device
    from ..models import build_model, save_model
    from ..pipeline import run_video
    from ..settings import full_video_settings

    cfg, work = spec["config"], Path(spec["workdir"])
    settings = full_video_settings(cfg, {"id": "bench", "mode": "enhance"}).replace(device=spec["device"])
    scale, dev = settings.scale, pick_device(spec["device"])
    kwargs = arch_kwargs(settings.model)
    torch.manual_seed(0)
    arch = settings.model.arch
    save_model(build_model(arch, scale, **kwargs), work / "fresh.pt", arch, scale, kwargs)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def before(step: str) -> None:
        if step == "fine_tune":
            timing_starts()

    result = run_video(spec["input"], work / "out.mkv", settings, work / "video", base_checkpoint=work / "fresh.pt",
                       until="fine_tune", before=before)
    verdict = result.verdict
    out = {"frames": verdict.steps, "seconds": result.seconds["fine_tune"], "train_seconds": verdict.seconds,
           "it_per_s": verdict.it_per_s or 0.0, "kept": verdict.kept, "reason": verdict.reason,
           "threads": torch.get_num_threads()}
    if dev.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(dev) / (1 << 20)
    return out


WORK = {"decode": _work_decode, "encode": _work_encode, "passthrough": _work_passthrough, "pipe": _work_pipe,
        "model": _work_model, "ncnn": _work_ncnn, "infer": _work_infer, "finetune": _work_finetune}
