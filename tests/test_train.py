import json

import numpy as np
import pandas as pd
import pytest
import torch

from videnhance.config import ConfigError, validate_config
from videnhance.degrade import DegradeChain, make_pairs
from videnhance.models import SRResNet, load_model
from videnhance.samples import save_pairs
from videnhance.settings import Degrade, FineTune, Settings
from videnhance.training.fine_tune import fine_tune, run_fingerprint
from videnhance.training.guard import Rule, gain_signal
from videnhance.training.losses import MixedLoss, ssim_torch
from videnhance.training.near_scale import near_scale_pairs
from videnhance.training.pretrain import pretrain
from videnhance.verdict import Verdict

from .helpers import photo, tiny_model, tiny_settings, video_pairs


def test_ssim_loss_is_one_for_identical_and_lower_for_noise():
    x = torch.rand(1, 3, 32, 32)
    assert abs(float(ssim_torch(x, x)) - 1) < 1e-5
    assert float(ssim_torch(x, (x + 0.2 * torch.randn_like(x)).clamp(0, 1))) < 0.9
    loss = MixedLoss({"l1": 1.0, "mse": 0.5, "ssim": 0.1})
    assert float(loss(x, x)) < 1e-5


def test_pretrain_writes_model_and_fastai_history(tmp_path):
    cfg = tiny_settings()
    images = [photo("chelsea"), photo("rocket")]
    stats = pretrain(images, tmp_path / "p.pt", tmp_path / "p.csv", 2, cfg.model, cfg.pretrain, cfg.degrade,
                     "cpu")
    history = pd.read_csv(tmp_path / "p.csv")
    assert len(history) == 2 and {"train_loss", "valid_loss", "psnr_metric"} <= set(history.columns)
    assert stats["steps"] == 6
    loaded = load_model(tmp_path / "p.pt", arch="srresnet", scale=2)
    assert loaded.provenance["stage"] == "pretrain" and loaded.arch.name == "srresnet" and loaded.scale == 2


def test_fine_tune_is_deterministic_on_cpu(tmp_path):
    video_pairs(tmp_path)
    cfg = tiny_settings(lr=1e-3).fine_tune
    for run in ("a", "b"):
        fine_tune(tmp_path / "pairs.npz", tmp_path / "base.pt", tmp_path / f"{run}.pt", tmp_path / f"{run}.csv",
                  tmp_path / f"{run}.json", cfg.replace(guard=False), "cpu",  # always keep
                  degrade_cfg=tiny_settings().degrade)
    a, b = load_model(tmp_path / "a.pt").module.state_dict(), load_model(tmp_path / "b.pt").module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    history_a, history_b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert history_a.train_loss.notna().all() and len(history_a) > 0  # it did train
    pd.testing.assert_frame_equal(history_a.drop(columns="time"), history_b.drop(columns="time"))
    verdicts = [json.loads((tmp_path / f"{run}.json").read_text()) for run in ("a", "b")]
    assert verdicts[0]["round_report"] == verdicts[1]["round_report"] and verdicts[0]["steps"] > 0
    assert verdicts[0]["threads"] == torch.get_num_threads()  # part of what the weights depend on


@pytest.mark.parametrize("patience", [1, 0])
def test_guard_keeps_the_base_when_fine_tuning_hurts(tmp_path, patience):
    video_pairs(tmp_path)
    cfg = tiny_settings(lr=5.0, patience=patience).fine_tune  # an absurd learning rate wrecks the model
    verdict = fine_tune(tmp_path / "pairs.npz", tmp_path / "base.pt", tmp_path / "m.pt", tmp_path / "h.csv",
                        tmp_path / "v.json", cfg, "cpu", degrade_cfg=tiny_settings().degrade)
    assert verdict.kept == "base" and verdict.signal == "near_scale"
    # each round run was measured as damage on the held-out pairs (both kinds) and undone
    report = verdict.round_report
    assert not any(r["kept"] for r in report)
    assert all(s["gain_db"] < 0 for r in report for s in r["signals"].values())
    if patience == 1:  # round 1 undone: round 2 cannot pay off from the same weights, so it is skipped
        assert [r["round"] for r in report] == [1] and verdict.rounds_run == 1 and verdict.rounds == 2
        assert verdict.reason.startswith("round 1 was undone and 1 later round(s) skipped: fine-tuned")
        assert verdict.gain_db < 0  # what the rejected round measured, not the base's zero
    else:  # every round runs, each at a lower rate
        assert [r["round"] for r in report] == [1, 2] and report[1]["lr"] == 5.0 * cfg.lr_backoff
    assert json.loads((tmp_path / "v.json").read_text())["kept"] == "base"
    kept, base = load_model(tmp_path / "m.pt").module.state_dict(), load_model(tmp_path / "base.pt").module.state_dict()
    assert all(torch.equal(kept[k], base[k]) for k in base)


@pytest.mark.slow
def test_unet_option_pretrains_and_fine_tunes(tmp_path):
    """The seed's fastai U-Net goes through the same Learner path (tiny budget: it is slow on CPU)."""
    cfg = Settings.from_dict(validate_config({
        "model": {"arch": "unet", "encoder": "resnet18"},
        "pretrain": {"steps": 2, "steps_per_epoch": 1, "batch_size": 2, "patch": 32, "copies": 1},
        "fine_tune": {"steps": 2, "steps_per_epoch": 1, "batch_size": 2, "patch": 32, "guard": False},
    }))
    pretrain([photo("chelsea")], tmp_path / "base.pt", tmp_path / "p.csv", 2, cfg.model, cfg.pretrain,
             cfg.degrade, "cpu")
    frames = [photo("coffee")[i * 20 : i * 20 + 64, :96] for i in range(4)]
    lrs, hrs = make_pairs(frames, 2, DegradeChain.defaults(), seed=0)
    save_pairs(tmp_path / "pairs.npz", np.stack(lrs), np.stack(hrs), np.array([0, 0, 0, 1], bool), np.arange(4))
    verdict = fine_tune(tmp_path / "pairs.npz", tmp_path / "base.pt", tmp_path / "m.pt", tmp_path / "h.csv",
                        tmp_path / "v.json", cfg.fine_tune, "cpu", degrade_cfg=cfg.degrade)
    assert verdict.kept == "fine_tuned"
    loaded = load_model(tmp_path / "m.pt", arch="unet", scale=2)
    assert loaded.kwargs == {"encoder": "resnet18"}
    assert loaded.module(torch.rand(1, 3, 32, 48)).shape == (1, 3, 64, 96)


def _signals(frame_gains, near_gains):
    group = np.arange(len(frame_gains))
    return {"frame": gain_signal(np.zeros(len(group)), np.array(frame_gains), group),
            "near_scale": gain_signal(np.zeros(len(group)), np.array(near_gains), group)}


def test_guard_rule_needs_a_gain_above_noise_and_no_loss_on_real_targets():
    noisy = [0.3, -0.28, 0.25, -0.2, 0.1, -0.1]
    steady = [0.1 + 0.01 * i for i in range(6)]
    rule = Rule("near_scale", min_gain_db=0.0, z=2.0, frame_margin_db=0.05)
    keep, reason = rule.decide(_signals(steady, noisy))
    assert not keep and "within noise" in reason and "near_scale" in reason
    assert rule.decide(_signals(steady, steady))[0]
    assert not Rule("near_scale", 0.5, 2.0, 0.05).decide(_signals(steady, steady))[0]  # the margin still applies
    assert Rule("near_scale", 0.0, 0.0, 0.05).decide(_signals(steady, noisy))[0]  # z = 0 turns the noise test off
    # a clear near-scale gain with a loss on the real-target frame pairs beyond the margin: refused
    keep, reason = rule.decide(_signals([-0.1] * 6, steady))
    assert not keep and "frame pairs" in reason
    assert Rule("near_scale", 0.0, 2.0, None).decide(_signals([-0.1] * 6, steady))[0]  # margin off
    assert rule.decide(_signals([-0.04] * 6, steady))[0]  # within the margin
    # the frame rule looks at the frame pairs alone
    assert Rule("frame", 0.0, 2.0, None).decide(_signals(steady, [-1.0] * 6))[0]
    assert not Rule("frame", 0.0, 2.0, None).decide(_signals(noisy, steady))[0]


def test_a_round_is_kept_if_it_passes_the_guard_and_keeps_the_frame_pairs():
    """Rounds are not ranked by their near-scale gain (its targets are the base model's output,
    which a later round moves away from while getting closer to the truth)."""
    rule = Rule("near_scale", min_gain_db=0.0, z=2.0, frame_margin_db=0.15)
    steady = [0.1 + 0.01 * i for i in range(6)]
    round1 = _signals([0.3] * 5 + [0.31], [1.7 + 0.01 * i for i in range(6)])
    assert rule.better(round1, None)
    lower_near = _signals([0.6] * 5 + [0.61], [1.5 + 0.01 * i for i in range(6)])
    assert rule.better(lower_near, round1)  # near-scale fell, frame pairs rose: kept (coffee_pushin ×4)
    assert not rule.better(_signals([0.1] * 6, steady), round1)  # frame pairs fell 0.2 dB > 0.15 below round 1
    assert rule.better(_signals([0.2] * 6, steady), round1)  # 0.1 below: within the margin
    noisy = [0.3, -0.28, 0.25, -0.2, 0.1, -0.1]
    assert not rule.better(_signals(steady, noisy), None)  # does not pass the guard on its own
    frame_rule = Rule("frame", 0.0, 2.0, None)  # the rule before: higher frame-pair gain wins
    assert frame_rule.better(_signals(noisy, noisy), None) and not frame_rule.better(round1, lower_near)


def test_held_out_gain_is_averaged_per_frame_before_the_standard_error():
    """Near-scale pairs of one frame are not independent evidence: the frame is the unit."""
    base = np.zeros(8)
    scores = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    s = gain_signal(base, scores, np.array([0, 0, 0, 0, 1, 1, 1, 1]))
    assert s.frames == 2 and s.pairs == 8 and s.gain_db == 0.5 and abs(s.stderr_db - 0.5) < 1e-12


def test_held_out_near_scale_pairs_are_the_base_output_at_the_scale_of_use():
    torch.manual_seed(0)
    base = SRResNet(2, 8, 1).eval()
    frames = np.stack([photo("coffee")[i * 10 : i * 10 + 40, i * 12 : i * 12 + 60] for i in range(3)])
    args = dict(scale=2, chain=DegradeChain.defaults(), shrink=(0.8, 0.9), per_frame=2, crop=200, seed=0,
                device=torch.device("cpu"), spread=True, batch_size=1)
    lrs, hrs, group = near_scale_pairs(base, frames, **args)
    assert list(group) == [0, 0, 1, 1, 2, 2]
    for lr, hr in zip(lrs, hrs, strict=True):  # targets: the base's 80×120 output, shrunk 0.8 and 0.9
        assert 0.8 * 80 - 2 <= hr.shape[0] <= 0.9 * 80 and lr.shape == (hr.shape[0] // 2, hr.shape[1] // 2, 3)
    assert hrs[0].shape[0] < hrs[1].shape[0]  # spread: the factors 0.8 then 0.9 for every frame
    again = near_scale_pairs(base, frames, **args)[0]
    assert all(np.array_equal(a, b) for a, b in zip(lrs, again, strict=True))  # fixed: every model, same pairs
    from videnhance.degrade import resize
    from videnhance.infer import run_model

    out = run_model(base, frames[1:2])[0]  # a target is that frame's base output, resized (crop = whole here)
    target = hrs[2]
    assert np.abs(resize(out[None], target.shape[:2])[0].astype(int) - target.astype(int)).max() <= 1


def test_the_guard_judges_on_held_out_frames_only(tmp_path):
    """Both held-out sets of a fine-tune come from the pairs file's held-out frames, never a training one."""
    from videnhance.training.fine_tune import VideoPairs
    from videnhance.training.guard import held_out_judge

    video_pairs(tmp_path)
    data = VideoPairs.load(tmp_path / "pairs.npz")
    cfg = tiny_settings().fine_tune
    judge = held_out_judge(SRResNet(2, 8, 1).eval(), data.lr_val, data.hr_val, 2, cfg, DegradeChain.defaults(),
                           torch.device("cpu"))
    assert len(data.lr_val) == 2 and all(np.array_equal(a, b) for a, b in zip(judge.sets["frame"].hr, data.hr_val,
                                                                                strict=True))
    assert sorted(set(judge.sets["near_scale"].group)) == [0, 1]
    assert len(judge.sets["near_scale"].lr) == 2 * cfg.guard_targets_per_frame


def test_guard_off_keeps_every_round_and_delivers_the_fine_tuned_model(tmp_path):
    video_pairs(tmp_path)
    cfg = tiny_settings(lr=5.0, guard=False).fine_tune
    verdict = fine_tune(tmp_path / "pairs.npz", tmp_path / "base.pt", tmp_path / "m.pt", tmp_path / "h.csv",
                        tmp_path / "v.json", cfg, "cpu", degrade_cfg=tiny_settings().degrade)
    assert verdict.kept == "fine_tuned" and "guard off" in verdict.reason
    assert [r["kept"] for r in verdict.round_report] == [True, True]
    assert verdict.signals["near_scale"]["gain_db"] < 0  # still measured and reported


def test_each_round_trains_on_inputs_the_configured_chain_made(tmp_path):
    """The round hook shows each round's model and pairs: near-scale inputs are the targets
    degraded by the configured chain (here blur σ 0.8 before the bicubic downscale), not a plain
    downscale."""
    from videnhance.degrade import eval_degrade

    video_pairs(tmp_path)
    blur = tiny_settings().degrade.replace(blur_sigma=[0.8, 0.8])
    rounds = []
    fine_tune(tmp_path / "pairs.npz", tmp_path / "base.pt", tmp_path / "m.pt", tmp_path / "h.csv", tmp_path / "v.json",
              tiny_settings(guard=False).fine_tune, "cpu", degrade_cfg=blur, on_round=rounds.append)
    assert [r.number for r in rounds] == [1, 2] and all(r.chain.settings.blur_sigma == (0.8, 0.8) for r in rounds)
    lr, hr = rounds[0].lr_train[0], rounds[0].hr_train[0]
    plain = eval_degrade(hr[None], 2, "BI")[0]
    blurred = DegradeChain.from_settings(blur).apply(hr, 2, np.random.default_rng(0))
    assert np.abs(lr.astype(int) - blurred.astype(int)).mean() < np.abs(lr.astype(int) - plain.astype(int)).mean()


def test_near_scale_pairs_are_shrunk_model_outputs_at_the_model_scale():
    torch.manual_seed(0)
    teacher = SRResNet(2, 8, 1).eval()
    frames = np.stack([photo("coffee")[i * 10 : i * 10 + 40, i * 12 : i * 12 + 60] for i in range(3)])
    args = dict(scale=2, chain=DegradeChain.defaults(), shrink=(0.8, 0.9), per_frame=2, crop=200, seed=3,
                device=torch.device("cpu"))
    lrs, hrs, group = near_scale_pairs(teacher, frames, **args)
    assert len(lrs) == len(hrs) == 6 and list(group) == [0, 0, 1, 1, 2, 2]
    for lr, hr in zip(lrs, hrs, strict=True):
        h, w = hr.shape[:2]
        assert h % 2 == 0 and w % 2 == 0 and lr.shape == (h // 2, w // 2, 3)
        assert 0.8 * 80 - 2 <= h <= 0.9 * 80 and 0.8 * 120 - 2 <= w <= 0.9 * 120  # shrunk output, not the frame
    # the targets are the teacher's output shrunk: compare one with an independent resize of it
    from videnhance.degrade import resize
    from videnhance.infer import run_model

    out = run_model(teacher, frames[:1])[0]
    again_lr, again_hr, _ = near_scale_pairs(teacher, frames, **args)
    assert all(np.array_equal(a, b) for a, b in zip(hrs, again_hr, strict=True))  # seeded
    first = hrs[0]
    full = resize(out[None], (first.shape[0], first.shape[1]))[0]  # crop = whole target here (crop 200)
    assert np.abs(full.astype(int) - first.astype(int)).max() <= 1
    small = near_scale_pairs(teacher, frames, **{**args, "crop": 20})[1]
    assert all(max(hr.shape[:2]) <= 20 for hr in small)


@pytest.mark.parametrize("pairs", ["near_scale", "frame"])
def test_fine_tune_pairs_option_is_recorded(tmp_path, pairs):
    video_pairs(tmp_path)
    cfg = tiny_settings(lr=1e-3, pairs=pairs, patience=0).fine_tune  # every round runs
    verdict = fine_tune(tmp_path / "pairs.npz", tmp_path / "base.pt", tmp_path / "m.pt", tmp_path / "h.csv",
                        tmp_path / "v.json", cfg, "cpu", degrade_cfg=Degrade.defaults())
    assert verdict.pairs == pairs and verdict.steps == 6


def test_checkpoints_resume_only_for_the_same_bytes_and_settings(tmp_path):
    """Same-size files with other contents (a retrained base of the same architecture) or another
    degradation must not resume a killed fine-tune's checkpoint."""
    cfg = FineTune.defaults()
    chain = Degrade.defaults()
    pairs = tmp_path / "pairs.npz"
    pairs.write_bytes(b"p" * 64)
    for name, seed in (("a.pt", 0), ("b.pt", 1)):
        torch.manual_seed(seed)
        tiny_model(path=tmp_path / name)
    assert (tmp_path / "a.pt").stat().st_size == (tmp_path / "b.pt").stat().st_size
    first = run_fingerprint(cfg, chain, pairs, tmp_path / "a.pt")
    assert first == run_fingerprint(cfg, chain, pairs, tmp_path / "a.pt")
    assert first != run_fingerprint(cfg, chain, pairs, tmp_path / "b.pt")
    assert first != run_fingerprint(cfg, chain.replace(downscale=["bilinear"]), pairs, tmp_path / "a.pt")
    pairs.write_bytes(b"q" * 64)
    assert first != run_fingerprint(cfg, chain, pairs, tmp_path / "a.pt")


def test_without_held_out_frames_the_base_is_kept_untrained(tmp_path):
    """A one-frame clip (or val_fraction 0) leaves the guard nothing to judge on: no fine-tuning."""
    video_pairs(tmp_path)
    pairs = np.load(tmp_path / "pairs.npz")
    save_pairs(tmp_path / "pairs.npz", pairs["lr"], pairs["hr"], np.zeros(len(pairs["lr"]), bool), pairs["indices"])
    cfg = tiny_settings(lr=1e-3).fine_tune
    verdict = fine_tune(tmp_path / "pairs.npz", tmp_path / "base.pt", tmp_path / "m.pt", tmp_path / "h.csv",
                        tmp_path / "v.json", cfg, "cpu", degrade_cfg=tiny_settings().degrade)
    assert verdict.kept == "base" and "no held-out frames" in verdict.reason and verdict.steps == 0
    assert (tmp_path / "m.pt").read_bytes() == (tmp_path / "base.pt").read_bytes()
    assert Verdict.read(tmp_path / "v.json") == verdict


def test_vgg_feature_loss_only_with_weights_the_user_supplies(tmp_path):
    from torchvision.models import vgg16

    with pytest.raises(ConfigError, match="vgg_weights"):
        MixedLoss({"l1": 1.0, "vgg": 0.1})  # nothing is downloaded
    torch.manual_seed(0)
    features = vgg16(weights=None).features[:16]
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, tmp_path / "vgg16.pth")
    cfg = validate_config({"fine_tune": {"loss": {"l1": 1.0, "vgg": 0.1, "vgg_weights": str(tmp_path / "vgg16.pth")}}})
    loss = MixedLoss(cfg["fine_tune"]["loss"])  # the validated config's loss section, as the steps get it
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


def test_training_logs_one_plain_line_per_epoch_without_a_terminal(tmp_path, caplog, capsys):
    """In a log file (no terminal) fastprogress's carriage-return bar frames are replaced by one
    line per epoch, so a long pretraining's log stays readable and small."""
    import logging

    from videnhance.data import FixedBatches, PatchBatches
    from videnhance.training.learner import fit

    rng = np.random.default_rng(0)
    hr = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    lr = [h[::2, ::2].copy() for h in hr]
    with caplog.at_level(logging.INFO, logger="videnhance.training.learner"):
        fit(SRResNet(2, 8, 1), PatchBatches(lr, hr, 2, 8, 2, 3), FixedBatches(lr, hr), 3, 1e-3, {"l1": 1.0},
            tmp_path / "h.csv", torch.device("cpu"))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("train_loss" in line and "valid_loss" in line and "psnr_metric" in line for line in lines)
    out = capsys.readouterr().out
    assert "\r" not in out and "Epoch" not in out  # no bar frames
