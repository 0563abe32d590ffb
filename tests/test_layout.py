"""`videnhance.layout` is the one home of the results folder's layout: the rules, `run_video`, the
report and the tools read it, and nothing else spells a results path."""

import re

from videnhance.layout import Results

from .helpers import REPO

NAMES = ("meta.json", "verdict.json", "scores.csv", "pairs.npz", "frames.npz", "model.pt", "input.mkv",
         "side_by_side.mp4", "psnr_per_frame.png", "crops.png", "summary.csv", "summary.md", "summary.html",
         "run.json", "gains.png", "fine_tune.history.csv", "base.pt")
# a results file name joined onto a folder: `/ "meta.json"`, `"{x}/meta.json"`, `"…/base/x{s}.pt"`
BUILT = re.compile(r'(/ ?"|\}/)(' + "|".join(map(re.escape, NAMES)) + r')|/base/x\{|/infer/\{|/logs/\{')


def test_the_layout_gives_snakemake_patterns_and_plain_paths():
    results = Results("results/")
    video = results.video("{video}")
    assert (video.meta, video.infer("{which}", "{part}"), video.log("infer_{which}")) == (
        "results/{video}/meta.json", "results/{video}/infer/{which}.part{part}.mkv",
        "results/{video}/logs/infer_{which}.log")
    assert results.video("clip").deliverable("mkv") == "results/clip/enhanced.mkv"
    assert (results.base(4), results.pretrained("srresnet", 2, "log"), results.report("summary.md")) == (
        "results/base/x4.pt", "results/pretrained/logs/srresnet_x2.log", "results/report/summary.md")
    assert Results(".").video("v").scores(3) == "./v/scores.part3.csv"


def test_no_other_file_builds_a_results_path():
    files = [*(REPO / "src" / "videnhance").rglob("*.py"), *(REPO / "workflow").rglob("*.smk"),
             REPO / "Snakefile", *(REPO / "tools").glob("*.py")]
    offenders = [f"{path.relative_to(REPO)}:{n}: {line.strip()}" for path in files if path.name != "layout.py"
                 for n, line in enumerate(path.read_text().splitlines(), 1) if BUILT.search(line)]
    assert offenders == []
    assert BUILT.search('f"{RESULTS}/{vid}/meta.json"') and BUILT.search('root / v / "scores.csv"')
