import json

import numpy as np
import pandas as pd
import pytest
import torch

from videnhance.config import ConfigError, validate_config
from videnhance.data import save_pairs
from videnhance.degrade import DegradeChain, make_pairs
from videnhance.models import SRResNet, load_model, save_model
from videnhance.train import (
    MixedLoss,
    fine_tune,
    guard,
    near_scale_pairs,
    pretrain,
    run_fingerprint,
    ssim_torch,
)

from .conftest import photo


def test_ssim_loss_is_one_for_identical_and_lower_for_noise():
    x = torch.rand(1, 3, 32, 32)
    assert abs(float(ssim_torch(x, x)) - 1) < 1e-5
    assert float(ssim_torch(x, (x + 0.2 * torch.randn_like(x)).clamp(0, 1))) < 0.9
    loss = MixedLoss({"l1": 1.0, "mse": 0.5, "ssim": 0.1})
    assert float(loss(x, x)) < 1e-5


def _tiny_cfg(**fine_tune):
    cfg = validate_config({
        "model": {"channels": 8, "blocks": 1},
        "pretrain": {"steps": 6, "steps_per_epoch": 3, "batch_size": 4, "patch": 16, "copies": 1},
        "fine_tune": {"steps": 6, "steps_per_epoch": 3, "batch_size": 4, "patch": 16, **fine_tune},
    })
    return cfg


def test_pretrain_writes_model_and_fastai_history(tmp_path):
    cfg = _tiny_cfg()
    images = [photo("chelsea"), photo("rocket")]
    stats = pretrain(images, tmp_path / "p.pt", tmp_path / "p.csv", 2, cfg["model"], cfg["pretrain"], cfg["degrade"], "cpu")
    history = pd.read_csv(tmp_path / "p.csv")
    assert len(history) == 2 and {"train_loss", "valid_loss", "psnr_metric"} <= set(history.columns)
    assert stats["steps"] == 6
    model, header = load_model(tmp_path / "p.pt", arch="srresnet", scale=2)
    assert json.loads(header["provenance"])["stage"] == "pretrain"


def _pairs(tmp_path, n=8):
    frames = [photo("coffee")[i * 10 : i * 10 + 64, i * 12 : i * 12 + 96] for i in range(n)]
    lrs, hrs = make_pairs(frames, 2, DegradeChain(), seed=0)
    is_val = np.zeros(n, bool)
    is_val[-2:] = True
    save_pairs(tmp_path / "pairs.npz", np.stack(lrs), np.stack(hrs), is_val, np.arange(n))
    save_model(SRResNet(2, 8, 1), tmp_path / "base.pt", "srresnet", 2, {"channels": 8, "blocks": 1})


def test_fine_tune_is_deterministic_on_cpu(tmp_path):
    _pairs(tmp_path)
    cfg = _tiny_cfg(lr=1e-3)["fine_tune"]
    for run in ("a", "b"):
        fine_tune(tmp_path / "pairs.npz", tmp_path / "base.pt", tmp_path / f"{run}.pt", tmp_path / f"{run}.csv",
                  tmp_path / f"{run}.json", {**cfg, "min_gain_db": -100.0, "guard_z": 0.0}, "cpu",  # always keep
                  degrade_cfg=_tiny_cfg()["degrade"])
    a, b = load_model(tmp_path / "a.pt")[0].state_dict(), load_model(tmp_path / "b.pt")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    history_a, history_b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert history_a.train_loss.notna().all() and len(history_a) > 0  # it did train
    pd.testing.assert_frame_equal(history_a.drop(columns="time"), history_b.drop(columns="time"))
    verdicts = [json.loads((tmp_path / f"{run}.json").read_text()) for run in ("a", "b")]
    assert verdicts[0]["round_report"] == verdicts[1]["round_report"] and verdicts[0]["steps"] > 0


def test_guard_keeps_the_base_when_fine_tuning_hurts(tmp_path):
    _pairs(tmp_path)
    cfg = _tiny_cfg(lr=5.0)["fine_tune"]  # an absurd learning rate wrecks the model
    verdict = fine_tune(tmp_path / "pairs.npz", tmp_path / "base.pt", tmp_path / "m.pt", tmp_path / "h.csv",
                        tmp_path / "v.json", cfg, "cpu", degrade_cfg=_tiny_cfg()["degrade"])
    assert verdict["kept"] == "base"
    # every round was measured as damage on the held-out frames and undone, at a lower lr each time
    report = verdict["round_report"]
    assert [r["round"] for r in report] == [1, 2] and not any(r["kept"] for r in report)
    assert all(r["val_gain_db"] < 0 for r in report) and report[1]["lr"] == 5.0 * cfg["lr_backoff"]
    assert json.loads((tmp_path / "v.json").read_text())["kept"] == "base"
    kept, base = load_model(tmp_path / "m.pt")[0].state_dict(), load_model(tmp_path / "base.pt")[0].state_dict()
    assert all(torch.equal(kept[k], base[k]) for k in base)


@pytest.mark.slow
def test_unet_option_pretrains_and_fine_tunes(tmp_path):
    """The seed's fastai U-Net goes through the same Learner path (tiny budget: it is slow on CPU)."""
    cfg = validate_config({
        "model": {"arch": "unet", "encoder": "resnet18"},
        "pretrain": {"steps": 2, "steps_per_epoch": 1, "batch_size": 2, "patch": 32, "copies": 1},
        "fine_tune": {"steps": 2, "steps_per_epoch": 1, "batch_size": 2, "patch": 32, "min_gain_db": -100.0, "guard_z": 0.0},
    })
    pretrain([photo("chelsea")], tmp_path / "base.pt", tmp_path / "p.csv", 2, cfg["model"], cfg["pretrain"],
             cfg["degrade"], "cpu")
    frames = [photo("coffee")[i * 20 : i * 20 + 64, :96] for i in range(4)]
    lrs, hrs = make_pairs(frames, 2, DegradeChain(), seed=0)
    save_pairs(tmp_path / "pairs.npz", np.stack(lrs), np.stack(hrs), np.array([0, 0, 0, 1], bool), np.arange(4))
    verdict = fine_tune(tmp_path / "pairs.npz", tmp_path / "base.pt", tmp_path / "m.pt", tmp_path / "h.csv",
                        tmp_path / "v.json", cfg["fine_tune"], "cpu", degrade_cfg=cfg["degrade"])
    assert verdict["kept"] == "fine_tuned"
    model, header = load_model(tmp_path / "m.pt", arch="unet", scale=2)
    assert header["kwargs"] == {"encoder": "resnet18"}
    assert model(torch.rand(1, 3, 32, 48)).shape == (1, 3, 64, 96)


def test_guard_needs_a_gain_above_noise():
    base = [{"psnr_y": 30.0 + 0.5 * (i % 2)} for i in range(6)]
    noisy = [{"psnr_y": b["psnr_y"] + g} for b, g in zip(base, [0.3, -0.28, 0.25, -0.2, 0.1, -0.1], strict=True)]
    steady = [{"psnr_y": b["psnr_y"] + 0.1 + 0.01 * i} for i, b in enumerate(base)]
    verdict = guard(base, noisy, 0.0, 2.0)
    assert verdict["kept"] == "base" and "within noise" in verdict["reason"] and verdict["gain_db"] > 0
    assert guard(base, steady, 0.0, 2.0)["kept"] == "fine_tuned"
    assert guard(base, steady, 0.5, 2.0)["kept"] == "base"  # the margin still applies
    assert guard(base, noisy, 0.0, 0.0)["kept"] == "fine_tuned"  # z = 0 turns the noise test off


def test_near_scale_pairs_are_shrunk_model_outputs_at_the_model_scale():
    torch.manual_seed(0)
    teacher = SRResNet(2, 8, 1).eval()
    frames = np.stack([photo("coffee")[i * 10 : i * 10 + 40, i * 12 : i * 12 + 60] for i in range(3)])
    args = dict(scale=2, chain=DegradeChain(), shrink=(0.8, 0.9), per_frame=2, crop=200, seed=3,
                device=torch.device("cpu"))
    lrs, hrs = near_scale_pairs(teacher, frames, **args)
    assert len(lrs) == len(hrs) == 6
    for lr, hr in zip(lrs, hrs, strict=True):
        h, w = hr.shape[:2]
        assert h % 2 == 0 and w % 2 == 0 and lr.shape == (h // 2, w // 2, 3)
        assert 0.8 * 80 - 2 <= h <= 0.9 * 80 and 0.8 * 120 - 2 <= w <= 0.9 * 120  # shrunk output, not the frame
    # the targets are the teacher's output shrunk: compare one with an independent resize of it
    from videnhance.degrade import resize
    from videnhance.infer import run_model

    out = run_model(teacher, frames[:1])[0]
    again_lr, again_hr = near_scale_pairs(teacher, frames, **args)
    assert all(np.array_equal(a, b) for a, b in zip(hrs, again_hr, strict=True))  # seeded
    first = hrs[0]
    full = resize(out[None], (first.shape[0], first.shape[1]))[0]  # crop = whole target here (crop 200)
    assert np.abs(full.astype(int) - first.astype(int)).max() <= 1
    small = near_scale_pairs(teacher, frames, **{**args, "crop": 20})[1]
    assert all(max(hr.shape[:2]) <= 20 for hr in small)


@pytest.mark.parametrize("pairs", ["near_scale", "frame"])
def test_fine_tune_pairs_option_is_recorded(tmp_path, pairs):
    _pairs(tmp_path)
    cfg = _tiny_cfg(lr=1e-3, pairs=pairs)["fine_tune"]
    verdict = fine_tune(tmp_path / "pairs.npz", tmp_path / "base.pt", tmp_path / "m.pt", tmp_path / "h.csv",
                        tmp_path / "v.json", cfg, "cpu", degrade_cfg={"downscale": ["bicubic"]})
    assert verdict["pairs"] == pairs and verdict["steps"] == 6


def test_checkpoints_resume_only_for_the_same_bytes_and_settings(tmp_path):
    """Same-size files with other contents (a retrained base of the same architecture) or another
    degradation must not resume a killed fine-tune's checkpoint."""
    cfg = validate_config({})["fine_tune"]
    chain = {"downscale": ["bicubic"]}
    pairs = tmp_path / "pairs.npz"
    pairs.write_bytes(b"p" * 64)
    for name, seed in (("a.pt", 0), ("b.pt", 1)):
        torch.manual_seed(seed)
        save_model(SRResNet(2, channels=8, blocks=1), tmp_path / name, "srresnet", 2, {"channels": 8, "blocks": 1})
    assert (tmp_path / "a.pt").stat().st_size == (tmp_path / "b.pt").stat().st_size
    first = run_fingerprint(cfg, chain, pairs, tmp_path / "a.pt")
    assert first == run_fingerprint(cfg, chain, pairs, tmp_path / "a.pt")
    assert first != run_fingerprint(cfg, chain, pairs, tmp_path / "b.pt")
    assert first != run_fingerprint(cfg, {"downscale": ["bilinear"]}, pairs, tmp_path / "a.pt")
    pairs.write_bytes(b"q" * 64)
    assert first != run_fingerprint(cfg, chain, pairs, tmp_path / "a.pt")


def test_without_held_out_frames_the_base_is_kept_untrained(tmp_path):
    """A one-frame clip (or val_fraction 0) leaves the guard nothing to judge on: no fine-tuning."""
    _pairs(tmp_path)
    pairs = np.load(tmp_path / "pairs.npz")
    save_pairs(tmp_path / "pairs.npz", pairs["lr"], pairs["hr"], np.zeros(len(pairs["lr"]), bool), pairs["indices"])
    cfg = _tiny_cfg(lr=1e-3)["fine_tune"]
    verdict = fine_tune(tmp_path / "pairs.npz", tmp_path / "base.pt", tmp_path / "m.pt", tmp_path / "h.csv",
                        tmp_path / "v.json", cfg, "cpu", degrade_cfg=_tiny_cfg()["degrade"])
    assert verdict["kept"] == "base" and "no held-out frames" in verdict["reason"] and verdict["steps"] == 0
    assert (tmp_path / "m.pt").read_bytes() == (tmp_path / "base.pt").read_bytes()
    assert json.loads((tmp_path / "v.json").read_text()) == verdict


def test_vgg_feature_loss_only_with_weights_the_user_supplies(tmp_path):
    from torchvision.models import vgg16

    with pytest.raises(ConfigError, match="vgg_weights"):
        MixedLoss({"l1": 1.0, "vgg": 0.1})  # nothing is downloaded
    torch.manual_seed(0)
    features = vgg16(weights=None).features[:16]
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, tmp_path / "vgg16.pth")
    cfg = validate_config({"fine_tune": {"loss": {"l1": 1.0, "vgg": 0.1, "vgg_weights": str(tmp_path / "vgg16.pth")}}})
    loss = MixedLoss(cfg["fine_tune"]["loss"])
    x = torch.rand(2, 3, 32, 32)
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    assert float(loss(x, x)) < 1e-6
    total = loss(noisy, x)
    assert total.item() > MixedLoss({"l1": 1.0})(noisy, x).detach().item()  # the feature term adds to L1
    total.backward()
    assert noisy.grad.abs().sum() > 0 and not any(p.requires_grad for p in loss.vgg.parameters())
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="not a VGG16"):
        MixedLoss({"vgg": 1.0, "vgg_weights": str(tmp_path / "other.pth")})
