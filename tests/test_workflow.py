"""End-to-end: the real Snakemake workflow on tiny clips, checked output by output."""

from __future__ import annotations

import json
import math
import shutil
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest

from videnhance.io import probe
from videnhance.models import describe_base

from .helpers import make_clip, shared_data
from .workflow_helpers import (
    TINY_CONFIG,
    assert_ground_truth_only_through_degrade_gt,
    planned_jobs,
    snakemake,
    stream_seconds,
    write_workdir,
)

pytestmark = pytest.mark.slow

ROWS = [
    ("bench_audio", "videos/bench audio.mp4", "benchmark"),
    ("bench_square", "videos/square.mp4", "benchmark"),
    ("enh_ntsc", "videos/ntsc.mp4", "enhance"),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("workflow")
    videos = workdir / "videos"
    videos.mkdir()
    make_clip(videos / "bench audio.mp4", size=(64, 48), frames=16, audio=True)
    make_clip(videos / "square.mp4", size=(48, 48), frames=12, photo_name="astronaut")
    make_clip(videos / "ntsc.mp4", size=(40, 32), frames=14, fps=Fraction(30000, 1001), audio=True, photo_name="rocket")
    write_workdir(workdir, ROWS)
    snakemake(workdir, "--cores", "2", "--resources", "gpu=1")
    return workdir


def assert_same_timing(source: Path, output: Path) -> None:
    """Same frame count; same frame rate and video duration up to Matroska's 1 ms timestamps."""
    src, out = probe(source), probe(output)
    assert out.frames == src.frames, output
    assert math.isclose(out.fps, src.fps, rel_tol=1e-3), (output, out.fps, src.fps)
    assert math.isclose(stream_seconds(output, "video"), stream_seconds(source, "video"), abs_tol=0.002), output


def test_every_video_is_delivered_with_its_frames_timing_and_audio(run):
    for vid, path, mode in ROWS:
        source, out = probe(run / path), probe(run / "results" / vid / "enhanced.mkv")
        assert_same_timing(run / path, run / "results" / vid / "enhanced.mkv")
        expected = (source.width, source.height) if mode == "benchmark" else (2 * source.width, 2 * source.height)
        assert (out.width, out.height) == expected, vid
        assert len(out.audio) == len(source.audio), vid
        if source.audio:
            assert math.isclose(stream_seconds(run / "results" / vid / "enhanced.mkv", "audio"),
                                stream_seconds(run / path, "audio"), abs_tol=0.03), vid
        sbs = probe(run / "results" / vid / "side_by_side.mp4")
        assert (sbs.width, sbs.frames) == (2 * out.width, source.frames)


def test_scores_one_row_per_frame_and_method_finite_and_in_range(run):
    for vid, path, mode in ROWS:
        scores = pd.read_csv(run / "results" / vid / "scores.csv")
        n = probe(run / path).frames if mode == "benchmark" else len(set(scores.frame))
        assert len(scores) == 3 * n and scores.groupby("method").frame.nunique().to_dict() == {
            "bicubic": n, "fine_tuned": n, "milestone": n}
        assert scores[["psnr_y", "ssim_y", "psnr_rgb"]].map(math.isfinite).all().all(), vid
        assert scores.psnr_y.between(10, 99).all() and scores.ssim_y.between(0, 1).all(), vid
        assert set(scores.protocol) == {"ground truth" if mode == "benchmark" else "self-validation"}


def test_report_has_every_video_and_plots(run):
    summary = pd.read_csv(run / "results" / "report" / "summary.csv")
    assert set(summary.video) == {v for v, _, _ in ROWS} | {"overall"}
    assert summary.kept.notna().all() and set(summary.status) == {"done", "2 of 3 videos", "1 of 3 videos"}
    assert (run / "results" / "report" / "gains.png").read_bytes()[:4] == b"\x89PNG"
    page = (run / "results" / "report" / "summary.html").read_text()
    assert "<table id='summary' class='sortable'>" in page and "ground-truth clips: delivered" in page
    for vid, _, _ in ROWS:  # each video's own plots, not one figure of every video
        assert (run / "results" / vid / "psnr_per_frame.png").read_bytes()[:4] == b"\x89PNG"
    snakemake(run, "--report", "report.html")
    html = (run / "report.html").read_text(errors="replace")
    assert "summary.csv" in html and "gains.png" in html and "psnr_per_frame.png" in html
    # the report explains itself: the workflow description and a caption per item
    assert "Per-video transfer learning" in html and "held-out gain per" in html and "nearest-neighbour zoom" in html


def test_lint_is_clean(run):
    out = snakemake(run, "--lint")
    assert "good condition" in out.stdout + out.stderr


def test_nothing_to_do_after_a_complete_run(run):
    out = snakemake(run, "-n", "--cores", "2")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_speed_and_device_settings_rerun_nothing(run):
    """Batch size, tiles, torch.compile and the device change how fast, not what: a run moved to
    another machine must not redo every video."""
    overlay = run / "speed.yaml"
    overlay.write_text("device: cpu\ninfer: {batch_size: 2, tile: 64, tile_overlap: 8, compile: true}\n")
    out = snakemake(run, "-n", "--cores", "2", "--configfile", str(run / "config" / "config.yaml"), str(overlay))
    assert "Nothing to be done" in out.stdout + out.stderr, out.stdout[-2000:]


def test_editing_one_row_reruns_only_that_video_from_that_step(run):
    sheet = run / "config" / "videos.tsv"
    original = sheet.read_text()
    try:
        write_workdir(run, [(*row, 3 if row[0] == "bench_square" else "") for row in ROWS], TINY_CONFIG,
                      extra_columns=("fine_tune_steps",))
        jobs = planned_jobs(snakemake(run, "-n", "--cores", "2").stdout)
        assert {video for _, video in jobs} == {"bench_square", ""}
        assert {rule for rule, _ in jobs} == {"fine_tune", "infer", "reassemble", "evaluate", "report", "all"}
        assert ("infer", "bench_square") in jobs
    finally:
        sheet.write_text(original)
    assert "Nothing to be done" in snakemake(run, "-n", "--cores", "2").stdout


def test_adding_a_video_runs_only_its_jobs(run):
    sheet = run / "config" / "videos.tsv"
    original = sheet.read_text()
    shutil.copy(run / "videos" / "square.mp4", run / "videos" / "square copy.mp4")
    try:
        sheet.write_text(original + "new_one\tvideos/square copy.mp4\tenhance\n")
        jobs = planned_jobs(snakemake(run, "-n", "--cores", "2").stdout)
        assert {video for _, video in jobs} == {"new_one", ""}
        assert ("pretrain", "") not in jobs and ("base_model", "") not in jobs
    finally:
        sheet.write_text(original)


def test_ground_truth_never_reaches_fine_tuning(run):
    """From the job graph: remove degrade_gt's edges and no ground-truth file is upstream of any
    fine-tuned model; with them, degrade_gt is the only way through."""
    assert_ground_truth_only_through_degrade_gt(run, ROWS)


def test_a_broken_video_fails_alone_with_a_clear_message(run, tmp_path):
    """A file that is not a video: its job fails naming the file, the other video is delivered,
    and a user checkpoint (the first run's base model) is used instead of pretraining."""
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated garbage")
    good_name = "güt clip $(touch PWNED); 'q' & x.mp4"  # spaces, unicode, shell metacharacters
    shutil.copy(run / "videos" / "square.mp4", tmp_path / good_name)
    config = {**TINY_CONFIG, "checkpoint": str(run / "results" / "base" / "x2.pt")}
    write_workdir(tmp_path, [("broken", "broken.mp4", "enhance"), ("good", good_name, "enhance")], config)
    out = snakemake(tmp_path, "--cores", "2", "--resources", "gpu=1", "--keep-going", check=False)
    assert out.returncode != 0
    assert probe(tmp_path / "results" / "good" / "enhanced.mkv").frames == 12
    assert not (tmp_path / "results" / "broken" / "enhanced.mkv").exists()
    assert not (tmp_path / "results" / "pretrained").exists()
    assert not (tmp_path / "PWNED").exists()
    log = (tmp_path / "results" / "broken" / "logs" / "probe.log").read_text()
    assert "broken.mp4" in log and "not a readable video" in log
    assert "videnhance error" in out.stderr and "broken.mp4" in out.stderr
    # the run still ends in a report, which accounts for the broken video too
    assert "videnhance: report of 1 of 2 videos (1 failed, 0 not run)" in out.stderr
    summary = pd.read_csv(tmp_path / "results" / "report" / "summary.csv").set_index("video")
    assert summary.loc["good", "status"] == "done" and summary.loc["overall", "status"] == "1 of 2 videos"
    assert summary.loc["broken", "status"] == "failed" and summary.loc["broken", "failed_step"] == "probe"
    assert "broken.mp4" in summary.loc["broken", "error"] and "not a readable video" in summary.loc["broken", "error"]
    assert not (tmp_path / "results" / "report" / "run.json").exists()
    # fixed, the video runs and the report rule runs again (run.json is missing)
    shutil.copy(run / "videos" / "square.mp4", tmp_path / "broken.mp4")
    jobs = planned_jobs(snakemake(tmp_path, "-n", "--cores", "2").stdout)
    assert ("probe", "broken") in jobs and ("report", "") in jobs and not any(v == "good" for _, v in jobs)
    # removed instead, only the report runs again
    write_workdir(tmp_path, [("good", good_name, "enhance")], config)
    assert planned_jobs(snakemake(tmp_path, "-n", "--cores", "2").stdout) == {("report", ""), ("all", "")}


def test_real_clips_from_shared_data(tmp_path):
    """A real clip with audio (enhance) and a real handheld clip (benchmark), when ../shared is here."""
    realshort = shared_data("videos", "imageio_realshort.mp4")
    bag = shared_data("videos", "pysot_bag.avi")
    write_workdir(tmp_path, [("realshort", str(realshort), "enhance"), ("bag", str(bag), "benchmark")])
    snakemake(tmp_path, "--cores", "2", "--resources", "gpu=1")
    for vid, source in (("realshort", realshort), ("bag", bag)):
        assert_same_timing(source, tmp_path / "results" / vid / "enhanced.mkv")
        assert len(probe(tmp_path / "results" / vid / "enhanced.mkv").audio) == len(probe(source).audio)
    scores = pd.read_csv(tmp_path / "results" / "bag" / "scores.csv")
    assert len(scores) == 3 * 196
    assert scores.psnr_y.between(20, 60).all()


def test_the_default_base_is_chosen_per_scale(run, tmp_path):
    """`checkpoint: auto` (the default): the strongest packaged base at each scale (SPAN at ×2 and
    ×4, SRMDNF at ×3), so no `pretrain` runs for them, each fine-tuned at the rate measured for it;
    the report names the network, the file it came from and its licence."""
    from videnhance.defaults import AUTO_LR

    shutil.copy(run / "videos" / "square.mp4", tmp_path / "square.mp4")
    config = {k: v for k, v in TINY_CONFIG.items() if k != "checkpoint"}
    rows = [(name, "square.mp4", "enhance", scale) for name, scale in (("two", 2), ("three", 3), ("four", 4))]
    write_workdir(tmp_path, rows, config, extra_columns=("scale",))
    dry = snakemake(tmp_path, "-n", "--cores", "2").stdout
    assert "rule pretrain:" not in dry and dry.count("rule base_model:") == 3, dry[-3000:]
    for source in ("spanx2_ch48.param", "srmdnf_x3.param", "spanx4_ch48.param"):  # the rules' inputs
        assert source in dry
    snakemake(tmp_path, "results/two/verdict.json", "--cores", "2", "--resources", "gpu=1")
    assert not (tmp_path / "results" / "pretrained").exists()
    verdict = json.loads((tmp_path / "results" / "two" / "verdict.json").read_text())
    assert verdict["lr"] == AUTO_LR["span"]
    base = describe_base(tmp_path / "results" / "base" / "x2.pt")
    assert base["network"] == "SPAN (spanx2_ch48)" and base["source"] == "package:spanx2_ch48", base
    assert base["licence"].startswith("Apache-2.0") and base["parameters"] == 410_700


def test_a_configured_memory_budget_is_what_each_job_requests(tmp_path):
    """`memory_mb` is the budget a step plans in; each job asks the scheduler (Slurm's --mem) for
    at least that, so the cgroup it runs in holds what it counts on."""
    import re

    clip = make_clip(tmp_path / "a.mp4")
    write_workdir(tmp_path, [("a", str(clip), "enhance")], dict(TINY_CONFIG, memory_mb=20000))
    out = snakemake(tmp_path, "-n", "--cores", "1").stdout
    requests = {rule: int(mb) for rule, mb in re.findall(r"rule (\w+):.*?mem_mb=(\d+)", out, re.S)}
    assert {"extract", "fine_tune", "infer", "reassemble"} <= requests.keys()
    assert all(mb == 20000 for mb in requests.values()), requests
    write_workdir(tmp_path, [("a", str(clip), "enhance")], TINY_CONFIG)
    out = snakemake(tmp_path, "-n", "--cores", "1").stdout
    assert "mem_mb=16000" in out and "mem_mb=20000" not in out  # the rules' own requests
