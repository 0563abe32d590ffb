"""Long videos in parts (`videnhance.segments`): cut by frame index, each part with its context,
joined without re-encoding into exactly the video's frames and timestamps."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from videnhance.infer import enhance_video
from videnhance.io import EncodeSettings, FrameReader, VideoError, frame_timestamps, join_videos, mux, probe
from videnhance.segments import estimate_frames, plan
from videnhance.temporal import TemporalSR

from .helpers import ffmpeg, lavfi_clip, make_clip, read_frames
from .workflow_helpers import TINY_CONFIG, planned_jobs, snakemake, write_workdir


def vfr_clip(path: Path, audio: bool = False) -> Path:
    """30 frames at 25 fps with a 0.3 s hole after frame 10 and slower frames after 20."""
    sound = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2", "-c:a", "aac", "-shortest"]
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=1.2", *(sound if audio else []),
           "-vf", "setpts='(N/25+if(gt(N,10),0.3,0)+if(gt(N,20),(N-20)*0.02,0))/TB'",
           "-fps_mode", "passthrough", "-c:v", "libx264", "-bf", "0", str(path))
    return path


def test_the_plan_cuts_long_videos_by_frame_index():
    assert plan(7200, 25.0, 60, 120) == [(0, 1500), (1500, 3000), (3000, 4500), (4500, None)]  # last: the rest
    assert plan(7200, 25.0, 0, 120) == [(0, None)]  # off
    assert plan(3000, 25.0, 60, 120) == [(0, None)]  # not longer than the threshold
    assert plan(3001, 25.0, 100, 120) == [(0, None)]  # under two parts' worth: one
    assert plan(0, 0.0, 60, 0) == [(0, None)]  # unreadable: the probe step says why


def test_the_length_comes_from_the_container_header(tmp_path):
    assert estimate_frames(make_clip(tmp_path / "clip.mp4", frames=16)) == (16, 25.0)
    frames, fps = estimate_frames(lavfi_clip(tmp_path / "clip.mkv", "64x48", 2, 25, "-c:v", "ffv1"))
    assert abs(frames - 50) <= 1 and fps == 25.0  # mkv states no count: duration × rate
    with_sound = vfr_clip(tmp_path / "vfr.mkv", audio=True)  # 30 frames in 1.2 s, sound for 2 s
    assert estimate_frames(with_sound)[0] > 30  # the header's duration is the sound's
    assert estimate_frames(with_sound, count_above_seconds=0)[0] == 30  # the packets, counted
    assert estimate_frames(with_sound, count_above_seconds=60)[0] > 30  # short by the header: not counted
    (tmp_path / "broken.mp4").write_text("not a video")
    assert estimate_frames(tmp_path / "broken.mp4") == (0, 0.0)


@pytest.mark.parametrize("kind", ["bframes", "vfr"])
def test_a_span_decodes_exactly_those_frames(tmp_path, kind):
    source = (lavfi_clip(tmp_path / "b.mp4", "64x48", 2, 25, "-c:v", "libx264", "-bf", "3", "-g", "12")
              if kind == "bframes" else vfr_clip(tmp_path / "vfr.mkv"))
    whole, meta = read_frames(source), probe(source)
    for start, end in [(0, 5), (7, 19), (meta.frames - 6, meta.frames), (13, 14)]:
        part = np.concatenate(list(FrameReader(source, meta, batch_size=4, span=(start, end))))
        assert np.array_equal(part, whole[start:end]), (start, end)
    with pytest.raises(ValueError, match="not within"):
        FrameReader(source, meta, span=(10, meta.frames + 1))


def test_parts_joined_equal_the_whole_video(tmp_path):
    """A five-frame-window model (radius 2), parts of 1, 16 and 17 frames, lossless: each part
    decodes its neighbours' frames as context, so the joined parts equal the one-job output to
    the bit, and every frame has its own timestamp."""
    source = lavfi_clip(tmp_path / "in.mp4", "64x48", 2, 25, "-c:v", "libx264")
    meta = probe(source)
    torch.manual_seed(0)
    model = TemporalSR(2, 8, 1, radius=2, align="none", fuse_channels=8, fuse_blocks=1).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.05)  # the fusion branch starts at zero: make the neighbours matter
    lossless = EncodeSettings(codec="ffv1")
    enhance_video(model, source, tmp_path / "whole.mkv", 2, lossless, meta=meta, progress=False, batch_size=4)
    parts = []
    for k, span in enumerate([(0, 1), (1, 17), (17, 33), (33, 49), (49, 50)]):
        parts.append(tmp_path / f"part{k}.mkv")
        stats = enhance_video(model, source, parts[-1], 2, lossless, meta=meta, progress=False, batch_size=3,
                              span=span)
        assert stats["frames"] == span[1] - span[0]
    assert join_videos(parts, tmp_path / "joined.mkv") == 50
    assert np.array_equal(read_frames(tmp_path / "joined.mkv"), read_frames(tmp_path / "whole.mkv"))
    np.testing.assert_array_equal(frame_timestamps(tmp_path / "joined.mkv")[0],
                                  frame_timestamps(tmp_path / "whole.mkv")[0])


def test_a_variable_frame_rate_video_in_parts_keeps_its_timestamps_and_sound(tmp_path):
    source = vfr_clip(tmp_path / "vfr.mkv", audio=True)
    meta = probe(source)
    assert meta.vfr and meta.audio
    torch.manual_seed(0)
    model = TemporalSR(2, 8, 1, radius=1, align="none", fuse_channels=8, fuse_blocks=1).eval()
    parts = []
    for k, span in enumerate([(0, 9), (9, 18), (18, meta.frames)]):
        parts.append(tmp_path / f"part{k}.mkv")
        enhance_video(model, source, parts[-1], 2, EncodeSettings(bframes=False), meta=meta, progress=False, span=span)
    join_videos(parts, tmp_path / "joined.mkv")
    out = tmp_path / "final.mkv"
    mux(tmp_path / "joined.mkv", source, out, source_meta=meta)
    assert probe(out).frames == meta.frames and probe(out).audio
    src_ts, src_tb = frame_timestamps(source)
    out_ts, out_tb = frame_timestamps(out)
    np.testing.assert_allclose(out_ts * float(out_tb), src_ts * float(src_tb), atol=0.0015)


def test_a_join_missing_frames_is_refused(tmp_path):
    """`join_parts` checks the joined count against the probe's: parts that do not cover the video
    (a header that misstated the length) stop the step with a message, and leave no output."""
    from videnhance.pipeline import join_parts

    clip = lavfi_clip(tmp_path / "a.mkv", "64x48", 1, 25, "-c:v", "ffv1")
    assert join_videos([clip, clip], tmp_path / "ok.mkv") == 50
    probe(clip).to_json(tmp_path / "meta.json")  # the video has 25 frames
    with pytest.raises(VideoError, match="parts hold 50 frames, the video 25"):
        join_parts(parts=[clip, clip], output=tmp_path / "joined.mkv", meta=tmp_path / "meta.json", settings=None)
    assert not (tmp_path / "joined.mkv").exists()


@pytest.mark.slow
def test_the_workflow_runs_a_long_video_as_parts_and_reruns_only_a_lost_part(tmp_path):
    """Real Snakemake: a 50-frame benchmark clip and a variable-frame-rate clip with sound, both
    over the threshold, run `infer` (and the benchmark clip `evaluate`) as parts of 10 frames; a
    16-frame clip stays one job. The joined
    lossless output equals one `infer` over the whole video; the deliverable keeps every frame,
    timestamp and the sound; after a part's job is lost, that part is the only one that runs
    again."""
    make_clip(tmp_path / "long.mp4", (64, 48), 50)
    vfr_clip(tmp_path / "vfr.mkv", audio=True)
    make_clip(tmp_path / "short.mp4", (64, 48), 16)
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["infer"] = {"batch_size": 4, "segment_seconds": 0.4, "segment_above_seconds": 1.0}
    rows = [("long", tmp_path / "long.mp4", "benchmark"), ("vfr", tmp_path / "vfr.mkv", "enhance"),
            ("short", tmp_path / "short.mp4", "benchmark")]
    write_workdir(tmp_path, rows, cfg)
    plan_jobs = planned_jobs(snakemake(tmp_path, "-n", "--cores", "2").stdout)
    assert ("infer_part", "long") in plan_jobs and ("infer_part", "vfr") in plan_jobs
    assert ("infer", "short") in plan_jobs and ("infer", "long") not in plan_jobs
    # the parts run, and one of them is lost as a killed job's is (Snakemake removes the output of
    # a failed job): the next run redoes only that part, then joins
    snakemake(tmp_path, "--until", "infer_part", "--cores", "2", "--resources", "gpu=1", timeout=1800)
    results = tmp_path / "results"
    assert not (results / "long" / "infer" / "enhanced.mkv").exists()
    (results / "long" / "infer" / "enhanced.part2.mkv").unlink()
    dry = snakemake(tmp_path, "-n", "--cores", "2").stdout
    assert dry.count("rule infer_part:") == 1 and "output: results/long/infer/enhanced.part2.mkv" in dry
    long_jobs = {rule for rule, video in planned_jobs(dry) if video == "long"}
    assert long_jobs == {"infer_part", "join_parts", "reassemble", "evaluate_part", "join_scores"}  # nothing before
    snakemake(tmp_path, "--cores", "2", "--resources", "gpu=1", timeout=1800)

    assert len(list((results / "long" / "infer").glob("enhanced.part*.mkv"))) == 5
    assert len(list((results / "vfr" / "infer").glob("enhanced.part*.mkv"))) == 3
    assert not list((results / "short" / "infer").glob("*.part*"))
    from videnhance.models import load_model

    whole = tmp_path / "whole.mkv"
    enhance_video(load_model(results / "long" / "model.pt").module, results / "long" / "input.mkv", whole, 2,
                  EncodeSettings(codec="ffv1"), progress=False)
    assert np.array_equal(read_frames(results / "long" / "infer" / "enhanced.mkv"), read_frames(whole))
    # evaluate ran in parts too (the frame before each part gives its first frame's flicker):
    # the joined scores are the one-job scores, to the digit
    assert len(list((results / "long").glob("scores.part*.csv"))) == 5
    from videnhance.evaluate import evaluate_benchmark

    long = results / "long"
    evaluate_benchmark("long", ground_truth=tmp_path / "long.mp4", input_video=long / "input.mkv",
                       milestone=long / "infer" / "milestone.mkv", enhanced=long / "infer" / "enhanced.mkv", scale=2,
                       out_csv=tmp_path / "whole_scores.csv", gt_meta_json=long / "meta.json")
    assert (long / "scores.csv").read_text() == (tmp_path / "whole_scores.csv").read_text()
    assert (long / "crops.png").stat().st_size > 0 and (long / "psnr_per_frame.png").stat().st_size > 0
    source, out = probe(tmp_path / "vfr.mkv"), probe(results / "vfr" / "enhanced.mkv")
    assert out.frames == source.frames and out.audio
    (src_ts, src_tb), (out_ts, out_tb) = frame_timestamps(tmp_path / "vfr.mkv"), frame_timestamps(
        results / "vfr" / "enhanced.mkv")
    np.testing.assert_allclose(out_ts * float(out_tb), src_ts * float(src_tb), atol=0.0015)


def test_score_parts_that_miss_or_repeat_frames_are_refused(tmp_path):
    import pandas as pd

    from videnhance.evaluate import join_scores

    clip = lavfi_clip(tmp_path / "gt.mkv", "64x48", 0.4, 25, "-c:v", "ffv1")  # 10 frames
    probe(clip).to_json(tmp_path / "meta.json")

    def part(name: str, frames) -> Path:
        rows = [{"video": "v", "protocol": "ground truth", "frame": f, "method": m, "psnr_y": 30.0, "ssim_y": 0.9,
                 "psnr_rgb": 29.0} for f in frames for m in ("bicubic", "milestone", "fine_tuned")]
        pd.DataFrame(rows).to_csv(tmp_path / name, index=False)
        return tmp_path / name

    kwargs = {"ground_truth": clip, "input_video": clip, "milestone": clip, "enhanced": clip, "scale": 2,
              "gt_meta_json": tmp_path / "meta.json"}
    ok = join_scores("v", [part("a.csv", range(5)), part("b.csv", range(5, 10))], out_csv=tmp_path / "ok.csv", **kwargs)
    assert len(ok) == 30
    for parts in ([part("a.csv", range(5)), part("c.csv", range(6, 10))],  # frame 5 missing
                  [part("a.csv", range(5)), part("d.csv", range(4, 10))]):  # frame 4 twice
        with pytest.raises(VideoError, match="do not hold frames 0–9 once each"):
            join_scores("v", parts, out_csv=tmp_path / "bad.csv", **kwargs)


@pytest.mark.slow
def test_a_part_killed_mid_run_is_the_only_work_redone(tmp_path):
    """Real Snakemake killed with SIGKILL (the whole process group, as a node failure or the OOM
    killer would) while a part's job runs: no part is left half-written under its final name, and
    after `--unlock` the next run does the killed part and the parts never started, not the
    finished ones, and the joined video has every frame."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from .helpers import REPO

    make_clip(tmp_path / "long.mp4", (64, 48), 40)
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["infer"] = {"batch_size": 4, "segment_seconds": 0.4, "segment_above_seconds": 1.0}  # 4 parts of 10 frames
    write_workdir(tmp_path, [("long", tmp_path / "long.mp4", "enhance")], cfg)
    infer_dir, logs = tmp_path / "results" / "long" / "infer", tmp_path / "results" / "long" / "logs"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                            "--cores", "1", "--resources", "gpu=1"], start_new_session=True, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def running() -> list[str]:  # parts whose job has started and whose output is not there yet
        started = [log.name.removeprefix("infer_").removesuffix(".log") + ".mkv"
                   for log in logs.glob("infer_enhanced.part*.log")]
        return [name for name in started if not (infer_dir / name).exists()]

    deadline = time.monotonic() + 600
    while not (list(infer_dir.glob("enhanced.part*.mkv")) and running()):
        assert run.poll() is None, "the run ended before a part could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    killed = running()
    finished = {p.name: p.stat().st_mtime_ns for p in infer_dir.glob("enhanced.part*.mkv")}
    assert killed and finished and not set(killed) & set(finished)
    assert all(probe(infer_dir / name).frames == 10 for name in finished)  # complete, or not there at all

    snakemake(tmp_path, "--unlock")
    dry = snakemake(tmp_path, "-n", "--cores", "1").stdout
    planned = {line.split("/")[-1] for line in dry.splitlines() if "output: results/long/infer/enhanced.part" in line}
    assert planned == {f"enhanced.part{k}.mkv" for k in range(4)} - set(finished) and set(killed) <= planned
    snakemake(tmp_path, "--cores", "1", "--resources", "gpu=1", timeout=1800)
    assert {name: (infer_dir / name).stat().st_mtime_ns for name in finished} == finished  # not redone
    assert probe(tmp_path / "results" / "long" / "enhanced.mkv").frames == 40
