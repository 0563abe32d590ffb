"""How models learn: losses, the fastai Learner glue, pretraining, per-video fine-tuning, the guard.

Training goes through a fastai `Learner` (one-cycle schedule, bf16 mixed precision on CUDA, CSV
log, fastprogress bars) fed by in-memory patch batches (`data.PatchBatches`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .archs import arch_kwargs, frames_in
from .data import FixedBatches, PatchBatches
from .defaults import AUTO, fine_tune_lr
from .degrade import DegradeChain, centre, make_pairs, shrink_and_crop
from .errors import ConfigError
from .files import atomic_output, atomic_write_text
from .guard import HeldOutSet, Judge, Rule, Signal, near_scale_set
from .infer import pick_device, teacher_outputs
from .models import LoadedModel, build_model, load_model, save_model
from .motion import MotionBatches, motion_clips
from .samples import load_npz
from .settings import Degrade, FineTune, Model, Pretrain
from .verdict import Verdict

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- losses
def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_torch(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean SSIM over channels (11×11 Gaussian σ=1.5, inputs in [0, 1]); differentiable."""
    c = pred.shape[1]
    win = _gaussian_window().to(pred).expand(c, 1, 11, 11)
    pad = 5
    pred, target = F.pad(pred, (pad,) * 4, mode="reflect"), F.pad(target, (pad,) * 4, mode="reflect")
    mu_x, mu_y = F.conv2d(pred, win, groups=c), F.conv2d(target, win, groups=c)
    sxx = F.conv2d(pred * pred, win, groups=c) - mu_x**2
    syy = F.conv2d(target * target, win, groups=c) - mu_y**2
    sxy = F.conv2d(pred * target, win, groups=c) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return ssim.mean()


class VGGFeatures(nn.Module):
    """VGG16 up to relu3_3, frozen, from a state_dict file the user supplies (torchvision's
    layout). The feature loss of the seed (perceptual sharpening); off unless configured."""

    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, weights_path: str | Path):
        super().__init__()
        from torchvision.models import vgg16

        path = Path(weights_path)
        if not path.is_file():
            raise ConfigError(f"loss.vgg_weights: {path} not found. The VGG feature loss needs a VGG16 "
                                    "state_dict you supply (torchvision layout); nothing is downloaded.")
        state = torch.load(path, map_location="cpu", weights_only=True)
        features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        self.net = vgg16(weights=None).features[:16]
        missing = set(self.net.state_dict()) - set(features)
        if missing:
            raise ConfigError(f"loss.vgg_weights: {path} is not a VGG16 state_dict (missing {sorted(missing)[:3]}…)")
        self.net.load_state_dict({k: features[k] for k in self.net.state_dict()})
        self.net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


class MixedLoss(nn.Module):
    """Weighted sum of L1, MSE, (1 − SSIM) and, with user-supplied weights, a VGG feature L1,
    from the config's `loss: {l1: 1.0, ssim: 0.1}` (`vgg: 0.05, vgg_weights: vgg16.pth`)."""

    TERMS = ("l1", "mse", "ssim", "vgg")

    def __init__(self, weights: dict):
        super().__init__()
        weights = dict(weights)
        vgg_path = weights.pop("vgg_weights", None)
        unknown = set(weights) - set(self.TERMS)
        if unknown or not weights:
            raise ValueError(f"loss terms must be among {self.TERMS}, got {sorted(weights)}")
        self.weights = {k: float(v) for k, v in weights.items() if v}
        self.vgg = None
        if "vgg" in self.weights:
            if not vgg_path:
                raise ConfigError("loss term 'vgg' needs loss.vgg_weights: a VGG16 state_dict file you supply "
                                 "(torchvision layout); nothing is downloaded")
            self.vgg = VGGFeatures(vgg_path)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = pred.float(), target.float()
        total = pred.new_zeros(())
        if "l1" in self.weights:
            total = total + self.weights["l1"] * F.l1_loss(pred, target)
        if "mse" in self.weights:
            total = total + self.weights["mse"] * F.mse_loss(pred, target)
        if "ssim" in self.weights:
            total = total + self.weights["ssim"] * (1 - ssim_torch(pred, target))
        if self.vgg is not None:
            self.vgg.to(pred.device)
            total = total + self.weights["vgg"] * F.l1_loss(self.vgg(pred), self.vgg(target))
        return total


def psnr_metric(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """RGB PSNR on [0, 1] tensors, for the training log (the report uses metrics.py)."""
    mse = F.mse_loss(pred.float().clamp(0, 1), target.float())
    return -10 * torch.log10(mse.clamp_min(1e-10))


# ----------------------------------------------------------------------------------------- learner
def _time_budget_callback(max_seconds: float | None):
    from fastai.callback.core import Callback, CancelFitException

    class TimeBudget(Callback):
        """Stop training once `max_seconds` have passed (checked after every batch)."""

        order = 100

        def before_fit(self):
            self.start = time.monotonic()

        def after_batch(self):
            if max_seconds and time.monotonic() - self.start > max_seconds:
                log.info("time budget of %.0f s reached; stopping", max_seconds)
                raise CancelFitException()

    return TimeBudget()


def _plain_progress_callback(every_seconds: float = 10.0):
    from fastai.callback.core import Callback

    class PlainProgress(Callback):
        """Progress for log files, in place of fastprogress's bars (whose carriage-return frames
        made a fine-tune log 31 kB): one log line per epoch with its losses and metric, and one
        every `every_seconds` inside a long epoch."""

        order = 61  # after the Recorder (50) has computed the epoch's values

        def before_fit(self):
            self.start = self.last = time.monotonic()

        def after_batch(self):
            now = time.monotonic()
            if self.training and now - self.last >= every_seconds:
                self.last = now
                log.info("epoch %d/%d: step %d/%d, smoothed loss %.5f, %.0f s", self.epoch + 1, self.n_epoch,
                         self.iter + 1, self.n_iter, float(self.smooth_loss), now - self.start)

        def after_epoch(self):
            self.last = time.monotonic()
            values = dict(zip(self.recorder.metric_names, self.recorder.log, strict=False))
            shown = ", ".join(f"{k} {v:.5f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()
                              if k != "epoch")
            log.info("epoch %d/%d: %s", self.epoch + 1, self.n_epoch, shown)

    return PlainProgress()


def _checkpoint_callback(path: Path, fingerprint: str, train: PatchBatches, log_csv: Path, previous_rows: str):
    from fastai.callback.core import Callback

    class EpochCheckpoint(Callback):
        """After every epoch: model, optimiser, sampler RNG and the log so far, written atomically,
        so a killed run resumes where it stopped instead of starting over."""

        order = 65  # after the CSV logger has written the epoch's line

        def after_epoch(self):
            rows = previous_rows + (log_csv.read_text().split("\n", 1)[1] if log_csv.exists() else "")
            state = {"fingerprint": fingerprint, "epoch": self.epoch + 1, "model": self.learn.model.state_dict(),
                     "opt": _plain_opt_state(self.learn.opt.state_dict()), "sampler": train.gen.get_state(),
                     "history": rows}
            with atomic_output(path) as tmp:
                torch.save(state, tmp)

    return EpochCheckpoint()


def _plain_opt_state(state: dict) -> dict:
    """fastai's optimiser state with fastcore's `L` lists made plain, so it loads with weights_only."""
    def plain(value):
        return value.item() if isinstance(value, np.generic) else value

    return {key: [{k: plain(v) for k, v in d.items()} for d in state[key]] for key in ("state", "hypers")}


def _load_checkpoint(path: Path | None, fingerprint: str) -> dict | None:
    if path is None or not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a checkpoint cut short by a kill: start over
        log.warning("ignoring unreadable training checkpoint %s (%s)", path, err)
        return None
    if state.get("fingerprint") != fingerprint:
        log.info("training checkpoint %s is from other settings; starting over", path)
        return None
    return state


def fit(model: nn.Module, train: PatchBatches, valid: FixedBatches, epochs: int, lr: float,
        loss_weights: dict[str, float], log_csv: str | Path, device: torch.device,
        max_seconds: float | None = None, progress: bool = True, checkpoint: str | Path | None = None,
        fingerprint: str = "") -> dict:
    """Train `model` in place with fastai's one-cycle policy; returns what happened.

    Progress: fastprogress's live bars when standard output is a terminal, else one plain log
    line per epoch (`progress=False`: neither). With `checkpoint`, state is saved after every epoch
    and a matching checkpoint (same `fingerprint`) is resumed from: the one-cycle schedule continues
    at that epoch.
    """
    from fastai.callback.progress import CSVLogger, ProgressCallback
    from fastai.callback.schedule import fit_one_cycle  # noqa: F401 - patches Learner.fit_one_cycle
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.optimizer import Adam

    log_csv = Path(log_csv)
    log_csv.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(checkpoint) if checkpoint else None
    resume = _load_checkpoint(checkpoint, fingerprint)
    dls = DataLoaders(train, valid, path=log_csv.parent, device=device)
    cbs = [CSVLogger(fname=log_csv.name), _time_budget_callback(max_seconds)]
    if checkpoint:
        cbs.append(_checkpoint_callback(checkpoint, fingerprint, train, log_csv, resume["history"] if resume else ""))
    learn = Learner(dls, model.to(device), loss_func=MixedLoss(loss_weights), opt_func=Adam,
                    metrics=[psnr_metric], cbs=cbs, path=log_csv.parent, model_dir=".")
    start_epoch = 0
    if resume:
        model.load_state_dict(resume["model"])
        learn.create_opt()
        from fastcore.foundation import L

        learn.opt.load_state_dict({"state": L(resume["opt"]["state"]), "hypers": L(resume["opt"]["hypers"])})
        train.gen.set_state(resume["sampler"])
        start_epoch = int(resume["epoch"])
        log.info("resuming training from epoch %d of %d (checkpoint %s)", start_epoch, epochs, checkpoint)
    if not (progress and sys.stdout.isatty()):
        learn.remove_cb(ProgressCallback)
        if progress:
            learn.add_cb(_plain_progress_callback())
        learn.logger = lambda *_: None  # not the Recorder's print of each epoch's list (the CSV logger wraps this)
    if device.type == "cuda":
        learn.to_bf16()
    start = time.monotonic()
    if start_epoch < epochs:
        learn.fit_one_cycle(epochs, lr_max=lr, start_epoch=start_epoch)
    seconds = time.monotonic() - start
    steps = (epochs - start_epoch) * len(train) if start_epoch else int(learn.train_iter)
    if resume:  # the log of this run has placeholder lines for the skipped epochs: put the real ones back
        header, *rows = log_csv.read_text().splitlines()
        kept = [r for r in rows if r and int(r.split(",", 1)[0]) >= start_epoch]
        log_csv.write_text("\n".join([header, *resume["history"].splitlines(), *kept]) + "\n")
    model.eval().cpu()
    return {"seconds": round(seconds, 2), "steps": steps, "it_per_s": round(steps / max(seconds, 1e-9), 3),
            "resumed_from_epoch": start_epoch}


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _epochs(steps: int, steps_per_epoch: int) -> tuple[int, int]:
    steps_per_epoch = max(1, min(steps_per_epoch, steps))
    return math.ceil(steps / steps_per_epoch), steps_per_epoch


# ---------------------------------------------------------------------------------------- pretrain
def _held_out(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(held-out, training) indices of `n` items, a tenth held out, seeded; a single item trains
    and validates on itself."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, n // 10), n - 1)
    return (order[:n_val], order[n_val:]) if n_val else (order, order)


def _fit_pairs(model: nn.Module, lrs: list[np.ndarray], hrs: list[np.ndarray], scale: int, cfg: Pretrain,
               steps: int, max_seconds: float | None, out_log: Path, dev: torch.device) -> dict:
    """One pretraining stage: a tenth of the pairs held out (central crops), the rest cut into
    random patches; fastai's one-cycle for `steps` steps."""
    val_idx, train_idx = _held_out(len(lrs), cfg.seed)
    epochs, per_epoch = _epochs(steps, cfg.steps_per_epoch)
    train = PatchBatches([lrs[i] for i in train_idx], [hrs[i] for i in train_idx], scale, cfg.patch,
                         cfg.batch_size, per_epoch, seed=cfg.seed, device=dev)
    # validation: fixed central crops, so the images need not share a size
    val_lr, val_hr = _center_crops([lrs[i] for i in val_idx], [hrs[i] for i in val_idx], scale, 2 * cfg.patch)
    valid = FixedBatches(val_lr, val_hr, batch_size=4, device=dev)
    log.info("%d pairs, %d epochs × %d steps on %s", len(lrs), epochs, per_epoch, dev)
    return fit(model, train, valid, epochs, cfg.lr, cfg.loss, out_log, dev, max_seconds)


def pretrain_temporal(model: nn.Module, images: list[np.ndarray], scale: int, cfg: Pretrain, chain: DegradeChain,
                      out_log: Path, dev: torch.device, max_seconds: float | None = None) -> dict:
    """Train a multi-frame model's fusion branch on synthetic motion clips of `images`, its
    single-frame network (`model.single`) frozen; `pretrain.temporal_steps` steps."""
    radius, motion = model.frames_in // 2, cfg.motion
    val, train_photos = _held_out(len(images), cfg.seed + 1)
    clips, targets = motion_clips([images[i] for i in val], scale, radius, chain, motion, seed=cfg.seed + 2)
    val_lr, val_hr = _center_crops(clips, targets, scale, 2 * cfg.patch)
    valid = FixedBatches(val_lr, val_hr, batch_size=4, device=dev)
    epochs, per_epoch = _epochs(cfg.temporal_steps, cfg.steps_per_epoch)
    train = MotionBatches([images[i] for i in train_photos], scale, radius, chain, motion, cfg.patch, cfg.batch_size,
                          per_epoch, seed=cfg.seed + 3, device=dev)
    log.info("synthetic clips of %d photos (validation: %d fixed clips), %d epochs × %d steps on %s",
             len(train_photos), len(val_lr), epochs, per_epoch, dev)
    model.single.requires_grad_(False)
    try:
        return fit(model, train, valid, epochs, cfg.temporal_lr, cfg.loss, out_log, dev, max_seconds)
    finally:
        model.single.requires_grad_(True)


def pretrain(images: list[np.ndarray], out_model: str | Path, out_log: str | Path, scale: int, model_cfg: Model,
             train_cfg: Pretrain, degrade_cfg: Degrade, device: str = "auto") -> dict:
    """Train the base model on a folder of photos with the configured degradation chain.

    A multi-frame architecture is trained in two stages: its single-frame network (`single`) on
    the still pairs for `pretrain.steps`, then, with that frozen, the rest on synthetic motion
    clips of the same photos (`motion`) for `pretrain.temporal_steps`; `max_seconds` is shared in
    proportion to the steps. The history has a `stage` column then."""
    dev = pick_device(device)
    seed_everything(train_cfg.seed)
    chain = DegradeChain.from_settings(degrade_cfg)
    arch, kwargs = model_cfg.arch, arch_kwargs(model_cfg)
    model = build_model(arch, scale, **kwargs)
    window = frames_in(model_cfg)
    lrs, hrs = make_pairs(images, scale, chain, seed=train_cfg.seed, copies=train_cfg.copies)
    log.info("pretraining %s ×%d on %d images", arch, scale, len(images))
    if window == 1:
        stats = _fit_pairs(model, lrs, hrs, scale, train_cfg, train_cfg.steps, train_cfg.max_seconds, Path(out_log),
                           dev)
    else:
        total = train_cfg.steps + train_cfg.temporal_steps
        budget = [train_cfg.max_seconds and train_cfg.max_seconds * s / total
                  for s in (train_cfg.steps, train_cfg.temporal_steps)]
        logs = [Path(out_log).with_suffix(f".{stage}.csv") for stage in ("single", "temporal")]
        log.info("stage 1 of 2: the single-frame network on still pairs")
        single = _fit_pairs(model.single, lrs, hrs, scale, train_cfg, train_cfg.steps, budget[0], logs[0], dev)
        log.info("stage 2 of 2: the multi-frame branch on synthetic motion clips (single-frame network frozen)")
        temporal = pretrain_temporal(model, images, scale, train_cfg, chain, logs[1], dev, budget[1])
        _join_logs(logs, Path(out_log), "stage", ["single", "temporal"])
        seconds, steps = single["seconds"] + temporal["seconds"], single["steps"] + temporal["steps"]
        stats = {"seconds": round(seconds, 2), "steps": steps, "it_per_s": round(steps / max(seconds, 1e-9), 3),
                 "resumed_from_epoch": 0, "stages": {"single": single, "temporal": temporal}}
    provenance = {"stage": "pretrain", "images": len(images), "videnhance": __version__, **stats}
    save_model(model, out_model, arch, scale, kwargs, provenance)
    return stats


def _center_crops(lrs, hrs, scale, size):
    """Central crops of pairs (inputs may be windows (T, h, w, 3)), all of one size so they stack."""
    out_lr, out_hr = [], []
    for lr, hr in zip(lrs, hrs, strict=True):
        h, w = lr.shape[-3:-1]
        ch, cw = min(size, h), min(size, w)
        y, x = (h - ch) // 2, (w - cw) // 2
        out_lr.append(lr[..., y : y + ch, x : x + cw, :])
        out_hr.append(hr[y * scale : (y + ch) * scale, x * scale : (x + cw) * scale])
    side = min(min(a.shape[-3:-1]) for a in out_lr)
    return [a[..., :side, :side, :] for a in out_lr], [b[: side * scale, : side * scale] for b in out_hr]


# --------------------------------------------------------------------------------------- fine-tune
def near_scale_pairs(teacher: nn.Module, frames: np.ndarray, scale: int, chain: DegradeChain,
                     shrink: tuple[float, float], per_frame: int, crop: int, seed: int,
                     device: torch.device, batch_size: int = 4) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Fine-tuning pairs at the scale the model is used at (Yoo & Kim 2021, "Self-supervised
    adaptation for video super-resolution").

    Each target is the teacher's (the base model's) output for one of the video's frames, shrunk
    by a factor drawn from `shrink` (e.g. 0.85–0.95) and cut to at most `crop` px a side; its input
    is that target degraded by the configured chain. Plain `frame/scale → frame` pairs train the
    model on content `scale` times smaller than it is used on; at ×4 that lowered PSNR on
    ordinary clips, while these pairs raised it on every clip measured (docs/quality.md).
    """
    rng = np.random.default_rng(seed)
    lrs, hrs = [], []
    for start in range(0, len(frames), batch_size):
        for out in teacher_outputs(teacher, frames[start : start + batch_size], device, batch_size):
            for _ in range(per_frame):
                target = shrink_and_crop(out, float(rng.uniform(*shrink)), scale, crop, rng)
                lrs.append(chain.apply_window(target, scale, rng))
                hrs.append(centre(target))
    return lrs, hrs


def _file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes: what a resumed run must match (same size is not same content)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def keep_base(base_model_path: str | Path, out_model: str | Path, out_log: str | Path, out_verdict: str | Path,
              reason: str) -> Verdict:
    """The base model becomes the video's model, untouched; the verdict says why."""
    with atomic_output(out_model) as tmp:
        shutil.copyfile(base_model_path, tmp)
    atomic_write_text(out_log, "epoch,train_loss,valid_loss,psnr_metric,time\n")
    verdict = Verdict(kept="base", reason=reason)
    verdict.write(out_verdict)
    return verdict


def run_fingerprint(cfg: FineTune, degrade_cfg: Degrade, pairs_path: str | Path, base_model_path: str | Path) -> str:
    """What a fine-tune's checkpoints are valid for: its settings, the library version and the
    exact bytes of its pairs and base model. A rerun resumes only a checkpoint with the same one;
    after the base is retrained or the degradation changed, it starts over."""
    return hashlib.sha256(json.dumps([cfg.as_dict(), degrade_cfg.as_dict(), __version__, _file_digest(pairs_path),
                                      _file_digest(base_model_path)], sort_keys=True).encode()).hexdigest()


def _state_copy(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _round_done(path: Path, fingerprint: str, model: nn.Module) -> dict | None:
    """What a killed run saved after finishing this round (same settings only): the weights are
    loaded into `model`; returns the round's bookkeeping, or None."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != fingerprint:
        return None
    model.load_state_dict(state["model"])
    return state


def _join_logs(logs: list[Path], out_log: Path, column: str, labels: list) -> None:
    """One history from the fastai CSV logs of several rounds or stages, with a `column` naming each."""
    import pandas as pd

    frames = [pd.read_csv(p).assign(**{column: label}) for p, label in zip(logs, labels, strict=True) if p.exists()]
    with atomic_output(out_log) as tmp:
        pd.concat(frames).to_csv(tmp, index=False)
    for p in logs:
        p.unlink(missing_ok=True)


class RoundTracker:
    """Early stopping per round, in the manner of fastai's `TrackerCallback` family: after each
    round the model is scored on the held-out pairs (`guard.Judge`); a round that does not improve
    on the best model so far (`guard.Rule.better`) is undone, its weights replaced by the best
    ones, and the next round runs at lr × `backoff`. After `patience` undone rounds in a row the
    fine-tune stops: more rounds from the same weights at a lower rate rarely pay for themselves.
    With `guard` False every round is kept (to measure the signal, `tools/guard_signal.py`)."""

    def __init__(self, rule: Rule, judge: Judge, model: nn.Module, lr: float, backoff: float, patience: int,
                 guard: bool = True):
        self.rule, self.judge, self.guard = rule, judge, guard
        self.lr, self.backoff, self.patience = lr, backoff, patience
        self.best: dict[str, Signal] | None = None  # signals of the best model so far; None = the base
        self.best_state, self.best_scores = _state_copy(model), judge.base_scores
        self.undone_in_a_row, self.report = 0, []
        self.last: dict[str, Signal] | None = None  # the signals of the last round scored

    @property
    def stopped(self) -> bool:
        return bool(self.guard and self.patience and self.undone_in_a_row >= self.patience)

    def after_round(self, r: int, model: nn.Module) -> bool:
        scores = self.judge.score(model)
        signals = self.judge.signals(scores)
        kept = not self.guard or self.rule.better(signals, self.best)
        why = self.rule.decide(signals)[1]
        self.report.append({"round": r, "lr": self.lr, "kept": kept,
                            "signals": {k: v.as_dict() for k, v in signals.items()}, "guard": why})
        self.last = signals
        if kept:
            self.best, self.best_state, self.best_scores = signals, _state_copy(model), scores
            self.undone_in_a_row = 0
        else:
            model.load_state_dict(self.best_state)
            self.lr *= self.backoff
            self.undone_in_a_row += 1
            log.info("round %d not kept (%s); undone, next lr %g", r, why, self.lr)
        return kept

    def state(self) -> dict:
        """What a resumed run needs (the weights are saved beside it)."""
        best = {k: v.as_dict() for k, v in self.best.items()} if self.best else None
        return {"lr": self.lr, "undone_in_a_row": self.undone_in_a_row, "report": self.report, "best": best}

    def load_state(self, state: dict, model: nn.Module) -> None:
        self.lr, self.undone_in_a_row, self.report = state["lr"], state["undone_in_a_row"], state["report"]
        self.best = {k: Signal(**v) for k, v in state["best"].items()} if state["best"] else None
        self.last = {k: Signal(**v) for k, v in self.report[-1]["signals"].items()} if self.report else None
        self.best_state = _state_copy(model)
        self.best_scores = self.judge.score(model) if self.best else self.judge.base_scores


def held_out_judge(base: nn.Module, lr_val: np.ndarray, hr_val: np.ndarray, scale: int, cfg: FineTune,
                   chain: DegradeChain, device: torch.device, val_frames: np.ndarray | None = None) -> Judge:
    """The guard's held-out pairs for one video (`guard`): its frame pairs as `degrade` made them,
    and near-scale pairs made from the same held-out frames (`val_frames`, default `hr_val`; the
    windows around them for a multi-frame model) by the base model."""
    near = near_scale_set(base, hr_val if val_frames is None else val_frames, scale, chain, tuple(cfg.shrink),
                          cfg.guard_targets_per_frame, crop=8 * cfg.patch * scale, seed=cfg.seed + 7919, device=device)
    frame = HeldOutSet(list(lr_val), list(hr_val), np.arange(len(lr_val)))
    return Judge({"frame": frame, "near_scale": near}, base, device)


@dataclass
class VideoPairs:
    """One video's pairs file (the `degrade` step's), split into training and held-out pairs."""

    lr_train: np.ndarray  # inputs (n, h, w, 3), or windows (n, T, h, w, 3) for a multi-frame model
    hr_train: np.ndarray
    train_frames: np.ndarray  # each training frame (or its window) once (`degrade.copies` may repeat them)
    lr_val: np.ndarray
    hr_val: np.ndarray
    val_frames: np.ndarray  # the held-out frames, or their windows

    @classmethod
    def load(cls, path: str | Path) -> VideoPairs:
        pairs = load_npz(path)
        is_val = pairs["is_val"].astype(bool)
        _, first = np.unique(pairs["indices"][~is_val], return_index=True)
        hr_train = pairs["hr"][~is_val]
        full = pairs.get("hr_window", pairs["hr"])
        return cls(pairs["lr"][~is_val], hr_train, full[~is_val][np.sort(first)], pairs["lr"][is_val],
                   pairs["hr"][is_val], full[is_val])


class Rounds:
    """The files of a fine-tune's rounds: each round's log and checkpoint, a `.done` file per
    finished round (so a killed run resumes in the round it was in, with the same settings and
    inputs only: `fingerprint`), and the totals of what was trained."""

    def __init__(self, cfg: FineTune, out_model: Path, out_log: Path, fingerprint: str):
        self.count = int(cfg.rounds) if cfg.pairs == "near_scale" else 1
        self.out_model, self.out_log, self.fingerprint = out_model, out_log, fingerprint
        self.epochs, self.per_epoch = _epochs(max(1, cfg.steps // self.count), cfg.steps_per_epoch)
        self.max_seconds = cfg.max_seconds and cfg.max_seconds / self.count
        self.totals = {"seconds": 0.0, "steps": 0, "resumed_from_epoch": 0}
        self.run = 0

    def log(self, r: int) -> Path:
        return self.out_log if self.count == 1 else self.out_log.with_suffix(f".round{r + 1}.csv")

    def checkpoint(self, r: int) -> Path:
        return self.out_model.with_suffix(f".round{r + 1}.ckpt" if self.count > 1 else ".ckpt")

    def done(self, r: int) -> Path:
        return self.out_model.with_suffix(f".round{r + 1}.done")

    def resume(self, r: int, model: nn.Module, tracker: RoundTracker) -> bool:
        """Whether an earlier run finished round `r` (then its weights and the tracker are restored)."""
        self.run = r + 1
        saved = _round_done(self.done(r), self.fingerprint, model) if self.count > 1 else None
        if saved is not None:
            log.info("round %d of %d was finished by an earlier run; going on", r + 1, self.count)
            tracker.load_state(json.loads(saved["tracker"]), model)
        return saved is not None

    def finish(self, r: int, model: nn.Module, tracker: RoundTracker, stats: dict) -> None:
        self.totals["seconds"] += stats["seconds"]
        self.totals["steps"] += stats["steps"]
        self.totals["resumed_from_epoch"] = self.totals["resumed_from_epoch"] or stats["resumed_from_epoch"]
        if self.count > 1:
            with atomic_output(self.done(r)) as tmp:
                torch.save({"fingerprint": self.fingerprint, "model": model.state_dict(),
                            "tracker": json.dumps(tracker.state())}, tmp)
        self.checkpoint(r).unlink(missing_ok=True)

    def join_logs(self) -> None:
        """One history file for the run, with a `round` column (written before the model, so a
        run killed in between has no complete-looking outputs)."""
        if self.count > 1:
            _join_logs([self.log(r) for r in range(self.run)], self.out_log, "round", list(range(1, self.run + 1)))

    def clean_up(self) -> None:
        """The `.done` files go once the delivered model and the verdict are written."""
        for r in range(self.count):
            self.done(r).unlink(missing_ok=True)

    def stats(self) -> dict:
        t = self.totals
        return {"seconds": round(t["seconds"], 2), "steps": t["steps"],
                "it_per_s": round(t["steps"] / max(t["seconds"], 1e-9), 3),
                "resumed_from_epoch": t["resumed_from_epoch"],
                "rounds": self.count, "rounds_run": self.run}


def _train_round(model: nn.Module, r: int, data: VideoPairs, scale: int, chain: DegradeChain, cfg: FineTune, lr: float,
                 rounds: Rounds, device: torch.device) -> dict:
    """One round of training in place: near-scale targets from the model as it is now (the base,
    then the best round's), or the frame pairs; fastai's one-cycle at `lr`."""
    lr_train, hr_train = data.lr_train, data.hr_train
    if cfg.pairs == "near_scale":
        lr_train, hr_train = near_scale_pairs(model, data.train_frames, scale, chain, tuple(cfg.shrink),
                                              cfg.targets_per_frame, crop=4 * cfg.patch * scale,
                                              seed=cfg.seed + r, device=device)
    train = PatchBatches(list(lr_train), list(hr_train), scale, cfg.patch, cfg.batch_size, rounds.per_epoch,
                         seed=cfg.seed + r, device=device)
    valid = FixedBatches(list(data.lr_val), list(data.hr_val), batch_size=2, device=device)
    log.info("fine-tuning%s on %d %s pairs from %d frames (validation %d), %d epochs × %d steps, lr %g, on %s",
             f" round {r + 1} of {rounds.count}" if rounds.count > 1 else "", len(lr_train), cfg.pairs,
             len(data.train_frames), len(data.lr_val), rounds.epochs, rounds.per_epoch, lr, device)
    stats = fit(model, train, valid, rounds.epochs, lr, cfg.loss, rounds.log(r), device, rounds.max_seconds,
                checkpoint=rounds.checkpoint(r), fingerprint=f"{rounds.fingerprint}:{r}:{lr}")
    return {**stats, "train_pairs": len(lr_train)}


def _versus_single_frame(judge: Judge, rule: Rule, single: LoadedModel, kept: str, delivered: nn.Module,
                         signals: dict[str, Signal], reason: str, kept_scores: dict[str, np.ndarray]):
    """The guard's choice between the multi-frame model it kept (the fine-tuned one or the base)
    and the base's own single-frame network: the single-frame one is delivered only if it beats
    the kept model by the same rule a fine-tuned model must pass."""
    single_scores = judge.score(single.module)
    name = "the fine-tuned model" if kept == "fine_tuned" else "the base model"
    better, why = rule.decide(judge.signals(single_scores, against=kept_scores), "the base's single-frame network",
                              name)
    if not better:
        return kept, delivered, signals, f"{reason}. Then: {why}"
    return "single_frame", single.module, judge.signals(single_scores), f"{reason}. Then: {why}"


def _decide(cfg: FineTune, rule: Rule, judge: Judge, tracker: RoundTracker, rounds: Rounds, model: nn.Module,
            base: LoadedModel) -> tuple[str, nn.Module, dict[str, Signal], str, LoadedModel | None]:
    """The guard's choice once the rounds are done: (kept, the delivered module, the held-out
    signals it was judged on, the reason, the base's single-frame network or None)."""
    signals = judge.signals(tracker.best_scores)
    if not cfg.guard:
        keep, reason = True, "guard off (fine_tune.guard: false): the fine-tuned model is delivered unchecked"
    elif tracker.best is None and tracker.last is not None:  # every round run was undone: report what it measured
        signals, skipped = tracker.last, rounds.count - rounds.run
        also = f" and {skipped} later round(s) skipped" if skipped else ""
        keep, reason = False, f"round {tracker.report[-1]['round']} was undone{also}: {tracker.report[-1]['guard']}"
    else:
        keep, reason = rule.decide(signals)
    delivered, single = (model if keep else base.module), base.single_frame()
    kept = "fine_tuned" if keep else "base"
    if single is not None and cfg.guard:  # a multi-frame base: its single-frame network is the third choice
        kept, delivered, signals, reason = _versus_single_frame(judge, rule, single, kept, delivered, signals, reason,
                                                                tracker.best_scores if keep else judge.base_scores)
    return kept, delivered, signals, reason, single


def freeze_all_but_tail(model: nn.Module, layers: int = 2) -> list[str]:
    """Freeze every parameter but those of the last `layers` modules with weights (in the order
    the network registers them: its output end); returns the names of the modules left to train."""
    weighted = [(name, m) for name, m in model.named_modules() if isinstance(getattr(m, "weight", None), nn.Parameter)]
    model.requires_grad_(False)
    for _, module in weighted[-layers:]:
        module.requires_grad_(True)
    return [name for name, _ in weighted[-layers:]]


def fine_tune(pairs_path: str | Path, base_model_path: str | Path, out_model: str | Path, out_log: str | Path,
              out_verdict: str | Path, cfg: FineTune, device: str = "auto", *, degrade_cfg: Degrade) -> Verdict:
    """Fine-tune the base model on one video; deliver it only if the guard finds it better than
    the base on the video's held-out frames (`guard`). Writes the delivered model and a verdict.

    `cfg.pairs` picks the training pairs: "near_scale" (the model's own output, shrunk
    slightly, → the same degraded; see `near_scale_pairs`) or "frame" (degraded frame → frame, as
    made by the `degrade` step). `degrade_cfg` is the configured chain: near-scale inputs are made
    with it, as the `degrade` step made the frame pairs.

    The steps are split into rounds, each scored on the held-out pairs (`RoundTracker`): a round
    that does not improve them is undone and the next runs at `lr × lr_backoff`, and after
    `patience` undone rounds in a row the fine-tune stops. The guard (`guard.Rule`) then judges
    the best round against the base on the same pairs, so with a little selection optimism;
    `guard_z` and the frame-pair margin keep it conservative."""
    dev = pick_device(device)
    seed_everything(cfg.seed)
    base = load_model(base_model_path)
    if base.arch.from_weights:  # a community network: only architectures verified to train here
        from .community import check_trainable

        check_trainable(base.kwargs, base.provenance.get("source", base_model_path))
    data = VideoPairs.load(pairs_path)
    if len(data.lr_val) == 0:  # one-frame clip, or extract.val_fraction 0
        reason = ("no held-out frames (a one-frame clip, or extract.val_fraction: 0), so the guard could not "
                  "check a fine-tuned model; the base model is kept without fine-tuning")
        log.warning("%s: %s", pairs_path, reason)
        return keep_base(base_model_path, out_model, out_log, out_verdict, reason)
    chain, rule = DegradeChain.from_settings(degrade_cfg), Rule.from_settings(cfg)
    judge = held_out_judge(base.module, data.lr_val, data.hr_val, base.scale, cfg, chain, dev, data.val_frames)
    model = copy.deepcopy(base.module)  # trained in place; `base` stays the base
    if cfg.layers == "tail":
        freeze_all_but_tail(model)
    lr = fine_tune_lr(cfg.lr, base.arch.name, base.arch.residual)
    log.info("fine-tuning a %s base (%s) at peak lr %g%s", base.arch.name,
             "residual over bicubic" if base.arch.residual else "full output", lr,
             " (fine_tune.lr: auto)" if cfg.lr == AUTO else "")
    tracker = RoundTracker(rule, judge, model, lr, float(cfg.lr_backoff), cfg.patience,
                           guard=cfg.guard)
    rounds = Rounds(cfg, Path(out_model), Path(out_log), run_fingerprint(cfg, degrade_cfg, pairs_path, base_model_path))
    train_pairs = len(data.lr_train)
    for r in range(rounds.count):
        if tracker.stopped:
            log.info("stopping after round %d: %d round(s) in a row did not improve the held-out pairs "
                     "(fine_tune.patience); rounds %d-%d skipped", r, tracker.undone_in_a_row, r + 1, rounds.count)
            break
        if rounds.resume(r, model, tracker):
            continue
        stats = _train_round(model, r, data, base.scale, chain, cfg, tracker.lr, rounds, dev)
        train_pairs = stats["train_pairs"]
        tracker.after_round(r + 1, model)
        rounds.finish(r, model, tracker, stats)
    rounds.join_logs()
    kept, delivered, signals, reason, single = _decide(cfg, rule, judge, tracker, rounds, model, base)
    verdict = Verdict(kept=kept, reason=reason, signal=rule.signal, gain_db=signals[rule.signal].gain_db,
                      gain_stderr_db=signals[rule.signal].stderr_db,
                      signals={k: v.as_dict() for k, v in signals.items()}, val_frames=len(data.lr_val),
                      train_frames=len(data.train_frames), train_pairs=train_pairs,
                      val_psnr_y={"bicubic": judge.mean_psnr(judge.score(None, names=("frame",)))["frame"],
                                  "milestone": judge.mean_psnr(judge.base_scores)["frame"],
                                  "fine_tuned": judge.mean_psnr(tracker.best_scores)["frame"]},
                      lr=lr, pairs=cfg.pairs, device=str(dev), **rounds.stats(), round_report=tracker.report)
    owner = single if kept == "single_frame" else base
    owner.save(out_model, {"stage": "fine_tune", "base": str(base_model_path), "videnhance": __version__,
                           **verdict.as_dict()}, module=delivered)
    verdict.write(out_verdict)
    rounds.clean_up()
    log.info("verdict: %s", reason)
    return verdict
