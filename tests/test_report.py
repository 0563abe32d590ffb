import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from videnhance.report import write_report


def _scores(path, video, protocol, offsets):
    rows = [{"video": video, "protocol": protocol, "frame": f, "method": m, "psnr_y": 30 + off + 0.1 * f,
             "ssim_y": 0.9, "psnr_rgb": 29 + off,
             "flicker": float("nan") if protocol != "ground truth" or f == 0 else 1 + off / 10}
            for f in range(4) for m, off in offsets.items()]
    pd.DataFrame(rows).to_csv(path, index=False)


def _outputs(out):
    return {"out_csv": out / "s.csv", "out_md": out / "s.md", "out_html": out / "s.html",
            "out_gains_png": out / "g.png", "out_run": out / "run.json"}


def test_report_tables_and_plots(tmp_path):
    for video, protocol in (("a", "ground truth"), ("b", "ground truth"), ("c", "self-validation")):
        (tmp_path / video).mkdir()
        _scores(tmp_path / video / "scores.csv", video, protocol, {"bicubic": 0, "milestone": 1.5, "fine_tuned": 2.0})
        (tmp_path / video / "verdict.json").write_text(json.dumps({
            "kept": "fine_tuned", "seconds": 12.0, "it_per_s": 50.0, "device": "cuda:0", "signal": "near_scale",
            "gain_db": 0.4321, "gain_stderr_db": 0.05, "reason": "fine-tuned beats the base"}))
    out = tmp_path / "report"
    out.mkdir()
    summary = write_report([tmp_path / v / "scores.csv" for v in "abc"], [tmp_path / v / "verdict.json" for v in "abc"],
                           scales={"a": 2, "b": 2, "c": 4}, **_outputs(out))
    assert list(summary.video) == ["a", "b", "c", "overall", "overall"]
    assert list(summary.status) == ["done"] * 3 + ["2 of 3 videos", "1 of 3 videos"]
    assert json.loads((out / "run.json").read_text()) == {"complete": True, "videos": 3}
    row = summary.set_index("video").loc["a"]
    assert np.isclose(row.d_milestone_vs_bicubic_db, 1.5) and np.isclose(row.d_fine_tuned_vs_milestone_db, 0.5)
    assert np.isclose(row.bicubic_psnr_y, 30.15)  # mean over frames
    assert (row.fine_tune_seconds, row.fine_tune_it_per_s, row.fine_tune_device) == (12.0, 50.0, "cuda:0")
    md = (out / "s.md").read_text()
    assert "| a | ground truth | 2 | 4 |" in md and "+0.50 dB" in md and "Y of BT.601" in md
    assert "fine_tuned (+0.432 ± 0.050, near_scale)" in md  # which signal decided, and by how much
    assert "| 1.00 / 1.15 / 1.20 |" in md and "| – / – / – |" in md  # flicker: benchmark rows only
    assert np.isclose(row.milestone_flicker, 1.15)
    assert (row.guard_signal, row.guard_gain_db) == ("near_scale", 0.4321)
    assert (out / "g.png").read_bytes()[:4] == b"\x89PNG" and (out / "g.png").stat().st_size > 1000
    page = (out / "s.html").read_text()
    assert "<script>" in page and "http" not in page  # self-contained
    # the page opens on a sentence per protocol, then the compact table; every column behind a toggle
    assert ("2 ground-truth clips: delivered +0.50 dB over the base model and +2.00 dB over bicubic "
            "(mean Y-PSNR; 2 of 2 fine-tuned).") in page
    assert "1 self-validated clip: delivered +0.50 dB" in page
    compact, rest = page.split("<table id='summary' class='sortable'>")[1].split("</table>", 1)
    assert compact.count("<tr") == 1 + 5 and "<th>delivered Y-PSNR (dB)</th>" in compact
    assert '>+0.50</td>' in compact and '>32.15</td>' in compact and "d_fine_tuned" not in compact
    full = rest.split("<details><summary>Every column (as in <a href='s.csv'>s.csv</a>)</summary>")[1]
    assert full.count("<tr") == 1 + 5 and "<th>d_fine_tuned_vs_milestone_db</th>" in full


def test_a_multi_frame_base_gets_a_single_frame_row(tmp_path):
    """Rows bicubic / single-frame milestone / temporal milestone / fine-tuned, and what the
    neighbouring frames add; a run without a multi-frame base has no such columns (test above)."""
    (tmp_path / "a").mkdir()
    _scores(tmp_path / "a" / "scores.csv", "a", "ground truth",
            {"bicubic": 0, "single_frame": 1.2, "milestone": 1.5, "fine_tuned": 2.0})
    (tmp_path / "a" / "verdict.json").write_text(json.dumps({"kept": "base"}))
    out = tmp_path / "report"
    out.mkdir()
    summary = write_report([tmp_path / "a" / "scores.csv"], [tmp_path / "a" / "verdict.json"], scales={"a": 4},
                           **_outputs(out))
    row = summary.set_index("video").loc["a"]
    assert np.isclose(row.d_milestone_vs_single_frame_db, 0.3) and np.isclose(row.single_frame_psnr_y, 31.35)
    md = (out / "s.md").read_text()
    assert "| bicubic Y-PSNR / SSIM | single-frame milestone Y-PSNR / SSIM | milestone Y-PSNR / SSIM |" in md
    assert "| +0.30 dB |" in md and "1.00 / 1.12 / 1.15 / 1.20" in md and "neighbouring frames add" in md


def test_a_single_frame_base_has_no_single_frame_columns(tmp_path):
    (tmp_path / "a").mkdir()
    _scores(tmp_path / "a" / "scores.csv", "a", "ground truth", {"bicubic": 0, "milestone": 1.5, "fine_tuned": 2.0})
    (tmp_path / "a" / "verdict.json").write_text(json.dumps({"kept": "base"}))
    out = tmp_path / "report"
    out.mkdir()
    summary = write_report([tmp_path / "a" / "scores.csv"], [tmp_path / "a" / "verdict.json"], scales={"a": 4},
                           **_outputs(out))
    assert not any("single_frame" in c for c in summary.columns)
    assert "single-frame" not in (out / "s.md").read_text()


SNAKEMAKE_LOG = """Select jobs to execute...
[Mon Nov 30 16:00:01 2026]
localrule probe:
    output: results/good/meta.json
    log: results/good/logs/probe.log
Error in rule probe:
    message: None
    jobid: 7
    input: videos/broken.mp4
    output: results/broken/meta.json
    log: results/broken/logs/probe.log (check log file(s) for error details)
    conda-env: /x/.snakemake/conda/abc
Error in rule pretrain:
    jobid: 3
    output: results/pretrained/srresnet_x4.pt, results/pretrained/srresnet_x4.history.csv
    log: results/pretrained/logs/srresnet_x4.log (check log file(s) for error details)
Shutting down, this might take some time.
"""


def test_failed_jobs_and_their_one_line_errors_are_read_from_the_logs(tmp_path):
    from videnhance.runs import FailedJob, failed_jobs, last_error

    (tmp_path / "snakemake.log").write_text(SNAKEMAKE_LOG)
    jobs = failed_jobs(tmp_path / "snakemake.log")
    assert jobs == [FailedJob("probe", ("results/broken/meta.json",), ("results/broken/logs/probe.log",)),
                    FailedJob("pretrain",
                              ("results/pretrained/srresnet_x4.pt", "results/pretrained/srresnet_x4.history.csv"),
                              ("results/pretrained/logs/srresnet_x4.log",))]
    assert [j.video("results") for j in jobs] == ["broken", None]
    ours = tmp_path / "ours.log"
    ours.write_text("2026-11-30 16:00:01,123 INFO probe: reading\n"
                    "2026-11-30 16:00:02,456 ERROR probe: videos/broken.mp4: not a readable video (moov atom "
                    "not found); re-encode it\n")
    assert last_error(ours) == "videos/broken.mp4: not a readable video (moov atom not found); re-encode it"
    bug = tmp_path / "bug.log"
    bug.write_text("2026-11-30 16:00:02,456 ERROR infer: unexpected failure\nTraceback (most recent call last):\n"
                   '  File "x.py", line 1, in <module>\nZeroDivisionError: division by zero\n')
    assert last_error(bug) == "ZeroDivisionError: division by zero"
    (tmp_path / "quiet.log").write_text("2026-11-30 16:00:01,123 INFO fine_tune: epoch 3\n")
    assert last_error(tmp_path / "quiet.log") == "" and last_error(tmp_path / "absent.log") == ""


def test_every_video_gets_an_outcome(tmp_path):
    """Own failure; a video waiting on a failed shared job (pretraining); stale scores of a video
    that still had to run count as not done; without a shared failure, not run."""
    from videnhance.runs import KILLED, NOT_RUN, FailedJob, outcomes

    log = tmp_path / "probe.log"
    log.write_text("2026-11-30 16:00:02,456 ERROR probe: broken.mp4: not a readable video\n")
    failed = [FailedJob("probe", ("r/broken/meta.json",), (str(log),)),
              FailedJob("fine_tune", ("r/killed/model.pt",), (str(tmp_path / "fine_tune.log"),))]
    result = outcomes(["ok", "broken", "killed", "stale", "later"], "r", failed, pending={"broken", "killed", "stale",
                      "later"}, finished={"ok", "stale"})
    assert [(o.video, o.status, o.step) for o in result] == [
        ("ok", "done", ""), ("broken", "failed", "probe"), ("killed", "failed", "fine_tune"), ("stale", "not run", ""),
        ("later", "not run", "")]
    assert result[1].error == "broken.mp4: not a readable video" and result[2].error == KILLED
    assert result[3].error == NOT_RUN
    shared = [FailedJob("pretrain", ("r/pretrained/srresnet_x2.pt",), ())]
    waiting = outcomes(["ok", "waiting"], "r", shared, pending={"waiting"}, finished={"ok"})
    assert [(o.status, o.step) for o in waiting] == [("done", ""), ("failed", "pretrain")]
    assert [o.status for o in outcomes(["ok", "gone"], "r", [], pending=None, finished={"ok"})] == ["done", "not run"]


def test_a_report_after_a_failed_run_lists_every_video(tmp_path):
    """The finished videos are scored, the others listed with step and error; run.json (the
    complete-run record the workflow's report rule writes) is removed so the rule runs again."""
    from videnhance.runs import Outcome

    for video in "ab":
        (tmp_path / video).mkdir()
        _scores(tmp_path / video / "scores.csv", video, "ground truth", {"bicubic": 0, "milestone": 1, "fine_tuned": 2})
        (tmp_path / video / "verdict.json").write_text(json.dumps({"kept": "fine_tuned"}))
    out = tmp_path / "report"
    out.mkdir()
    (out / "run.json").write_text("{}")
    result = [Outcome("a", "done"), Outcome("bad|name", "failed", "probe", "bad.mp4: not a readable video",
                                            "results/bad/logs/probe.log"),
              Outcome("b", "done"), Outcome("later", "not run", error="not run: …")]
    summary = write_report([tmp_path / v / "scores.csv" for v in "ab"], [tmp_path / v / "verdict.json" for v in "ab"],
                           scales={"a": 2, "b": 2}, **_outputs(out), outcomes=result)
    assert not (out / "run.json").exists()
    assert list(summary.video) == ["a", "b", "overall", "bad|name", "later"]
    assert list(summary.status) == ["done", "done", "2 of 4 videos", "failed", "not run"]
    md = (out / "s.md").read_text()
    assert "## Videos that did not finish (2 of 4)" in md and "| overall (2 of 4 videos) |" in md
    assert "| bad\\|name | failed | probe | bad.mp4: not a readable video | results/bad/logs/probe.log |" in md
    table = pd.read_csv(out / "s.csv")
    assert table.set_index("video").loc["bad|name", "failed_step"] == "probe"
    page = (out / "s.html").read_text()
    failed = page.split("<table id='failed' class='sortable'>")[1].split("</table>")[0]
    # the failed video: its step, its one-line error and its log, linked relative to the page
    assert ('<tr class="failed"><td class="t">bad|name</td><td class="t">failed</td><td class="t">probe</td>'
            '<td class="t why">bad.mp4: not a readable video</td>') in failed
    log_href = Path(os.path.relpath(Path("results/bad/logs/probe.log").resolve(), out.resolve())).as_posix()
    assert f'<a href="{log_href}">probe.log</a>' in failed and "not run" in failed
    assert "2 of 4 videos did not finish" in page


def test_the_run_plot_summarises_many_videos(tmp_path):
    """Above BARS_UP_TO videos the gains are histograms, against frame size and motion scatters:
    one figure of a bounded size however many videos there are."""
    from videnhance.report import BARS_UP_TO, build_summary, plot_gains

    files = []
    for k in range(BARS_UP_TO + 20):
        video = f"v{k:03d}"
        (tmp_path / video).mkdir()
        _scores(tmp_path / video / "scores.csv", video, "ground truth", {"bicubic": 0, "milestone": 1 + k / 50,
                                                                         "fine_tuned": 1.5 + k / 40})
        (tmp_path / video / "meta.json").write_text(json.dumps({"width": 64 + k, "height": 48}))
        files.append(tmp_path / video / "scores.csv")
    summary = build_summary(files, {}, {}, metas={f.parent.name: f.parent / "meta.json" for f in files})
    assert summary.width.iloc[3] == 67 and np.isclose(summary.motion_px.iloc[0], float("nan"), equal_nan=True)
    plot_gains(summary, tmp_path / "g.png")
    few = tmp_path / "few.png"
    plot_gains(summary.iloc[:3], few)
    assert abs((tmp_path / "g.png").stat().st_size - few.stat().st_size) < 100_000


def test_a_verdict_round_trips_and_older_files_still_open(tmp_path):
    """verdict.json keeps its keys; a file from another version (unknown keys, missing ones) opens."""
    from videnhance.verdict import Verdict

    verdict = Verdict(kept="fine_tuned", reason="gained", gain_db=0.4, signals={"frame": {"gain_db": 0.4}}, steps=8)
    verdict.write(tmp_path / "v.json")
    written = json.loads((tmp_path / "v.json").read_text())
    assert written == {"kept": "fine_tuned", "reason": "gained", "seconds": 0.0, "steps": 8, "gain_db": 0.4,
                       "signals": {"frame": {"gain_db": 0.4}}}
    assert Verdict.read(tmp_path / "v.json") == verdict
    (tmp_path / "old.json").write_text(json.dumps({"kept": "base", "a_key_from_elsewhere": 1}))
    assert Verdict.read(tmp_path / "old.json") == Verdict(kept="base")
    with pytest.raises(ValueError, match="kept must be one of"):
        Verdict(kept="maybe")
