"""The temporal model: it starts as the single-frame model, its alignment finds known motion, its
streaming inference equals in-memory windows, and synthetic motion clips are what they claim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videnhance.degrade import DegradeChain
from videnhance.models import SRResNet
from videnhance.motion import motion_clip
from videnhance.settings import Motion
from videnhance.temporal import TemporalSR, dis_flow, warp
from videnhance.tensors import frames_to_tensor

from .helpers import photo


def _small(name: str = "astronaut", size: int = 96) -> torch.Tensor:
    image = frames_to_tensor(photo(name)[None])
    return F.interpolate(image, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def _trained_single(scale: int = 2) -> SRResNet:
    torch.manual_seed(0)
    single = SRResNet(scale, 8, 2)
    for p in single.parameters():  # non-zero everywhere, as after training
        torch.nn.init.normal_(p, std=0.05)
    return single


@pytest.mark.parametrize("align", ["dis", "none"])
def test_untrained_temporal_model_is_exactly_the_single_frame_model(align):
    single = _trained_single()
    model = TemporalSR(2, 8, 2, radius=1, align=align, fuse_channels=8, fuse_blocks=2)
    model.load_single(single)
    centre = _small()
    window = torch.stack([torch.roll(centre, 1, -1), centre, torch.roll(centre, -2, -2)], 1)
    with torch.no_grad():
        assert torch.equal(model(window), single(centre))
    with pytest.raises(ValueError, match=r"\(n, 3, 3, h, w\) windows"):
        model(centre)


@pytest.mark.parametrize("shift", [(0.5, 0.25), (-1.75, 0.6)])
def test_dis_alignment_recovers_a_known_sub_pixel_translation(shift):
    ref = _small()
    s = torch.tensor(shift, dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, *ref.shape[-2:])
    moved = warp(ref, -s)  # moved(p) = ref(p - s), so the flow from ref to moved is +s
    flow = dis_flow(ref, moved)[..., 12:-12, 12:-12]  # away from the borders the warp repeated
    assert flow[:, 0].mean().item() == pytest.approx(shift[0], abs=0.05)
    assert flow[:, 1].mean().item() == pytest.approx(shift[1], abs=0.05)
    realigned = warp(moved, dis_flow(ref, moved))
    inner = (slice(None), slice(None), slice(12, -12), slice(12, -12))
    assert (realigned - ref)[inner].abs().mean() < 0.8 * (moved - ref)[inner].abs().mean()


def test_motion_clip_centre_is_the_photo_and_neighbours_move():
    motion = Motion(shift=2.0, zoom=0.01, rotate=0.5, warp=0.3, occlusion=0.0)
    chain = DegradeChain.defaults()
    picture = photo("coffee")[:96, :128]
    lr, hr = motion_clip(picture, 2, 1, chain, np.random.default_rng(1), motion)
    assert lr.shape == (3, 48, 64, 3) and hr.shape == (96, 128, 3)
    assert np.array_equal(hr, picture)  # no occlusion: the ground truth is the photo itself
    # the default chain (bicubic only) draws nothing: the centre input is the photo downscaled
    assert np.array_equal(lr[1], chain.apply(picture, 2, np.random.default_rng(0)))
    assert np.abs(lr[0].astype(int) - lr[1]).mean() > 1 and np.abs(lr[2].astype(int) - lr[1]).mean() > 1
    again, _ = motion_clip(picture, 2, 1, chain, np.random.default_rng(1), motion)
    assert np.array_equal(lr, again)  # seeded


def _temporal(align: str = "none", seed: int = 0) -> TemporalSR:
    """A temporal model whose fusion branch is not zero, so the neighbours change the output."""
    torch.manual_seed(seed)
    model = TemporalSR(2, 8, 1, radius=1, align=align, fuse_channels=8, fuse_blocks=1)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return model.eval()


def _windows(frames: np.ndarray, radius: int) -> np.ndarray:
    """Every frame's window, the edge frames repeated beyond the ends (what streaming must match)."""
    n = len(frames)
    return np.stack([frames[np.clip(np.arange(i - radius, i + radius + 1), 0, n - 1)] for i in range(n)])


@pytest.mark.parametrize(("frames", "batch_size"), [(7, 2), (5, 4), (1, 3), (6, 1)])
def test_streaming_inference_equals_in_memory_windows_at_the_edges(tmp_path, frames, batch_size):
    from videnhance.infer import enhance_video, run_model, with_context
    from videnhance.io import LOSSLESS

    from .helpers import make_clip, read_frames

    source = make_clip(tmp_path / "in.mkv", size=(40, 32), frames=frames, settings=LOSSLESS)
    model = _temporal()
    stats = enhance_video(model, source, tmp_path / "out.mkv", 2, LOSSLESS, device="cpu", batch_size=batch_size,
                          progress=False)
    assert stats["frames"] == frames
    streamed = read_frames(tmp_path / "out.mkv")
    expected = run_model(model, _windows(read_frames(source), 1), batch_size=batch_size)
    assert np.array_equal(streamed, expected)
    # the context blocks: every frame is a centre exactly once, in order
    chunks = [np.arange(i, min(i + batch_size, frames)) for i in range(0, frames, batch_size)]
    blocks = list(with_context(iter(chunks), 2))
    centres = np.concatenate([b[2:-2] for b in blocks])
    assert np.array_equal(centres, np.arange(frames))
    assert np.array_equal(blocks[0][:2], [0, 0]) and np.array_equal(blocks[-1][-2:], [frames - 1, frames - 1])


def test_tiles_and_out_of_memory_retries_work_on_windows():
    from videnhance.infer import InferPlan, run_model

    model = _temporal()
    frames = (np.random.default_rng(0).random((4, 3, 40, 48, 3)) * 255).astype(np.uint8)
    whole = run_model(model, frames, batch_size=4)
    tiled = run_model(model, frames, batch_size=2, tile=24, overlap=8)
    assert tiled.shape == whole.shape == (4, 80, 96, 3)
    # the fusion branch's receptive field is complete inside the overlap: the seams do not show
    assert np.abs(tiled.astype(int) - whole).max() <= 1
    plan = InferPlan(4, 0, 8)
    calls = {"n": 0}
    forward = model.forward

    def failing_once(x):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(x)

    model.forward = failing_once
    retried = run_model(model, frames, plan=plan)
    assert plan.oom_events == 1 and np.array_equal(retried, whole)


@pytest.mark.slow
def test_the_workflow_runs_the_temporal_model_end_to_end(tmp_path):
    """The real Snakemake workflow with `model.arch: temporal`: pretraining in two stages, windows
    sampled and degraded, fine-tuning, streaming inference, scores; every frame delivered, audio
    kept, and the ground truth upstream of no model except through degrade_gt."""
    import json

    import pandas as pd

    from videnhance.io import probe
    from videnhance.models import load_model

    from .helpers import make_clip
    from .workflow_helpers import TINY_CONFIG, assert_ground_truth_only_through_degrade_gt, snakemake, write_workdir

    rows = [("gt", "videos/gt.mp4", "benchmark"), ("own", "videos/own.mp4", "enhance")]
    (tmp_path / "videos").mkdir()
    make_clip(tmp_path / "videos" / "gt.mp4", size=(64, 48), frames=12, audio=True)
    make_clip(tmp_path / "videos" / "own.mp4", size=(40, 32), frames=9, photo_name="astronaut")
    config = {**TINY_CONFIG, "model": {"arch": "temporal", "channels": 8, "blocks": 1, "fuse_channels": 8,
                                       "fuse_blocks": 1},
              "pretrain": {**TINY_CONFIG["pretrain"], "temporal_steps": 4}}
    write_workdir(tmp_path, rows, config)
    snakemake(tmp_path, "--cores", "2", "--resources", "gpu=1")
    base = load_model(tmp_path / "results" / "base" / "x2.pt")
    assert base.arch.name == "temporal" and base.frames_in == 3
    history = pd.read_csv(tmp_path / "results" / "pretrained" / "temporal_x2.history.csv")
    assert list(history["stage"].unique()) == ["single", "temporal"]
    for vid, _, mode in rows:
        out, src = probe(tmp_path / "results" / vid / "enhanced.mkv"), probe(tmp_path / "videos" / f"{vid}.mp4")
        factor = 1 if mode == "benchmark" else 2  # benchmark mode enhances the ground truth shrunk ×2
        assert (out.width, out.height, out.frames, len(out.audio)) == (factor * src.width, factor * src.height,
                                                                       src.frames, len(src.audio))
        scores = pd.read_csv(tmp_path / "results" / vid / "scores.csv")
        # the temporal base's own single-frame network is scored too (report row "single-frame milestone")
        assert set(scores.method) == {"bicubic", "single_frame", "milestone", "fine_tuned"}
        assert scores.psnr_y.notna().all()
        assert json.loads((tmp_path / "results" / vid / "verdict.json").read_text())["kept"] in ("base", "fine_tuned")
    assert_ground_truth_only_through_degrade_gt(tmp_path, rows)
    summary = pd.read_csv(tmp_path / "results" / "report" / "summary.csv").set_index("video")
    assert np.allclose(summary.d_milestone_vs_single_frame_db,
                       summary.milestone_psnr_y - summary.single_frame_psnr_y, atol=2e-4)  # 4 decimals in the csv
    assert "single-frame milestone Y-PSNR / SSIM" in (tmp_path / "results" / "report" / "summary.md").read_text()


def _window_pairs(tmp_path, n: int = 6) -> None:
    """A pairs file as `degrade` writes it for a 3-frame model: degraded windows → centre frames."""
    from videnhance.samples import save_pairs

    chain = DegradeChain.defaults()
    picture = photo("coffee")
    windows = np.stack([np.stack([np.roll(picture[i * 30 : i * 30 + 64, :96], k, axis=1) for k in (-1, 0, 1)])
                        for i in range(n)])
    lr = np.stack([chain.apply_window(w, 2, np.random.default_rng(0)) for w in windows])
    is_val = np.arange(n) >= n - 2
    save_pairs(tmp_path / "pairs.npz", lr, windows[:, 1], is_val, np.arange(n), hr_window=windows)


@pytest.mark.parametrize("wrecked", [True, False])
def test_the_guard_chooses_among_single_frame_base_temporal_base_and_fine_tuned(tmp_path, wrecked):
    """A forced-bad fine-tune (absurd learning rate) is undone; then the base's single-frame network
    is delivered only where it beats the temporal base (a wrecked fusion branch), not where the
    temporal base is as good (an untrained one equals it)."""
    from videnhance.models import load_model, save_model
    from videnhance.settings import Degrade, FineTune
    from videnhance.training.fine_tune import fine_tune

    _window_pairs(tmp_path)
    kwargs = {"channels": 8, "blocks": 2, "radius": 1, "align": "none", "fuse_channels": 8, "fuse_blocks": 1}
    base = TemporalSR(2, **kwargs)
    base.load_single(_trained_single())
    if wrecked:
        torch.nn.init.normal_(base.fuse_tail.weight, std=0.5)
    save_model(base, tmp_path / "base.pt", "temporal", 2, kwargs)
    cfg = FineTune.defaults(steps=4, steps_per_epoch=2, batch_size=2, patch=16, lr=5.0, rounds=2, patience=1)
    verdict = fine_tune(tmp_path / "pairs.npz", tmp_path / "base.pt", tmp_path / "m.pt", tmp_path / "h.csv",
                        tmp_path / "v.json", cfg, "cpu", degrade_cfg=Degrade.defaults())
    delivered = load_model(tmp_path / "m.pt")
    if wrecked:
        assert verdict.kept == "single_frame" and "single-frame network beats" in verdict.reason
        assert delivered.arch.name == "srresnet" and delivered.frames_in == 1
        expected = base.single.state_dict()
    else:
        assert verdict.kept == "base" and "Then: the base's single-frame network did not beat the base model" in \
            verdict.reason
        assert delivered.arch.name == "temporal"
        expected = base.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in delivered.module.state_dict().items())


def test_motion_batches_cut_fresh_aligned_windows_and_repeat_with_the_seed():
    from videnhance.motion import MotionBatches

    motion = Motion(shift=2.0, zoom=0.01, rotate=0.5, warp=0.3, occlusion=0.5)
    photos = [photo("coffee"), photo("astronaut")[:300, :400]]

    def batches(seed):
        return list(MotionBatches(photos, 2, 1, DegradeChain.defaults(), motion, 16, 4, 2, seed=seed))

    first = batches(0)
    assert len(first) == 2
    lr, hr = first[0]
    assert lr.shape == (4, 3, 3, 16, 16) and hr.shape == (4, 3, 32, 32)
    assert lr.dtype == hr.dtype == torch.float32 and 0 <= float(lr.min()) and float(hr.max()) <= 1
    # the centre input is the ground truth downscaled (the default chain draws nothing)
    down = F.interpolate(hr, scale_factor=0.5, mode="bicubic", antialias=True, align_corners=False)
    assert (down - lr[:, 1]).abs().mean() < 0.02 < (lr[:, 0] - lr[:, 1]).abs().mean()
    again = batches(0)
    assert all(torch.equal(a, b) for x, y in zip(first, again, strict=True) for a, b in zip(x, y, strict=True))
    assert not torch.equal(first[0][0], batches(1)[0][0])


def test_the_pretraining_estimate_times_both_stages_of_a_temporal_model():
    from videnhance.cache import pretrain_seconds
    from videnhance.config import validate_config
    from videnhance.settings import Settings

    tiny = {"channels": 8, "blocks": 1, "fuse_channels": 8, "fuse_blocks": 1}
    pretrain = {"steps": 10, "batch_size": 2, "patch": 16}

    def estimate(arch, **more):
        cfg = validate_config({"model": {"arch": arch, **tiny}, "pretrain": {**pretrain, **more}, "device": "cpu"})
        return pretrain_seconds(Settings.from_dict(cfg))

    single = estimate("srresnet")
    assert 0 < single < estimate("temporal", temporal_steps=1000)  # a thousand steps more cannot be cheaper
