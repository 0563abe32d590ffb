"""Bad input, odd input, faults and interruptions: each case ends in a clear message naming the
file, or in a correct output; never in a complete-looking wrong file. docs/robustness.md lists
every case with the test that proves it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from videnhance import pipeline
from videnhance.degrade import DegradeChain, make_pairs
from videnhance.infer import enhance_video, run_model
from videnhance.io import (
    LOSSLESS,
    EncodeSettings,
    FrameReader,
    FrameWriter,
    VideoError,
    frame_timestamps,
    mux,
    probe,
)
from videnhance.models import save_model
from videnhance.samples import save_pairs
from videnhance.settings import Benchmark, Degrade, FineTune, Settings
from videnhance.training.fine_tune import fine_tune

from .helpers import REPO, ffmpeg, lavfi_clip, make_clip
from .helpers import tiny_model as helpers_tiny_model


def tiny_model(scale=2):
    return helpers_tiny_model(scale, tail_std=0.02, seed=0)


def enhance_and_mux(source: Path, tmp_path: Path, scale=2, **kwargs) -> Path:
    meta = probe(source)
    enhanced, out = tmp_path / "enhanced.mkv", tmp_path / "final.mkv"
    enhance_video(tiny_model(scale), source, enhanced, scale, EncodeSettings(bframes=not meta.vfr), device="cpu",
                  meta=meta, **kwargs)
    mux(enhanced, source, out, source_meta=meta)
    return out


# ------------------------------------------------------------------------------------- not videos
def _text(path: Path) -> Path:
    path.write_text("not a video at all")
    return path


def _truncated(path: Path) -> Path:
    full = lavfi_clip(path.with_name("full.mkv"), "160x120", 2, 25, "-vf", "noise=alls=40:allf=t", "-c:v", "libx264")
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _audio_only(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(path))
    return path


# what probe refuses: (file name, how to make it, the one-line message it must give)
REFUSED = {
    "not_a_video": ("holiday.mp4", _text, r"holiday.mp4: not a readable video.*remove it from the sheet"),
    "empty_file": ("empty.mp4", lambda p: (p.touch(), p)[1], "empty.mp4: the file is empty"),
    "truncated_video": ("cut.mkv", _truncated, r"cut.mkv: the file is truncated or corrupt.*Re-copy it"),
    "zero_frames": ("zero.mkv", lambda p: lavfi_clip(p, "64x48", 1, 25, "-frames:v", "0", "-c:v", "libx264"),
                    "zero.mkv"),
    "audio_only": ("song.m4a", _audio_only, "song.m4a: has no video stream"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refused(tmp_path, case):
    name, make, message = REFUSED[case]
    source = make(tmp_path / name)
    with pytest.raises(VideoError, match=message) as err:
        probe(source)
    assert "\n" not in str(err.value)


# -------------------------------------------------------------------------------------- odd sizes
def test_odd_size_same_scale_output(tmp_path):
    source = make_clip(tmp_path / "odd.mkv", size=(33, 25), frames=6, settings=LOSSLESS)
    out = enhance_and_mux(source, tmp_path, scale=1)
    meta = probe(out)
    assert (meta.width, meta.height, meta.frames) == (33, 25, 6)
    assert meta.pix_fmt == "yuv444p"  # 4:2:0 cannot hold odd sizes


def test_size_not_divisible_by_scale_in_benchmark_mode(tmp_path):
    source = make_clip(tmp_path / "gt.mkv", size=(50, 37), frames=5, settings=LOSSLESS)
    pipeline.degrade_gt(ground_truth=source, input_video=tmp_path / "input.mkv",
                        settings=Settings(scale=4, benchmark=Benchmark.defaults(degradation="BI")))
    meta = probe(tmp_path / "input.mkv")
    assert (meta.width, meta.height, meta.frames) == (12, 9, 5)  # GT trimmed to 48×36 first


def test_frames_too_small_are_refused(tmp_path):
    source = make_clip(tmp_path / "speck.mkv", size=(6, 6), frames=3, settings=LOSSLESS)
    with pytest.raises(VideoError, match="speck.mkv: frames of 6x6 are too small"):
        pipeline.probe(source=source, meta=tmp_path / "meta.json", settings=Settings(scale=2, mode="enhance"))


@pytest.mark.parametrize("pairs", ["frame", "near_scale"])
def test_tiny_frames_smaller_than_the_training_patch(tmp_path, pairs):
    frames = [np.random.default_rng(i).integers(0, 256, (10, 12, 3), dtype=np.uint8) for i in range(6)]
    lrs, hrs = make_pairs(frames, 2, DegradeChain.defaults(), seed=0)
    save_pairs(tmp_path / "pairs.npz", np.stack(lrs), np.stack(hrs), np.array([0, 0, 0, 0, 1, 1], bool), np.arange(6))
    save_model(tiny_model(), tmp_path / "base.pt", "srresnet", 2, {"channels": 8, "blocks": 1})
    cfg = FineTune.defaults(steps=2, steps_per_epoch=1, batch_size=2, patch=48, lr=1e-4, pairs=pairs, rounds=2)
    verdict = fine_tune(tmp_path / "pairs.npz", tmp_path / "base.pt", tmp_path / "m.pt", tmp_path / "h.csv",
                        tmp_path / "v.json", cfg, "cpu", degrade_cfg=Degrade.defaults())
    assert verdict.kept in ("base", "fine_tuned") and (tmp_path / "m.pt").exists()


def test_very_large_frame_is_tiled(tmp_path):
    frame = np.random.default_rng(0).integers(0, 256, (1, 720, 1280, 3), dtype=np.uint8)
    tiled = run_model(tiny_model(), frame, tile=256, overlap=8)
    assert tiled.shape == (1, 1440, 2560, 3)
    crop = frame[:, :200, :300]  # whole-frame reference on a corner (the full frame is the slow part)
    reference = run_model(tiny_model(), crop)
    assert np.abs(tiled[:, :380, :580].astype(int) - reference[:, :380, :580].astype(int)).max() <= 1


# ------------------------------------------------------------------------------ timing and formats
def test_variable_frame_rate_keeps_timestamps(tmp_path):
    source = tmp_path / "vfr.mkv"
    # 25 fps with a 0.3 s hole after frame 10 and slower frames after 20
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=1.2",
           "-vf", "setpts='(N/25+if(gt(N,10),0.3,0)+if(gt(N,20),(N-20)*0.02,0))/TB'",
           "-fps_mode", "passthrough", "-c:v", "libx264", str(source))
    meta = probe(source)
    assert meta.vfr
    out = enhance_and_mux(source, tmp_path)
    assert probe(out).frames == meta.frames
    src_ts, src_tb = frame_timestamps(source)
    out_ts, out_tb = frame_timestamps(out)
    np.testing.assert_allclose(out_ts * float(out_tb), src_ts * float(src_tb), atol=0.0015)


def test_rotation_metadata_is_applied(tmp_path):
    plain = lavfi_clip(tmp_path / "plain.mp4", "64x48", 1, 25, "-c:v", "libx264")
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated))
    meta = probe(rotated)
    assert (meta.width, meta.height, meta.rotation) == (48, 64, 90)
    out = probe(enhance_and_mux(rotated, tmp_path))
    assert (out.width, out.height, out.rotation) == (96, 128, 0)  # upright pixels, no second rotation


@pytest.mark.parametrize("pix_fmt", ["yuv420p10le", "yuv444p"])
def test_10bit_and_444_inputs(tmp_path, pix_fmt):
    source = lavfi_clip(tmp_path / f"{pix_fmt}.mkv", "64x48", 1, 25, "-pix_fmt", pix_fmt, "-c:v", "libx264")
    assert probe(source).pix_fmt == pix_fmt
    out = probe(enhance_and_mux(source, tmp_path))
    assert (out.width, out.height, out.frames) == (128, 96, 25)


def test_alpha_channel_is_dropped_with_a_warning(tmp_path, caplog):
    source = lavfi_clip(tmp_path / "alpha.mov", "64x48", 1, 25, "-vf", "format=rgba", "-c:v", "png")
    with caplog.at_level("WARNING"):
        meta = pipeline.probe(source=source, meta=tmp_path / "meta.json", settings=Settings(scale=2, mode="enhance"))
    assert meta.alpha and "alpha channel" in caplog.text
    assert probe(enhance_and_mux(source, tmp_path)).frames == 25


def test_no_audio_several_audio_tracks_and_subtitles(tmp_path):
    video = lavfi_clip(tmp_path / "v.mp4", "64x48", 2, 25, "-c:v", "libx264")
    (tmp_path / "subs.srt").write_text("1\n00:00:00,000 --> 00:00:01,500\nhello\n")
    source = tmp_path / "multi.mp4"
    ffmpeg("-i", str(video), "-f", "lavfi", "-i", "sine=frequency=300:duration=2", "-f", "lavfi", "-i",
           "sine=frequency=500:duration=2", "-i", str(tmp_path / "subs.srt"),
           "-map", "0:v", "-map", "1:a", "-map", "2:a",
           "-map", "3:s", "-c:v", "copy", "-c:a", "aac", "-c:s", "mov_text", str(source))
    meta = probe(source)
    assert len(meta.audio) == 2 and meta.subtitles[0]["codec"] == "mov_text"
    out = probe(enhance_and_mux(source, tmp_path))
    assert len(out.audio) == 2 and [s["codec"] for s in out.subtitles] == ["srt"]  # mov_text → SubRip (Matroska)
    (tmp_path / "silent").mkdir()
    silent = probe(enhance_and_mux(video, tmp_path / "silent"))
    assert silent.audio == [] and silent.frames == 50


def test_text_subtitles_are_converted_for_an_mp4_deliverable(tmp_path):
    """MP4 holds only mov_text: an SRT/ASS track from an MKV source is converted, not a failure."""
    video = lavfi_clip(tmp_path / "v.mkv", "64x48", 2, 25, "-c:v", "libx264")
    (tmp_path / "subs.srt").write_text("1\n00:00:00,000 --> 00:00:01,500\nhello\n")
    source = tmp_path / "subs.mkv"
    ffmpeg("-i", str(video), "-f", "lavfi", "-i", "sine=frequency=300:duration=2", "-i", str(tmp_path / "subs.srt"),
           "-map", "0:v", "-map", "1:a", "-map", "2:s", "-c:v", "copy", "-c:a", "aac", "-c:s", "ass", str(source))
    assert [s["codec"] for s in probe(source).subtitles] in (["ass"], ["ssa"])
    out = tmp_path / "final.mp4"
    mux(video, source, out)
    meta = probe(out)
    assert [s["codec"] for s in meta.subtitles] == ["mov_text"] and len(meta.audio) == 1 and meta.frames == 50


def test_unicode_spaces_and_shell_metacharacters_in_file_names(tmp_path):
    name = "ünïcödé clip $(touch PWNED); 'q' & `x`.mp4"
    source = make_clip(tmp_path / name, size=(32, 24), frames=5, audio=True)
    out = enhance_and_mux(source, tmp_path)
    assert probe(out).frames == 5 and len(probe(out).audio) == 1
    assert not list(tmp_path.glob("PWNED")) and not Path("PWNED").exists()


# --------------------------------------------------------------------------------- interruptions
def _wait_for(predicate, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("pairs", ["frame", "near_scale"])
def test_kill_9_during_fine_tune_resumes_from_the_last_epoch(tmp_path, pairs):
    """frame pairs: one run of 20 epochs. near_scale: two rounds of 10, killed in round 2; the rerun
    takes round 1's saved weights and resumes round 2 at its last epoch."""
    frames = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8) for i in range(8)]
    lrs, hrs = make_pairs(frames, 2, DegradeChain.defaults(), seed=0)
    save_pairs(tmp_path / "pairs.npz", np.stack(lrs), np.stack(hrs), np.array([0] * 6 + [1] * 2, bool), np.arange(8))
    save_model(tiny_model(), tmp_path / "base.pt", "srresnet", 2, {"channels": 8, "blocks": 1})
    script = textwrap.dedent(f"""
        import logging, sys, torch
        logging.basicConfig(level=logging.INFO, stream=sys.stdout)
        torch.set_num_threads(1)
        from videnhance.training.fine_tune import fine_tune
        from videnhance.settings import Degrade, FineTune
        cfg = FineTune.defaults(steps=400, steps_per_epoch=20, batch_size=4, patch=16, lr=1e-4, pairs={pairs!r},
                                targets_per_frame=1, rounds=2, patience=0)
        d = {str(tmp_path)!r}
        fine_tune(d + "/pairs.npz", d + "/base.pt", d + "/model.pt", d + "/h.csv", d + "/v.json", cfg, "cpu",
                  degrade_cfg=Degrade.defaults())
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    near = pairs == "near_scale"
    checkpoint = tmp_path / ("model.round2.ckpt" if near else "model.ckpt")
    epochs = 10 if near else 20
    try:
        assert _wait_for(lambda: checkpoint.exists() and torch.load(checkpoint, weights_only=True)["epoch"] >= 2, 240)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "v.json").exists()
    done_epochs = torch.load(checkpoint, weights_only=True)["epoch"]
    rerun = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert f"resuming training from epoch {done_epochs} of {epochs}" in rerun.stdout
    history = pd.read_csv(tmp_path / "h.csv")
    if near:
        assert "round 1 of 2 was finished by an earlier run" in rerun.stdout
        assert list(history["round"]) == [1] * 10 + [2] * 10
    assert list(history["epoch"]) == list(range(epochs)) * (2 if near else 1)  # every epoch logged once
    assert not checkpoint.exists() and (tmp_path / "model.pt").exists()
    assert not list(tmp_path.glob("model.round*"))  # round files are gone once the model is written
    assert json.loads((tmp_path / "v.json").read_text())["pairs"] == pairs


def test_kill_9_during_infer_leaves_no_output(tmp_path):
    source = make_clip(tmp_path / "long.mkv", size=(160, 120), frames=300, settings=LOSSLESS)
    save_model(tiny_model(), tmp_path / "m.pt", "srresnet", 2, {"channels": 8, "blocks": 1})
    script = textwrap.dedent(f"""
        import torch
        torch.set_num_threads(1)
        from videnhance.pipeline import infer
        d = {str(tmp_path)!r}
        from videnhance.config import validate_config
        from videnhance.settings import Settings
        cfg = validate_config(dict(device="cpu", infer=dict(batch_size=1, tile=0, tile_overlap=8),
                                   encode=dict(codec="libx264", crf=18, preset="medium", pix_fmt="yuv420p")))
        infer(model=d + "/m.pt", input_video=d + "/long.mkv", output=d + "/out.mkv",
              settings=Settings.from_dict(dict(cfg, mode="enhance")))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    partial = tmp_path / ".out.partial.mkv"
    try:
        assert _wait_for(lambda: partial.exists() or (tmp_path / "out.mkv").exists(), 120)
        assert not (tmp_path / "out.mkv").exists(), "infer finished before it could be killed; use a longer clip"
        time.sleep(1.0)  # well inside the encode
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # only the hidden partial file, never the output name
    assert partial.exists() and not (tmp_path / "out.mkv").exists()
    assert source.exists()


def test_disk_full_while_encoding_is_a_clear_error(tmp_path):
    """A file-size limit (RLIMIT_FSIZE) makes writes fail the way a full disk does."""
    script = textwrap.dedent(f"""
        import resource, sys
        from fractions import Fraction
        import numpy as np
        from videnhance.io import LOSSLESS, FrameWriter, VideoError
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        frames = np.random.default_rng(0).integers(0, 256, (30, 120, 160, 3), dtype=np.uint8)
        try:
            with FrameWriter({str(tmp_path / 'out.mkv')!r}, 160, 120, Fraction(25), LOSSLESS) as w:
                w.write(frames)
        except VideoError as err:
            print("ERROR:", err)
            sys.exit(3)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "out.mkv: encoding failed" in proc.stdout and "free disk space" in proc.stdout
    assert not (tmp_path / "out.mkv").exists()


# ---------------------------------------------------------------------------------- determinism
def test_inference_is_deterministic_on_cpu(tmp_path):
    source = make_clip(tmp_path / "c.mkv", size=(32, 24), frames=4, settings=LOSSLESS)
    frames = np.concatenate(list(FrameReader(source)))
    assert np.array_equal(run_model(tiny_model(), frames), run_model(tiny_model(), frames))


def test_writer_rejects_wrong_frames(tmp_path):
    with pytest.raises(ValueError, match="expected uint8 frames"):
        with FrameWriter(tmp_path / "x.mkv", 16, 16, Fraction(25), LOSSLESS) as w:
            w.write(np.zeros((1, 8, 8, 3), np.uint8))
    assert not (tmp_path / "x.mkv").exists()
