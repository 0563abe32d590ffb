import json

from videnhance import cli, train
from videnhance.io import probe

from .conftest import make_clip

TINY = """model: {channels: 8, blocks: 1}
pretrain: {steps: 4, steps_per_epoch: 2, batch_size: 4, patch: 16, copies: 1}
extract: {frames: 8}
degrade: {blur_sigma: [0.5, 0.5]}
fine_tune: {steps: 4, steps_per_epoch: 2, batch_size: 4, patch: 16}
"""


def test_enhance_command_runs_the_whole_chain_on_one_file(tmp_path, monkeypatch):
    """`videnhance enhance` (no Snakemake): pretrain, near-scale fine-tune whose inputs use the
    configured degradation (blur 0.5 here), infer, and mux with the source's audio."""
    chains = []

    def recording(teacher, frames, scale, chain, *args, **kwargs):
        chains.append(chain)
        return near_scale_pairs(teacher, frames, scale, chain, *args, **kwargs)

    near_scale_pairs = train.near_scale_pairs
    monkeypatch.setattr(train, "near_scale_pairs", recording)
    source = make_clip(tmp_path / "in.mp4", size=(48, 32), frames=12, audio=True)
    (tmp_path / "tiny.yaml").write_text(TINY)
    work = tmp_path / "work"
    assert cli.main(["enhance", str(source), "-o", str(tmp_path / "out.mkv"), "--scale", "2",
                     "-c", str(tmp_path / "tiny.yaml"), "--work", str(work)]) == 0
    out = probe(tmp_path / "out.mkv")
    assert (out.width, out.height, out.frames) == (96, 64, 12) and len(out.audio) == 1
    verdict = json.loads((work / "verdict.json").read_text())
    assert verdict["pairs"] == "near_scale" and verdict["rounds"] == 2 and verdict["steps"] == 4
    assert len(chains) == 2 and all(c.blur_sigma == [0.5, 0.5] for c in chains)  # one per round, as configured
