"""The same checks on every device torch sees: CPU always, CUDA where there is one (CI has none;
`tools/gpu_check.sh` runs this file on a GPU machine). Each compares the device's result with a
CPU fp32 reference, so the CUDA path (bf16 autocast, channels_last, pinned uint8 uploads, the
yuv420p transport, the batch size from free memory) is held to the same frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from videnhance.infer import enhance_video, run_model
from videnhance.io import EncodeSettings, FrameReader
from videnhance.models import SRResNet
from videnhance.train import fine_tune

from .conftest import make_clip, photo
from .test_train import _pairs, _tiny_cfg

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
LEVELS = {"cpu": 1.0, "cuda": 2.0}  # mean |difference| in 8-bit levels allowed against the CPU fp32 reference


def textured_model(scale: int = 2) -> SRResNet:
    """A small net whose output is not bicubic (random tail), so the comparison sees the network."""
    torch.manual_seed(0)
    model = SRResNet(scale, 16, 2)
    torch.nn.init.normal_(model.tail.weight, std=1e-2)
    return model.eval()


def frames(path) -> np.ndarray:
    return np.concatenate(list(FrameReader(path))).astype(int)


@pytest.mark.parametrize("device", DEVICES)
def test_run_model_matches_cpu_fp32(device):
    model = textured_model()
    lr = np.ascontiguousarray(photo("astronaut")[::8, ::8][None].repeat(3, axis=0))  # 3 frames of 64x64
    reference = run_model(model, lr, device="cpu", batch_size=2).astype(int)
    out = run_model(model, lr, device=device, batch_size=2).astype(int)
    assert out.shape == reference.shape == (3, 128, 128, 3)
    assert np.abs(out - reference).mean() < LEVELS[device] / 2


@pytest.mark.parametrize("device", DEVICES)
def test_enhance_video_with_each_transport_matches_cpu_rgb24(tmp_path, device):
    """Every frame, in order, close to the CPU rgb24 reference, for both transports and
    `batch_size: auto` (from free memory on CUDA)."""
    source = make_clip(tmp_path / "clip.mkv", size=(64, 48), frames=10)
    model = textured_model()
    reference_path = tmp_path / "reference.mkv"
    enhance_video(model, source, reference_path, 2, EncodeSettings(crf=0), device="cpu", batch_size=4,
                  progress=False, transport="rgb24")
    reference = frames(reference_path)
    for transport in ("rgb24", "yuv420p"):
        out_path = tmp_path / f"{device}_{transport}.mkv"
        stats = enhance_video(model, source, out_path, 2, EncodeSettings(crf=0), device=device, batch_size="auto",
                              progress=False, transport=transport)
        assert stats["frames"] == 10 and stats["device"].startswith(device)
        assert stats["transport"] == f"{transport}→{transport}"
        out = frames(out_path)
        assert out.shape == reference.shape == (10, 96, 128, 3)
        per_frame = np.abs(out - reference).mean(axis=(1, 2, 3))
        assert per_frame.max() < LEVELS[device] + (1.0 if transport == "yuv420p" else 0.0), per_frame


@pytest.mark.parametrize("device", DEVICES)
def test_fine_tune_runs_and_reports_speed(tmp_path, device):
    """fastai fine-tuning on the device (bf16 mixed precision on CUDA): it trains, keeps a model
    and reports steps, seconds and iterations/s in the verdict."""
    _pairs(tmp_path)
    cfg = _tiny_cfg(lr=1e-3)["fine_tune"]
    verdict = fine_tune(tmp_path / "pairs.npz", tmp_path / "base.pt", tmp_path / "m.pt", tmp_path / "h.csv",
                        tmp_path / "v.json", {**cfg, "min_gain_db": -100.0, "guard_z": 0.0}, device,
                        degrade_cfg=_tiny_cfg()["degrade"])
    assert verdict["kept"] == "fine_tuned" and verdict["steps"] > 0
    assert verdict["seconds"] > 0 and verdict["it_per_s"] > 0
    assert json.loads((tmp_path / "v.json").read_text())["device"].startswith(device)
