"""How the report and the job graph scale with the number of videos (issue: 1000 videos in one report).

For each N: N synthetic score files (benchmark protocol, 100 frames × 3 methods, random but
plausible values), verdicts with two guard rounds, meta.json files, and each video's crops,
per-frame plot and side-by-side clip (small real files, so summary.html links them as it would);
then the report as the workflow's `report` rule writes it (summary csv/md/html, gains.png), timed
in-process, and the total size of its files. With --browser, summary.html is also opened in
Debian's chromium (Selenium, as tests/test_report_browser.py) and the time to its load event is
read from the page's own navigation timing. With --dry-run, also `snakemake -n` on a sheet of N
videos (links to one tiny clip), timed: the cost of building the job graph before any job runs.

    python tools/report_scale.py --videos 10 100 1000 [--browser] [--dry-run 1000 10000]
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

ROUND = {"lr": 3e-4, "kept": True, "guard": "fine-tuned beats the base model by +0.200 dB Y-PSNR",
         "signals": {"near_scale": {"gain_db": 0.2, "stderr_db": 0.05}, "frame": {"gain_db": 0.1, "stderr_db": 0.06}}}


def _assets(folder: Path) -> dict[str, bytes]:
    """A crops image, a per-frame plot and a side-by-side clip, small and real, copied to every video."""
    from PIL import Image

    from videnhance.io import run_ffmpeg

    out = {}
    for name, size in (("crops.png", (480, 120)), ("plot.png", (320, 120))):
        Image.new("RGB", size, (90, 120, 200)).save(folder / name)
        out[name] = (folder / name).read_bytes()
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=256x96:rate=25:duration=1", "-c:v", "libx264", "-pix_fmt",
                "yuv420p", str(folder / "sbs.mp4")], what="report_scale clip")
    out["sbs.mp4"] = (folder / "sbs.mp4").read_bytes()
    return out


def synthetic_run(folder: Path, n: int, frames: int = 100, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    videos = [f"clip_{k:05d}" for k in range(n)]
    layout = Results(folder)
    assets = _assets(folder)
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
        Path(files.verdict).write_text(json.dumps({"kept": "fine_tuned", "signal": "near_scale", "gain_db": 0.2,
                                                   "gain_stderr_db": 0.05, "seconds": 30.0,
                                                   "round_report": [{"round": 1, **ROUND}, {"round": 2, **ROUND}]}))
        for path, name in ((files.crops, "crops.png"), (files.per_frame, "plot.png"), (files.side_by_side, "sbs.mp4")):
            Path(path).write_bytes(assets[name])
        side = int(rng.choice([320, 640, 1280, 1920]))
        Path(files.meta).write_text(json.dumps({"width": side, "height": side * 9 // 16}))
    return videos


def browser_load_ms(page: Path) -> dict:
    """Open `page` in headless chromium, 1400×1000; the navigation timing's DOMContentLoaded and load."""
    sys.path.insert(0, str(REPO))
    from tests.helpers import chromium

    with tempfile.TemporaryDirectory() as profile:
        driver = chromium(profile)
        try:
            driver.get(page.as_uri())
            nav = driver.execute_script("const n = performance.getEntriesByType('navigation')[0];"
                                        "return [n.domContentLoadedEventEnd, n.loadEventEnd];")
        finally:
            driver.quit()
    return {"browser_dom_ms": round(nav[0]), "browser_load_ms": round(nav[1])}


def time_report(n: int, browser: bool = False) -> dict:
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
        opened = browser_load_ms(files["out_html"]) if browser else {}
    return {"videos": n, "report_s": round(seconds, 2), "total_kb": round(sum(sizes.values()) / 1024),
            **{f"{k}_kb": round(v / 1024, 1) for k, v in sizes.items() if k != "run.json"}, **opened}


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
    parser.add_argument("--browser", action="store_true", help="also time summary.html's load in chromium")
    args = parser.parse_args()
    import platform

    print(f"# {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    if args.videos:
        print(pd.DataFrame([time_report(n, args.browser) for n in args.videos]).to_markdown(index=False))
    if args.dry_run:
        print(pd.DataFrame([time_dry_run(n) for n in args.dry_run]).to_markdown(index=False))


if __name__ == "__main__":
    main()
