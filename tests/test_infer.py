from fractions import Fraction

import numpy as np
import torch

from videnhance.infer import enhance_video, run_model
from videnhance.io import LOSSLESS, FrameReader, probe
from videnhance.models import SRResNet

from .conftest import make_clip


def _random_model(scale=2):
    torch.manual_seed(0)
    model = SRResNet(scale=scale, channels=8, blocks=2)
    torch.nn.init.normal_(model.tail.weight, std=0.05)
    return model.eval()


def test_tiled_equals_whole_frame():
    frames = np.random.default_rng(0).integers(0, 256, (2, 40, 52, 3), dtype=np.uint8)
    model = _random_model()
    whole = run_model(model, frames)
    tiled = run_model(model, frames, tile=16, overlap=8)
    # the receptive field (2 blocks × 2 convs + head/body/up/tail ≈ 8 px) fits in the overlap
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1
    assert whole.shape == (2, 80, 104, 3)


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
