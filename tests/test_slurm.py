"""The workflow on a real (one-node) Slurm through profiles/slurm: jobs go through sbatch,
GPU rules ask Slurm for a GPU, a broken video fails alone with its log and the report still lists
every video, the good one is delivered, and a long one runs as parts, each its own Slurm job,
joined frame-exact.

Needs root (it installs and starts Slurm with tests/slurm/cluster.sh); skipped otherwise.
The test cluster has no accounting, so job status comes from squeue (on a real cluster the
plugin uses sacct by itself)."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from videnhance.io import probe

from .helpers import REPO, make_clip
from .workflow_helpers import TINY_CONFIG, write_workdir

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "profiles" / "slurm"
RUN_LIMIT_S = 600  # the run takes 2-3 minutes on 2 cores; this only stops a hang
GPU_RULES = ("fine_tune", "infer", "infer_part")
LONG_FRAMES, PARTS = 30, 3  # infer.segment_seconds 0.4 at 25 fps: parts of 10 frames


def cluster(action: str, limit_s: int) -> subprocess.CompletedProcess:
    return subprocess.run(["timeout", "-s", "KILL", str(limit_s), "bash", str(CLUSTER), action],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def slurm_cluster():
    if os.geteuid() != 0:
        pytest.skip("the Slurm test needs root: tests/slurm/cluster.sh installs and starts Slurm")
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        pytest.skip("the Slurm test needs apt-get to install slurm-wlm and munge")
    try:
        up = cluster("up", 300)
        assert up.returncode == 0, f"cluster.sh up failed ({up.returncode}):\n{up.stdout}\n{up.stderr}"
        yield
    finally:
        down = cluster("down", 120)
        assert down.returncode == 0, f"cluster.sh down failed ({down.returncode}):\n{down.stdout}\n{down.stderr}"


@pytest.fixture(scope="module")
def run(slurm_cluster, tmp_path_factory):
    """One run of the tiny pipeline on Slurm: a good benchmark clip and a file that is not a video."""
    workdir = tmp_path_factory.mktemp("slurm")
    (workdir / "videos").mkdir()
    make_clip(workdir / "videos" / "good.mp4", size=(48, 48), frames=12, photo_name="astronaut")
    make_clip(workdir / "videos" / "long.mp4", size=(48, 48), frames=LONG_FRAMES, photo_name="coffee")
    (workdir / "videos" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated garbage")
    config = copy.deepcopy(TINY_CONFIG)
    config["infer"] = {**config["infer"], "segment_seconds": 0.4, "segment_above_seconds": 1.0}  # long.mp4 only
    write_workdir(workdir, [("good", "videos/good.mp4", "benchmark"), ("broken", "videos/broken.mp4", "enhance"),
                            ("long", "videos/long.mp4", "benchmark")], config)
    # Jobs run the `snakemake` of this environment on the node (sbatch --export=ALL passes PATH on).
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [
        # Snakemake takes SIGTERM as "finish the running jobs first": stop a hang with KILL.
        "timeout", "-s", "KILL", str(RUN_LIMIT_S),
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
        "--workflow-profile", str(PROFILE), "--executor", "slurm",
        # The test cluster has no accounting: status from squeue, and early (the default waits 40 s).
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
        "--latency-wait", "5",
        # A 2-core node: one core per job, so two jobs can run at once; the profile's 16 GB for GPU
        # rules would not leave room for a second job on a small machine.
        "--max-threads", "1",
        "--set-resources",
        *(f"{rule}:mem_mb=2000*attempt" for rule in ("pretrain", "fine_tune", "infer", "infer_part")),
        "--verbose",  # the plugin logs each sbatch command line at debug level
    ]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
    seconds = time.monotonic() - started
    jobs = subprocess.run(["timeout", "-s", "KILL", "20", "scontrol", "show", "job", "--oneliner"],
                          capture_output=True, text=True).stdout
    output = proc.stdout + proc.stderr
    (workdir / "snakemake_output.txt").write_text(output)
    (workdir / "slurm_jobs.txt").write_text(jobs)
    assert proc.returncode not in (124, 137), f"the run hung (killed after {RUN_LIMIT_S} s):\n{output[-6000:]}"
    print(f"slurm run: {seconds:.0f} s, exit {proc.returncode}, workdir {workdir}")
    return workdir, proc, output, jobs


def sbatch_calls(output: str) -> list[str]:
    return re.findall(r"sbatch call: (sbatch .*)", output)


def calls_for(calls: list[str], rule: str) -> list[str]:
    return [call for call in calls if re.search(rf"--comment '?rule_{rule}(_wildcards_|'| )", call)]


def test_good_video_is_delivered_through_slurm(run):
    workdir, proc, output, _ = run
    results = workdir / "results" / "good"
    for name in ("enhanced.mkv", "side_by_side.mp4", "scores.csv", "model.pt", "infer/milestone.mkv"):
        assert (results / name).is_file(), f"{name} missing:\n{output[-6000:]}"
    assert probe(results / "enhanced.mkv").frames == probe(workdir / "videos" / "good.mp4").frames
    assert "has been submitted with SLURM jobid" in output


def test_broken_video_fails_alone_with_its_log(run):
    workdir, proc, output, _ = run
    assert proc.returncode != 0
    assert not (workdir / "results" / "broken" / "enhanced.mkv").exists()
    log = (workdir / "results" / "broken" / "logs" / "probe.log").read_text()
    assert "broken.mp4" in log and "not a readable video" in log
    # The Slurm job's own log (Snakemake's output on the node) is kept for failed jobs; the probe
    # ran in the per-video `prep` group job.
    slurm_logs = sorted((workdir / ".snakemake" / "slurm_logs").glob("group_prep*/*.log"))
    assert any("broken.mp4: not a readable video" in p.read_text(errors="replace") for p in slurm_logs), slurm_logs
    # and the run still ends with a report that accounts for every video
    summary = (workdir / "results" / "report" / "summary.md").read_text()
    assert "2 of 3 videos" in summary and re.search(r"\| broken \| failed \| probe \|", summary), summary


def test_a_long_video_runs_as_parts_each_its_own_slurm_job(run):
    """Three parts of each output stream (enhanced and milestone), each submitted on its own
    with a GPU; the joined lossless stream equals one pass of the video's model over the whole
    input, and the deliverable has every frame."""
    from videnhance.infer import enhance_video
    from videnhance.io import EncodeSettings
    from videnhance.models import load_model

    from .helpers import read_frames

    workdir, _, output, _ = run
    calls = sbatch_calls(output)
    parts = [call for call in calls_for(calls, "infer_part") if "long" in call]
    assert len(parts) == 2 * PARTS and all(" --gpus=1" in call for call in parts), parts
    assert len([call for call in calls_for(calls, "join_parts") if "long" in call]) == 2
    results = workdir / "results" / "long"
    whole = workdir / "whole.mkv"
    enhance_video(load_model(results / "model.pt").module, results / "input.mkv", whole, 2,
                  EncodeSettings(codec="ffv1"), progress=False)
    assert np.array_equal(read_frames(results / "infer" / "enhanced.mkv"), read_frames(whole))
    assert probe(results / "enhanced.mkv").frames == LONG_FRAMES


def test_gpu_rules_ask_slurm_for_a_gpu(run):
    _, _, output, jobs = run
    calls = sbatch_calls(output)
    for rule in GPU_RULES:
        rule_calls = calls_for(calls, rule)
        assert rule_calls, f"no sbatch call for {rule} in:\n" + "\n".join(calls)
        assert all(" --gpus=1" in call for call in rule_calls), rule_calls
    assert all(" --gpus=1" in call for call in calls_for(calls, "pretrain"))
    cpu_calls = [call for call in calls if not any(calls_for([call], rule) for rule in ("pretrain", *GPU_RULES))]
    assert cpu_calls and all("--gpus" not in call and "--gres" not in call for call in cpu_calls), cpu_calls
    # What Slurm itself recorded for those jobs: one GPU each.
    records = [line for line in jobs.splitlines() if re.search(r"Comment=rule_(fine_tune|infer)_", line)]
    assert len(records) >= 3 + 2 * PARTS, jobs  # the good video's fine_tune and two infers, the long one's parts
    assert all(re.search(r"TresPerJob=gres[:/]gpu:1", line) for line in records), records


def test_short_steps_of_a_video_share_one_job_and_retries_get_more_memory(run):
    _, _, output, _ = run
    calls = sbatch_calls(output)
    prep = [call for call in calls if "group_prep" in call or "rule_prep" in call]
    assert prep, "\n".join(calls)
    assert not calls_for(calls, "degrade_gt"), "degrade_gt should run inside the per-video prep job"
    # The broken video's probe failed, was resubmitted once, and asked for 4000 MB then 8000 MB.
    mems = [int(m) for call in prep if "broken" in call for m in re.findall(r"--mem (\d+)", call)]
    assert 4000 in mems and 8000 in mems, prep
