import csv
import io
import math
from fractions import Fraction

import numpy as np
import pytest

from videnhance import bench
from videnhance.io import LOSSLESS, FrameReader, probe

from .helpers import make_clip

TINY = (64, 48)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_rows(path, benchmark, measures):
    rows = _read_csv(path)
    with open(path) as f:
        assert f.readline().strip().split(",") == list(bench.COLUMNS)
    got = [r for r in rows if r["benchmark"] == benchmark]
    assert [r["measure"] for r in got] == measures
    for r in got:
        fps = float(r["fps"])
        assert math.isfinite(fps) and fps > 0, r
        assert int(r["frames"]) > 0 and float(r["seconds"]) > 0
        assert float(r["peak_rss_mb"]) > 0
    return got


@pytest.mark.slow
def test_bench_io_prints_ratio_and_appends_csv(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    bench.main(["io", "--size", "64x48", "--seconds", "1", "--csv", str(out)])
    printed = capsys.readouterr().out
    ratio_lines = [line for line in printed.splitlines() if line.startswith("passthrough_ratio: ")]
    assert len(ratio_lines) == 1 and float(ratio_lines[0].split(": ")[1]) > 0
    measures = ["ffmpeg_decode", "ffmpeg_decode_rgb24", "ffmpeg_transcode", "ffmpeg_transcode_rgb24",
                "ffmpeg_encode_rgb24", "decode", "encode", "passthrough", "passthrough_yuv420p",
                "passthrough_model_rgb24", "passthrough_model_yuv420p", "pipe_rgb24", "pipe_yuv420p"]
    rows = _check_rows(out, "io", measures)
    assert all(r["size"] == "64x48" and int(r["frames"]) == 30 for r in rows)
    by_name = {r["measure"]: r for r in rows}
    for name in ("passthrough", "passthrough_yuv420p", "passthrough_model_rgb24", "passthrough_model_yuv420p"):
        assert float(by_name[name]["ratio"]) == pytest.approx(
            float(by_name[name]["fps"]) / float(by_name["ffmpeg_transcode"]["fps"]), rel=1e-3)
    for fmt in ("rgb24", "yuv420p"):  # the identity model's output went through the real inference path
        assert f"passthrough_model_{fmt}_ratio: " in printed
    assert "passthrough_yuv420p_ratio: " in printed
    # a second run appends rows under the one header
    bench.write_csv(bench.bench_io(TINY, 0.5, isolate=False, out=io.StringIO()), out)
    assert len(_read_csv(out)) == 2 * len(measures)
    assert sum(1 for line in open(out) if line.startswith("benchmark,")) == 1


def test_bench_model_is_time_bounded_with_at_least_one_frame(tmp_path):
    out = tmp_path / "m.csv"
    bench.main(["model", "--size", "64x48", "--scale", "2", "--seconds", "0", "--device", "cpu", "--model", "tiny",
                "--csv", str(out)])
    (row,) = _check_rows(out, "model", ["tiny_fp32_b1"])
    assert (row["size"], row["scale"], row["device"], row["peak_gpu_mb"]) == ("64x48", "2", "cpu", "")
    assert int(row["frames"]) == 1


@pytest.mark.slow
def test_bench_infer_compares_with_every_stage(tmp_path, capsys):
    out = tmp_path / "i.csv"
    rows = bench.bench_infer(TINY, scale=2, seconds=0.5, device="cpu", model="tiny", out=io.StringIO())
    bench.write_csv(rows, out)
    got = _check_rows(out, "infer", ["enhance_video", "stage_model", "stage_decode", "stage_encode"])
    assert int(got[0]["frames"]) == 15 and got[-1]["size"] == "128x96"
    slowest = min(float(r["fps"]) for r in got[1:])
    assert float(got[0]["ratio"]) == pytest.approx(float(got[0]["fps"]) / slowest, rel=1e-3)


@pytest.mark.slow
def test_bench_memory_runs_short_and_long_clip(tmp_path):
    text = io.StringIO()
    rows = bench.bench_memory(TINY, seconds=0.3, device="cpu", model="tiny", out=text)
    assert [r.frames for r in rows] == [9, 90]
    assert rows[1].ratio == pytest.approx(rows[1].peak_rss_mb / rows[0].peak_rss_mb)
    assert "memory_ratio: " in text.getvalue()


def test_register_adds_the_bench_subcommand():
    import argparse

    parser = argparse.ArgumentParser(prog="videnhance")
    bench.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", "infer", "--size", "320x180", "--scale", "2", "--seconds", "3"])
    assert args.func is bench.run_bench and args.bench is bench.cli._cmd_infer
    assert (args.size, args.scale, args.seconds, args.device) == ((320, 180), 2, 3.0, "auto")
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "io", "--size", "wide"])


def test_passthrough_is_frame_exact_with_the_lossless_codec(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", size=(40, 30), frames=17, fps=Fraction(30000, 1001))
    out = tmp_path / "out.mkv"
    assert bench.passthrough(clip, out, LOSSLESS, batch_size=4) == 17
    meta = probe(out)
    assert (meta.frames, meta.width, meta.height, meta.fps) == (17, 40, 30, Fraction(30000, 1001))
    source = np.concatenate(list(FrameReader(clip, batch_size=5)))
    copied = np.concatenate(list(FrameReader(out, batch_size=3)))
    np.testing.assert_array_equal(copied, source)


@pytest.mark.slow
def test_bench_finetune_times_the_pipeline_step(tmp_path):
    """`bench finetune` runs extract → degrade → fine_tune on a generated clip and reports the
    fine-tune's wall time and the training's iterations/s (as the row's frames = steps)."""
    config = {"model": {"channels": 8, "blocks": 1}, "extract": {"frames": 6},
              "fine_tune": {"steps": 4, "steps_per_epoch": 2, "batch_size": 2, "patch": 16, "rounds": 1}}
    printed = io.StringIO()
    (row,) = bench.bench_finetune((64, 48), 0.5, device="cpu", config=config, isolate=False, out=printed)
    assert (row.benchmark, row.measure, row.size, row.scale, row.device) == ("finetune", "fine_tune_near_scale",
                                                                             "64x48", 2, "cpu")
    assert row.frames == 4 and row.seconds > 0 and "srresnet 8x1" in row.note
    text = printed.getvalue()
    assert float(text.split("it_per_s: ")[1].split()[0]) > 0 and "fine_tune_seconds: " in text


@pytest.mark.slow
def test_bench_infer_stages_use_the_transport_of_the_end_to_end_run(tmp_path):
    """With yuv420p frames end to end, the decoder and encoder stages are timed moving yuv420p too,
    so the ratio compares like with like."""
    text = io.StringIO()
    rows = bench.bench_infer(TINY, scale=2, seconds=0.3, device="cpu", model="tiny", out=text, transport="yuv420p")
    by_name = {r.measure: r for r in rows}
    assert "transport: yuv420p→yuv420p" in text.getvalue()
    assert by_name["stage_decode"].note.endswith("frames as yuv420p")
    assert by_name["stage_encode"].note.endswith("frames as yuv420p") and by_name["stage_encode"].frames == 9
