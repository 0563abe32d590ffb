"""Running the real workflow on tiny clips in a scratch folder (real Snakemake, real ffmpeg)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import av
import yaml

from .helpers import REPO

TINY_CONFIG = {
    "videos": {"sheet": "config/videos.tsv"},
    "scale": 2,
    "checkpoint": None,  # our `pretrain` (the tiny model); `auto` would use the packaged ×2 base
    "model": {"channels": 8, "blocks": 1},
    "pretrain": {"steps": 4, "steps_per_epoch": 2, "batch_size": 4, "patch": 16, "copies": 1},
    "extract": {"frames": 8, "val_fraction": 0.25},
    "fine_tune": {"steps": 4, "steps_per_epoch": 2, "batch_size": 4, "patch": 12},
    "infer": {"batch_size": 4},
}


def write_workdir(workdir: Path, rows: list[tuple[str, str, str]], config: dict | None = None,
                  extra_columns=()) -> None:
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config or TINY_CONFIG))
    header = "\t".join(["id", "path", "mode", *extra_columns])
    lines = [header] + ["\t".join(map(str, row)) for row in rows]
    (workdir / "config" / "videos.tsv").write_text("\n".join(lines) + "\n")


def snakemake(workdir: Path, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def planned_jobs(dry_run_output: str) -> set[tuple[str, str]]:
    """(rule, video wildcard or '') of every job a dry run plans."""
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run_output):
        match = re.match(r"(?:local)?rule (\w+):", block.strip())
        if match:
            video = re.search(r"wildcards:.*?video=([^,\s]+)", block)
            jobs.add((match.group(1), video.group(1) if video else ""))
    return jobs


def stream_seconds(path: Path, kind: str) -> float:
    """Duration of the first stream of `kind` ("video"/"audio"), from its packets."""
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        end = 0
        start = None
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            start = packet.pts if start is None else min(start, packet.pts)
            end = max(end, packet.pts + (packet.duration or 0))
        return float((end - (start or 0)) * stream.time_base)


def assert_ground_truth_only_through_degrade_gt(workdir: Path, rows: list[tuple[str, str, str]]) -> None:
    """From the job graph: remove degrade_gt's edges and no ground-truth file is upstream of any
    video's model (so of pretraining or fine-tuning); with them, degrade_gt is the only way through."""
    table = snakemake(workdir, "--detailed-summary", "--forceall").stdout
    lines = [line.split("\t") for line in table.splitlines()[1:] if "\t" in line]
    producers = {out: (rule, [i for i in inputs.split(",") if i]) for out, _, rule, _, inputs, *_ in lines}
    ground_truth = {str(Path(p)) for v, p, m in rows if m == "benchmark"}

    def upstream(file: str, skip_rule: str | None) -> set[str]:
        seen, stack = set(), [file]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            rule, inputs = producers.get(current, (None, []))
            if rule != skip_rule:
                stack.extend(inputs)
        return {str(Path(f)) for f in seen}

    for vid, _, mode in rows:
        model = f"results/{vid}/model.pt"
        assert producers[model][0] == "fine_tune"
        if mode == "benchmark":
            assert upstream(model, None) & ground_truth, "sanity: the degraded input does come from the ground truth"
        assert not upstream(model, "degrade_gt") & ground_truth, vid
        assert not {str(Path(f)) for f in producers[model][1]} & ground_truth
