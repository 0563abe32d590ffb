"""The base model, trained on photos with the configured degradation chain; a multi-frame model in
two stages, its single-frame network on still pairs, then its fusion branch on synthetic motion
clips of the same photos (`motion`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..archs import arch_kwargs, frames_in
from ..data import FixedBatches, PatchBatches
from ..degrade import DegradeChain, make_pairs
from ..infer import pick_device
from ..models import build_model, save_model
from ..motion import MotionBatches, motion_clips
from ..settings import Degrade, Model, Pretrain
from .learner import epochs_of, fit, join_logs, seed_everything

log = logging.getLogger(__name__)


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
    epochs, per_epoch = epochs_of(steps, cfg.steps_per_epoch)
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
    epochs, per_epoch = epochs_of(cfg.temporal_steps, cfg.steps_per_epoch)
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
        join_logs(logs, Path(out_log), "stage", ["single", "temporal"])
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
