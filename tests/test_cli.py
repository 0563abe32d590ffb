import json
import logging
import tempfile

import pytest

from videnhance import cli
from videnhance.cache import base_model_path
from videnhance.config import load_config_file
from videnhance.defaults import AUTO_LR
from videnhance.io import probe
from videnhance.settings import full_video_settings

from .helpers import make_clip

TINY = """model: {channels: 8, blocks: 1}
pretrain: {steps: 4, steps_per_epoch: 2, batch_size: 4, patch: 16, copies: 1}
extract: {frames: 8}
degrade: {blur_sigma: [0.5, 0.5]}
fine_tune: {steps: 4, steps_per_epoch: 2, batch_size: 4, patch: 16, patience: 0}
"""


@pytest.mark.slow
def test_enhance_command_runs_the_whole_chain_on_one_file(tmp_path, monkeypatch):
    """`videnhance enhance` (no Snakemake): the default ×2 base (`checkpoint: auto`, the packaged
    SPAN network, fine-tuned at its rate), a near-scale fine-tune in two rounds, infer, and mux with
    the source's audio. (That the rounds' inputs use the configured degradation is
    tests/test_train.py's `test_each_round_trains_on_inputs_the_configured_chain_made`.)"""
    monkeypatch.setenv("VIDENHANCE_CACHE", str(tmp_path / "cache"))
    source = make_clip(tmp_path / "in.mp4", size=(48, 32), frames=12, audio=True)
    (tmp_path / "tiny.yaml").write_text(TINY)
    work = tmp_path / "work"
    assert cli.main(["enhance", str(source), "-o", str(tmp_path / "out.mkv"), "--scale", "2",
                     "-c", str(tmp_path / "tiny.yaml"), "--work", str(work)]) == 0
    out = probe(tmp_path / "out.mkv")
    assert (out.width, out.height, out.frames) == (96, 64, 12) and len(out.audio) == 1
    verdict = json.loads((work / "verdict.json").read_text())
    assert verdict["pairs"] == "near_scale" and verdict["rounds"] == 2 and verdict["steps"] == 4
    assert verdict["lr"] == AUTO_LR["span"] and not (tmp_path / "cache").exists()  # no pretraining
    assert (work / "side_by_side.mp4").exists()  # the reassemble step ran, with its frame-count check


@pytest.mark.slow
def test_enhance_twice_trains_the_base_once_and_leaves_no_work_folder(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("VIDENHANCE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tiny.yaml").write_text(TINY + "checkpoint: null\n")  # our own pretrained base, cached
    clips = [make_clip(tmp_path / f"{name}.mp4", size=(48, 32), frames=10, photo_name=photo) for name, photo in
             (("a", "coffee"), ("b", "astronaut"))]
    base = base_model_path(full_video_settings(load_config_file(tmp_path / "tiny.yaml", scale=2),
                                               {"id": "a", "mode": "enhance"}))
    with caplog.at_level(logging.INFO):
        assert cli.main(["enhance", str(clips[0]), "-o", str(tmp_path / "a.mkv"), "--scale", "2",
                         "-c", str(tmp_path / "tiny.yaml")]) == 0
    assert base.is_file() and "pretraining a ×2 base model" in caplog.text and "from a timed step" in caplog.text
    assert "[1/7] probe" in caplog.text and "[7/7] reassemble done" in caplog.text  # a line per stage
    trained_at = base.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert cli.main(["enhance", str(clips[1]), "-o", str(tmp_path / "b.mkv"), "--scale", "2",
                         "-c", str(tmp_path / "tiny.yaml")]) == 0
    assert "pretraining" not in caplog.text and f"base model from the cache: {base}" in caplog.text
    assert base.stat().st_mtime_ns == trained_at
    assert probe(tmp_path / "b.mkv").frames == 10
    # the work folders were removed after success (torch may keep its own inductor cache folder there)
    assert [p.name for p in (tmp_path / "tmp").iterdir() if p.name.startswith("videnhance")] == []
