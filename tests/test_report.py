import json

import numpy as np
import pandas as pd

from videnhance.report import write_report


def _scores(path, video, protocol, offsets):
    rows = [{"video": video, "protocol": protocol, "frame": f, "method": m, "psnr_y": 30 + off + 0.1 * f,
             "ssim_y": 0.9, "psnr_rgb": 29 + off,
             "flicker": float("nan") if protocol != "ground truth" or f == 0 else 1 + off / 10}
            for f in range(4) for m, off in offsets.items()]
    pd.DataFrame(rows).to_csv(path, index=False)


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
                           {"a": 2, "b": 2, "c": 4}, out / "s.csv", out / "s.md", out / "f.png", out / "g.png")
    assert list(summary.video) == ["a", "b", "c", "overall", "overall"]
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
    assert (out / "f.png").read_bytes()[:4] == b"\x89PNG" and (out / "g.png").stat().st_size > 1000
