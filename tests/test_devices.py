"""The same checks on every device torch sees: CPU always, CUDA where there is one (CI has none;
`tools/gpu_check.sh` runs this file on a GPU machine). Each compares the device's result with a
CPU fp32 reference, so the CUDA path (bf16 autocast, channels_last, pinned uint8 uploads, the
yuv420p transport, the batch size from free memory) is held to the same frames."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from videnhance.infer import enhance_video, run_model
from videnhance.io import LOSSLESS, EncodeSettings
from videnhance.models import SRResNet
from videnhance.training.fine_tune import fine_tune

from .helpers import make_clip, photo, read_frames, tiny_settings, video_pairs

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def textured_model(scale: int = 2) -> SRResNet:
    """A small net whose output is not bicubic (random tail), so the comparison sees the network."""
    torch.manual_seed(0)
    model = SRResNet(scale, 16, 2)
    torch.nn.init.normal_(model.tail.weight, std=1e-2)
    return model.eval()


@pytest.mark.parametrize("device", DEVICES)
def test_run_model_matches_float64(device):
    """uint8 frames through `run_model` (batches, channels_last, bf16 on CUDA) against the same
    network evaluated in float64 on whole float frames."""
    model = textured_model()
    names = ("astronaut", "coffee", "chelsea")
    lr = np.ascontiguousarray(np.stack([photo(name)[::4, ::4][:64, :64] for name in names]))
    with torch.no_grad():
        exact = copy.deepcopy(model).double()(torch.from_numpy(lr).permute(0, 3, 1, 2).double() / 255)
    reference = (exact.clamp(0, 1) * 255).round().permute(0, 2, 3, 1).numpy().astype(int)
    out = run_model(model, lr, device=device, batch_size=2).astype(int)
    assert out.shape == reference.shape == (3, 128, 128, 3)
    error = np.abs(out - reference)
    assert error.mean() < {"cpu": 0.01, "cuda": 0.5}[device] and error.max() <= {"cpu": 1, "cuda": 8}[device]


@pytest.mark.parametrize("device", DEVICES)
def test_enhance_video_matches_run_model_for_each_transport(tmp_path, device):
    """Streamed `enhance_video` (reader → batches on the device → writer) against `run_model` on
    the same frames held in memory on the CPU: with rgb24 into lossless RGB every frame matches
    (exactly on CPU); reading yuv420p adds the two conversions' rounding (about a level); writing
    yuv420p is compared with the CPU rgb24 run into the same 4:2:0 encoder."""
    source = make_clip(tmp_path / "clip.mkv", size=(64, 48), frames=10)
    model = textured_model()
    reference = run_model(model, read_frames(source), device="cpu", batch_size=3).astype(int)
    legs = (("rgb24", LOSSLESS, "rgb24→rgb24", {"cpu": 0.0, "cuda": 0.5}),
            ("yuv420p", LOSSLESS, "yuv420p→rgb24", {"cpu": 1.5, "cuda": 2.0}))
    for transport, settings, used, level in legs:
        out_path = tmp_path / f"{device}_{transport}.mkv"
        stats = enhance_video(model, source, out_path, 2, settings, device=device, batch_size="auto", progress=False,
                              transport=transport)
        assert stats["frames"] == 10 and stats["device"].startswith(device) and stats["transport"] == used
        per_frame = np.abs(read_frames(out_path).astype(int) - reference).mean(axis=(1, 2, 3))
        assert per_frame.shape == (10,) and per_frame.max() <= level[device], (transport, per_frame)
    x264 = EncodeSettings(crf=0)  # lossless x264, but 4:2:0: both runs lose the same chroma detail
    cpu_rgb, dev_yuv = tmp_path / "cpu_rgb24.mkv", tmp_path / f"{device}_yuv_out.mkv"
    enhance_video(model, source, cpu_rgb, 2, x264, device="cpu", batch_size=3, progress=False, transport="rgb24")
    stats = enhance_video(model, source, dev_yuv, 2, x264, device=device, batch_size="auto", progress=False,
                          transport="yuv420p")
    assert stats["transport"] == "yuv420p→yuv420p"
    per_frame = np.abs(read_frames(dev_yuv).astype(int) - read_frames(cpu_rgb).astype(int)).mean(axis=(1, 2, 3))
    assert per_frame.shape == (10,) and per_frame.max() < {"cpu": 2.0, "cuda": 2.5}[device], per_frame


@pytest.mark.parametrize("device", DEVICES)
def test_fine_tune_runs_and_reports_speed(tmp_path, device):
    """fastai fine-tuning on the device (bf16 mixed precision on CUDA): it trains, keeps a model
    and reports steps, seconds and iterations/s in the verdict."""
    video_pairs(tmp_path)
    cfg = tiny_settings(lr=1e-3).fine_tune
    verdict = fine_tune(tmp_path / "pairs.npz", tmp_path / "base.pt", tmp_path / "m.pt", tmp_path / "h.csv",
                        tmp_path / "v.json", cfg.replace(guard=False), device,
                        degrade_cfg=tiny_settings().degrade)
    assert verdict.kept == "fine_tuned" and verdict.steps > 0
    assert verdict.seconds > 0 and verdict.it_per_s > 0
    assert json.loads((tmp_path / "v.json").read_text())["device"].startswith(device)
