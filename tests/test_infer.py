import logging
from fractions import Fraction

import numpy as np
import pytest
import torch

from videnhance.infer import (
    CPU_BATCH,
    InferPlan,
    _tiled,
    auto_batch_size,
    batch_from_memory,
    enhance_video,
    is_out_of_memory,
    prepare_model,
    run_model,
)
from videnhance.io import LOSSLESS, FrameReader, probe
from videnhance.models import SRResNet

from .helpers import make_clip


def _random_model(scale=2):
    torch.manual_seed(0)
    model = SRResNet(scale=scale, channels=8, blocks=2)
    torch.nn.init.normal_(model.tail.weight, std=0.05)
    return model.eval()


def test_bicubic_baseline_is_model_free():
    frames = np.full((1, 8, 8, 3), 128, np.uint8)
    assert np.array_equal(run_model(None, frames, (16, 16)), np.full((1, 16, 16, 3), 128, np.uint8))


def test_enhance_video_streams_every_frame(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", size=(32, 24), frames=23, fps=Fraction(30000, 1001))
    out = tmp_path / "out.mkv"
    stats = enhance_video(_random_model(), clip, out, 2, LOSSLESS, device="cpu", batch_size=4)
    meta = probe(out)
    assert stats["frames"] == 23 == meta.frames
    assert (meta.width, meta.height) == (64, 48) and meta.fps == Fraction(30000, 1001)
    first = next(iter(FrameReader(clip, batch_size=4)))
    expected = run_model(_random_model(), first)
    got = next(iter(FrameReader(out, batch_size=4)))
    np.testing.assert_array_equal(got, expected)  # what was encoded is what the model made (lossless)


class _OOMAbove(torch.nn.Module):
    """Wraps a model and fails like a full GPU when one call gets more than `limit` input values."""

    def __init__(self, inner, limit, error=None):
        super().__init__()
        self.inner, self.limit, self.scale = inner, limit, inner.scale
        self.error = error or (lambda: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        if x.numel() > self.limit:
            raise self.error()
        return self.inner(x)


# tiled against whole-frame output of a random 2-block srresnet (receptive field ≈ 8 px, inside every
# overlap): (what is compared, scale, tile, overlap, largest difference allowed)
TILED = [
    pytest.param("uint8 frames", 2, 16, 8, 1, marks=pytest.mark.slow),  # run_model: 8-bit rounding may differ by one
    ("float output", 2, 24, 8, 1e-3),  # _tiled on the tensors, before rounding
    ("float output", 4, 24, 8, 1e-3),
]


@pytest.mark.parametrize(("what", "scale", "tile", "overlap", "tolerance"), TILED,
                         ids=["uint8-x2", "float-x2", "float-x4"])
def test_tiled_equals_whole_frame(what, scale, tile, overlap, tolerance):
    model = _random_model(scale)
    if what == "uint8 frames":
        frames = np.random.default_rng(0).integers(0, 256, (2, 40, 52, 3), dtype=np.uint8)
        whole, tiled = run_model(model, frames), run_model(model, frames, tile=tile, overlap=overlap)
        assert whole.shape == tiled.shape == (2, 40 * scale, 52 * scale, 3)
        assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= tolerance
    else:
        torch.manual_seed(1)
        x = torch.rand(2, 3, 40, 52)
        with torch.inference_mode():
            whole, tiled = model(x), _tiled(model, x, scale, tile=tile, overlap=overlap)
        assert tiled.shape == whole.shape == (2, 3, 40 * scale, 52 * scale)
        assert (tiled - whole).abs().max().item() < tolerance


def test_is_out_of_memory_recognises_cuda_errors():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


@pytest.mark.parametrize("error", [None, lambda: RuntimeError("CUDA out of memory (injected)")])
def test_out_of_memory_splits_the_batch_then_tiles(caplog, error):
    frames = np.random.default_rng(0).integers(0, 256, (5, 40, 52, 3), dtype=np.uint8)
    inner = _random_model()
    expected = run_model(inner, frames)
    model = _OOMAbove(inner, limit=3 * 32 * 32, error=error)  # a whole 40×52 frame does not fit, 32 px tiles do
    plan = InferPlan(batch_size=4, overlap=8)
    with caplog.at_level(logging.WARNING, logger="videnhance.infer"):
        got = run_model(model, frames, plan=plan)
    assert got.shape == expected.shape == (5, 80, 104, 3)  # no frame dropped or repeated
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert (plan.batch_size, plan.tile) == (1, 32)
    assert [s[0] for s in model.shapes[:3]] == [4, 2, 1]  # halved down to one frame before tiling
    assert max(s[2] * s[3] for s in model.shapes if np.prod(s) <= model.limit) <= 32 * 32
    assert "retrying with batches of 2" in caplog.text and "32 px tiles" in caplog.text


def test_out_of_memory_gives_up_when_tiles_cannot_shrink_further():
    frames = np.zeros((1, 40, 52, 3), np.uint8)
    model = _OOMAbove(_random_model(), limit=10)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_model(model, frames, overlap=8)


def test_other_errors_are_not_retried():
    model = _OOMAbove(_random_model(), limit=0, error=lambda: RuntimeError("cuDNN error: bad param"))
    with pytest.raises(RuntimeError, match="bad param"):
        run_model(model, np.zeros((3, 20, 20, 3), np.uint8))
    assert len(model.shapes) == 1


def test_enhance_video_survives_out_of_memory_with_every_frame(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", size=(32, 24), frames=23, fps=Fraction(25))
    out = tmp_path / "out.mkv"
    inner = _random_model()
    model = _OOMAbove(inner, limit=3 * 24 * 24)  # whole 32×24 frames fail, 24 px tiles fit
    stats = enhance_video(model, clip, out, 2, LOSSLESS, device="cpu", batch_size=4, overlap=8, progress=False)
    assert stats["frames"] == 23 == probe(clip).frames == probe(out).frames
    assert stats["oom_events"] >= 3 and (stats["batch_size"], stats["tile"]) == (1, 24)
    source = np.concatenate(list(FrameReader(clip, batch_size=8)))
    got = np.concatenate(list(FrameReader(out, batch_size=8)))
    expected = run_model(inner, source)
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_cpu_allocator_tuning_is_idempotent_and_can_be_turned_off(monkeypatch):
    from videnhance import infer

    monkeypatch.setattr(infer, "_ALLOCATOR_TUNED", None)
    monkeypatch.setenv("VIDENHANCE_MALLOC_TUNE", "0")
    assert infer.tune_cpu_allocator() is False
    monkeypatch.setattr(infer, "_ALLOCATOR_TUNED", None)
    monkeypatch.delenv("VIDENHANCE_MALLOC_TUNE")
    first = infer.tune_cpu_allocator()
    assert isinstance(first, bool) and infer.tune_cpu_allocator() is first


def test_batch_size_from_free_memory():
    gib = 1 << 30
    assert batch_from_memory(10 * gib, gib) == 6  # 60% of the free memory
    assert batch_from_memory(100 * gib, gib // 100) == 32  # capped
    assert batch_from_memory(gib, 2 * gib) == 1  # at least one frame (tiles take over if it fails)
    assert batch_from_memory(gib, 0) == 32
    assert auto_batch_size(_random_model(), 64, 64, torch.device("cpu"), 2) == CPU_BATCH


@pytest.mark.slow
def test_compiled_model_matches_eager_with_one_graph_for_a_short_last_batch(tmp_path):
    """torch.compile (inductor, CPU here): same frames as eager, and the short last batch is padded
    so the video needs one graph (a recompile would cost as much as the first compile)."""
    import torch._dynamo

    clip = make_clip(tmp_path / "in.mp4", size=(32, 24), frames=7)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    stats = enhance_video(_random_model(), clip, tmp_path / "c.mkv", 2, LOSSLESS, device="cpu", batch_size=4,
                          compile=True, progress=False)
    assert stats["frames"] == 7 and stats["compiled"]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    enhance_video(_random_model(), clip, tmp_path / "e.mkv", 2, LOSSLESS, device="cpu", batch_size=4, progress=False)
    compiled = np.concatenate(list(FrameReader(tmp_path / "c.mkv", batch_size=8)))
    eager = np.concatenate(list(FrameReader(tmp_path / "e.mkv", batch_size=8)))
    assert compiled.shape == eager.shape == (7, 48, 64, 3)
    assert np.abs(compiled.astype(int) - eager.astype(int)).max() <= 1  # float reassociation, after rounding
    assert prepare_model(None, torch.device("cpu"), compile=True) is None
