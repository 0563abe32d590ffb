"""How the report and the job graph scale with the number of videos (issue: 1000 videos in one report).

For each N: N synthetic score files (benchmark protocol, 100 frames × 3 methods, random but
plausible values), verdicts and meta.json files; then the report as the workflow's `report` rule
writes it (summary csv/md/html, gains.png), timed in-process, and the total size of its files.
With --dry-run, also `snakemake -n` on a sheet of N videos (links to one tiny clip), timed: the
cost of building the job graph before any job runs.

    python tools/report_scale.py --videos 10 100 1000 [--dry-run 1000 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from videnhance.layout import Results  # noqa: E402
from videnhance.report import write_report  # noqa: E402


def synthetic_run(folder: Path, n: int, frames: int = 100, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    videos = [f"clip_{k:05d}" for k in range(n)]
    layout = Results(folder)
    for video in videos:
        files = layout.video(video)
        Path(files.folder).mkdir(parents=True)
        base = rng.uniform(24, 36)
        gains = {"bicubic": 0.0, "milestone": rng.normal(0.8, 0.3), "fine_tuned": rng.normal(1.0, 0.4)}
        rows = []
        motion = rng.gamma(2.0, 1.0)
        for f in range(frames):
            for method, gain in gains.items():
                rows.append({"video": video, "protocol": "ground truth", "frame": f, "method": method,
                             "psnr_y": base + gain + rng.normal(0, 0.2), "ssim_y": 0.9, "psnr_rgb": base + gain - 1.5,
                             "flicker": rng.uniform(1, 3) if f else float("nan"), "motion": motion})
        pd.DataFrame(rows).to_csv(files.scores(), index=False)
        Path(files.verdict).write_text(json.dumps({"kept": "fine_tuned", "signal": "near_scale",
                                                                 "gain_db": 0.2, "gain_stderr_db": 0.05,
                                                                 "seconds": 30.0}))
        side = int(rng.choice([320, 640, 1280, 1920]))
        Path(files.meta).write_text(json.dumps({"width": side, "height": side * 9 // 16}))
    return videos


def time_report(n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        layout = Results(tmp)
        videos = synthetic_run(Path(tmp), n)
        Path(layout.report("")).mkdir()
        names = {"out_csv": "summary.csv", "out_md": "summary.md", "out_html": "summary.html",
                 "out_gains_png": "gains.png", "out_run": "run.json"}
        files = {key: Path(layout.report(name)) for key, name in names.items()}
        start = time.perf_counter()
        write_report([layout.video(v).scores() for v in videos], [layout.video(v).verdict for v in videos],
                     scales=dict.fromkeys(videos, 4), **files, metas={v: layout.video(v).meta for v in videos})
        seconds = time.perf_counter() - start
        sizes = {f.name: f.stat().st_size for f in files.values()}
    return {"videos": n, "report_s": round(seconds, 2), "total_kb": round(sum(sizes.values()) / 1024),
            **{f"{k}_kb": round(v / 1024, 1) for k, v in sizes.items() if k != "run.json"}}


def time_dry_run(n: int) -> dict:
    sys.path.insert(0, str(REPO))
    from tests.helpers import make_clip

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "videos").mkdir()
        make_clip(root / "videos" / "one.mp4", size=(32, 32), frames=4)
        for k in range(n):
            os.symlink(root / "videos" / "one.mp4", root / "videos" / f"clip_{k:05d}.mp4")
        (root / "config").mkdir()
        (root / "config" / "config.yaml").write_text("videos: {sheet: config/videos.tsv}\nscale: 2\n")
        rows = [f"clip_{k:05d}\tvideos/clip_{k:05d}.mp4\tenhance" for k in range(n)]
        (root / "config" / "videos.tsv").write_text("id\tpath\tmode\n" + "\n".join(rows) + "\n")
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(root), "-n", "-q", "all"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode:
            raise RuntimeError(proc.stderr[-3000:])
    return {"videos": n, "dry_run_s": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, nargs="*", default=[10, 100, 1000])
    parser.add_argument("--dry-run", type=int, nargs="*", default=[])
    args = parser.parse_args()
    import platform

    print(f"# {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    if args.videos:
        print(pd.DataFrame([time_report(n) for n in args.videos]).to_markdown(index=False))
    if args.dry_run:
        print(pd.DataFrame([time_dry_run(n) for n in args.dry_run]).to_markdown(index=False))


if __name__ == "__main__":
    main()
