"""The memory budget: every model call sized so that no frame size exceeds it (`memory.fit`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from videnhance import memory
from videnhance.infer import run_model
from videnhance.models import SRResNet


@pytest.fixture(autouse=True)
def _auto_budget():
    yield
    memory.set_budget(0)


def step_budget_mb(frame_work: float) -> int:
    """A `memory_mb` that leaves `frame_work` bytes for the frames once this process and its
    ffmpeg reserve are counted (a configured budget is the whole step's)."""
    return int((frame_work + memory._resident() + memory.PIPES_RESERVE) / 2**20)


def test_fit_keeps_the_batch_then_fewer_frames_then_tiles():
    model = SRResNet(scale=2, channels=16, blocks=1).eval()
    per_px = memory.bytes_per_pixel(model, 2)
    assert per_px > 4 * 16 * 4  # at least the 16-channel activations, four times over
    frame = per_px * 400 * 400  # large against the few MiB the process's own memory moves by
    memory.set_budget(step_budget_mb(8 * frame))
    assert memory.fit(model, 8, 400, 400, 2, 4, 16, "cpu") == (4, 0)  # 4 frames fit
    memory.set_budget(step_budget_mb(2.5 * frame))
    assert memory.fit(model, 8, 400, 400, 2, 4, 16, "cpu") == (2, 0)
    memory.set_budget(1)  # 1 MiB: not even one 1000×1000 frame
    batch, tile = memory.fit(model, 8, 1000, 1000, 2, 4, 16, "cpu")
    assert batch == 1 and 48 <= tile < 1000 and (tile + 32) ** 2 * per_px <= 2**20 + 8 * 1000 * per_px


def test_bigger_networks_need_more_per_pixel_and_the_estimate_is_cached():
    small, big = SRResNet(2, 8, 1).eval(), SRResNet(2, 64, 2).eval()
    assert memory.bytes_per_pixel(big, 2) > 4 * memory.bytes_per_pixel(small, 2)
    assert memory.bytes_per_pixel(None, 4) == 2 * (12 + 12 * 16)
    memory._per_pixel[small] = 123.0
    assert memory.bytes_per_pixel(small, 2) == 123.0


def test_the_auto_budget_is_what_the_machine_has_left():
    memory.set_budget(0)
    auto = memory.budget("cpu")
    available = memory._mem_available()
    assert 0 < auto <= (available or auto * 2) * memory.CPU_FRACTION + 1
    # a configured budget is the step's: this process and its ffmpeg processes come off it
    held = memory._resident()
    assert held > 50 * 2**20  # the interpreter with torch imported
    memory.set_budget(8000)
    assert abs(memory.budget("cpu") - (8000 * 2**20 - held - memory.PIPES_RESERVE)) < 64 * 2**20
    memory.set_budget(300)  # less than the process holds: an eighth is left for the frames
    assert memory.budget("cpu") == 300 * 2**20 / 8
    assert memory.budget("cuda:0") == 300 * 2**20  # GPU memory: the process is not in it


def test_a_budgeted_call_is_tiled_and_equals_the_whole_frame():
    model = SRResNet(scale=2, channels=8, blocks=1).eval()
    frames = np.random.default_rng(0).integers(0, 255, (2, 96, 80, 3), np.uint8)
    whole = run_model(model, frames)
    memory.set_budget(1)
    assert memory.fit(model, 2, 96, 80, 2, 4, 16, "cpu")[1] > 0  # the budget tiles this call
    with torch.no_grad():
        assert np.abs(run_model(model, frames).astype(int) - whole.astype(int)).max() <= 1


PEAK = """
import sys
import numpy as np, torch
from videnhance.infer import run_model
from videnhance.memory import set_budget
from videnhance.models import SRResNet

def vmhwm():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))

torch.manual_seed(0); torch.set_num_threads(1)
model = SRResNet(scale=2, channels=32, blocks=2).eval()
frames = np.random.default_rng(0).integers(0, 255, (1, 1024, 1024, 3), np.uint8)
set_budget(int(sys.argv[1]))
run_model(model, frames[:, :64, :64])  # allocator and probe warmed up
open("/proc/self/clear_refs", "w").write("5")  # peak RSS := current RSS
start = vmhwm()
out = run_model(model, frames)
np.save(sys.argv[2], out)
print((vmhwm() - start) / 2**20)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset")
def test_a_large_frame_stays_under_a_small_budget(tmp_path):
    """A 1024×1024 frame ×2 through a 32-channel network, in fresh processes: with the machine's
    budget it runs whole; with 64 MiB it is tiled, its peak is a fraction, the output identical.
    What stays outside the budget is the frame itself (input and output, about 75 MiB here)."""

    def peak(budget_mb: int) -> tuple[float, np.ndarray]:
        out = tmp_path / f"{budget_mb}.npy"
        proc = subprocess.run([sys.executable, "-c", PEAK, str(budget_mb), str(out)], capture_output=True,
                              text=True, check=True)
        return float(proc.stdout.split()[-1]), np.load(out)

    free_peak, free_out = peak(0)
    small_peak, small_out = peak(64)
    frame_mib = (1024 * 1024 * 12 + 2048 * 2048 * 15) / 2**20
    assert small_peak < (64 + frame_mib) * 1.5 < free_peak / 3, (small_peak, free_peak)
    assert np.array_equal(small_out, free_out)


EVALUATE_PEAK = """
import sys
import cv2  # noqa: F401 - DIS's library, loaded before the peak is reset
from videnhance import memory
from videnhance.evaluate import evaluate_benchmark

def vmhwm():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))

memory.set_budget(int(sys.argv[1]))
open("/proc/self/clear_refs", "w").write("5")
start = vmhwm()
gt, lr, ms, ft, out = sys.argv[2:7]
evaluate_benchmark("big", ground_truth=gt, input_video=lr, milestone=ms, enhanced=ft, scale=2, out_csv=out)
print((vmhwm() - start) / 2**20)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset")
def test_benchmark_evaluate_follows_the_budget(tmp_path):
    """Benchmark-mode `evaluate` on four 2048×2048 frames, in fresh processes: with a 16 MiB budget
    it decodes one frame at a time, scores in small strips and leaves out the flicker (optical
    flow on a whole frame would exceed the budget); its peak is under half of the machine-budget
    run's and within the budget plus the frames it holds, and every score is the same."""
    from fractions import Fraction

    import pandas as pd

    from videnhance.io import EncodeSettings, FrameWriter

    from .helpers import photo

    side, n = 2048, 4
    picture = np.tile(photo("coffee"), (6, 4, 1))

    def clip(name: str, size: int, noise: float) -> str:
        frames = np.stack([picture[2 * k : 2 * k + size, 3 * k : 3 * k + size] for k in range(n)])
        frames = np.clip(frames + np.random.default_rng(0).normal(0, noise, frames.shape), 0, 255).astype(np.uint8)
        with FrameWriter(tmp_path / name, size, size, Fraction(25), EncodeSettings(crf=10)) as writer:
            writer.write(frames)
        return str(tmp_path / name)

    videos = [clip("gt.mkv", side, 0), clip("lr.mkv", side // 2, 0), clip("ms.mkv", side, 3), clip("ft.mkv", side, 2)]

    def peak(budget_mb: int) -> tuple[float, pd.DataFrame]:
        out = tmp_path / f"{budget_mb}.csv"
        proc = subprocess.run([sys.executable, "-c", EVALUATE_PEAK, str(budget_mb), *videos, str(out)],
                              capture_output=True, text=True, check=True)
        return float(proc.stdout.split()[-1]), pd.read_csv(out)

    free_peak, free = peak(0)
    small_peak, small = peak(16)
    frame_mib = side * side * 3 / 2**20
    assert small_peak < 16 + 32 * frame_mib and small_peak < free_peak / 1.8, (small_peak, free_peak)
    scores = ["psnr_y", "ssim_y", "psnr_rgb"]
    np.testing.assert_allclose(small[scores], free[scores], rtol=0, atol=1e-12)
    assert free.flicker.notna().sum() == 3 * (n - 1) and small.flicker.isna().all()


FFMPEG_PEAK = """
import sys, time
from fractions import Fraction
import numpy as np
from skimage import data, transform
from videnhance.bench.sampling import PeakWatcher
from videnhance.io import EncodeSettings, FrameReader, FrameWriter, LOSSLESS, on_spawn, probe

w, h, n = 1920, 1080, 40
base = (transform.resize(data.astronaut(), (h, w), order=1) * 255).astype(np.uint8)
# each ffmpeg process's own peak (VmHWM of its image, sampled): the reaped-children figure of
# getrusage would also count this process's memory, which the child has until it execs ffmpeg
with PeakWatcher() as watcher, on_spawn(lambda proc: watcher.add(proc.pid)):
    if sys.argv[1] == "decode":  # a decoder read slowly: its queues full
        for _batch in FrameReader(sys.argv[2], probe(sys.argv[2]), batch_size=1):
            time.sleep(0.05)
    else:
        settings = {"x264": EncodeSettings(), "lean": EncodeSettings(lean=True), "ffv1": LOSSLESS}[sys.argv[1]]
        with FrameWriter(sys.argv[2], w, h, Fraction(25), settings) as writer:  # as fast as ffmpeg takes frames
            for i in range(n):
                writer.write(np.roll(base, 3 * i, axis=1)[None])
print(max(watcher.peaks.values()) * 2**20)
"""


@pytest.mark.slow
def test_the_ffmpeg_estimates_hold_for_real_processes(tmp_path):
    """1080p frames written through a real ffmpeg as fast as it takes them (its worst case), with
    x264, its lean mode and FFV1, then read back slowly: each ffmpeg process's peak stays under
    `encoder_bytes` or `decoder_bytes` and above half of it, so the estimate is neither broken
    nor idle, and the lean x264 holds less than the default."""
    from videnhance.io import LOSSLESS, EncodeSettings

    def peak(kind: str) -> int:
        proc = subprocess.run([sys.executable, "-c", FFMPEG_PEAK, kind, str(tmp_path / f"{kind}.mkv")],
                              capture_output=True, text=True, check=True)
        return int(float(proc.stdout.split()[-1]))

    peaks = {kind: peak(kind) for kind in ("x264", "lean", "ffv1")}
    (tmp_path / "decode.mkv").symlink_to(tmp_path / "x264.mkv")
    peaks["decode"] = peak("decode")
    estimates = {"x264": memory.encoder_bytes(EncodeSettings(), 1920, 1080),
                 "lean": memory.encoder_bytes(EncodeSettings(lean=True), 1920, 1080),
                 "ffv1": memory.encoder_bytes(LOSSLESS, 1920, 1080), "decode": memory.decoder_bytes(1920, 1080)}
    mib = {k: (round(peaks[k] / 2**20), round(estimates[k] / 2**20)) for k in peaks}
    assert all(estimates[k] / 2 < peaks[k] <= estimates[k] for k in peaks), mib
    assert peaks["lean"] < peaks["x264"] * 0.75, mib


def test_a_huge_x264_output_runs_lean_and_a_step_that_cannot_fit_is_refused():
    from videnhance.errors import VideoError
    from videnhance.io import LEAN_X264, LOSSLESS, EncodeSettings

    x264 = EncodeSettings()
    assert "-x264-params" not in x264.args(640, 360)
    assert EncodeSettings(lean=True).args(640, 360)[-2:] == ["-x264-params", LEAN_X264]
    memory.set_budget(6000)
    assert memory.lean_encoder(x264, 1920, 1080) is x264  # a small share of 6000 MiB
    lean = memory.lean_encoder(x264, 15360, 8640, "out.mkv")
    assert lean.lean and lean.crf == x264.crf and not x264.lean
    assert memory.encoder_bytes(lean, 15360, 8640) < memory.encoder_bytes(x264, 15360, 8640) * 0.6
    assert memory.lean_encoder(LOSSLESS, 15360, 8640) is LOSSLESS  # FFV1 has no lean mode
    model = SRResNet(scale=2, channels=8, blocks=1).eval()
    pipes = memory.decoder_bytes(7680, 4320) + memory.encoder_bytes(lean, 15360, 8640)
    with pytest.raises(VideoError, match=r"out\.mkv: 7680x4320 frames ×2.*at least \d+00 MiB.*memory_mb 6000"):
        memory.check_step(model, 4320, 7680, 2, 16, "cpu", pipes, "out.mkv")
    memory.check_step(model, 1080, 1920, 2, 16, "cpu", memory.decoder_bytes(1920, 1080), "out.mkv")  # fits
    memory.check_step(model, 4320, 7680, 2, 16, "cuda:0", pipes, "out.mkv")  # memory_mb is the GPU's there


def test_degrade_gt_batches_follow_the_budget(tmp_path, monkeypatch):
    """Benchmark mode's input is made in batches sized from the budget (it decoded 16 ground-truth
    frames a batch, 14 GB of float work at 8K): under a small budget one frame at a time, and
    the same input video as with the machine's budget."""
    from videnhance import pipeline
    from videnhance.io import LOSSLESS, FrameReader
    from videnhance.settings import Benchmark, Settings

    from .helpers import make_clip, read_frames

    source = make_clip(tmp_path / "gt.mkv", size=(256, 192), frames=5, settings=LOSSLESS)
    sizes = []
    real_reader = pipeline.FrameReader

    def reader(*args, **kwargs) -> FrameReader:
        sizes.append(kwargs["batch_size"])
        return real_reader(*args, **kwargs)

    monkeypatch.setattr(pipeline, "FrameReader", reader)
    settings = Settings(scale=2, benchmark=Benchmark.defaults())
    pipeline.degrade_gt(ground_truth=source, input_video=tmp_path / "auto.mkv", settings=settings)
    memory.set_budget(1)
    pipeline.degrade_gt(ground_truth=source, input_video=tmp_path / "small.mkv", settings=settings)
    assert sizes == [16, 1]
    assert np.array_equal(read_frames(tmp_path / "auto.mkv"), read_frames(tmp_path / "small.mkv"))
