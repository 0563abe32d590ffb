"""The fastai glue: `fit` trains a model in place with fastai's `Learner` (one-cycle schedule,
Adam, bf16 mixed precision on CUDA, a CSV log, fastprogress's bars on a terminal and plain log
lines elsewhere), fed by in-memory patch batches (`data.PatchBatches`), with a checkpoint after
every epoch that a killed run resumes from. The callbacks are module-level classes, as fastai's
own are (`fastai.callback.tracker`)."""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.progress import CSVLogger, ProgressCallback
from fastai.callback.schedule import fit_one_cycle  # noqa: F401 - patches Learner.fit_one_cycle
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.optimizer import Adam
from torch import nn

from ..data import FixedBatches, PatchBatches
from ..files import atomic_output
from .losses import MixedLoss, psnr_metric

log = logging.getLogger(__name__)


class TimeBudget(Callback):
    """Stop training once `max_seconds` have passed (checked after every batch)."""

    order = 100

    def __init__(self, max_seconds: float | None):
        self.max_seconds = max_seconds

    def before_fit(self):
        self.start = time.monotonic()

    def after_batch(self):
        if self.max_seconds and time.monotonic() - self.start > self.max_seconds:
            log.info("time budget of %.0f s reached; stopping", self.max_seconds)
            raise CancelFitException()


class PlainProgress(Callback):
    """Progress for log files, in place of fastprogress's bars (whose carriage-return frames made a
    fine-tune log 31 kB): one log line per epoch with its losses and metric, and one every
    `every_seconds` inside a long epoch."""

    order = 61  # after the Recorder (50) has computed the epoch's values

    def __init__(self, every_seconds: float = 10.0):
        self.every_seconds = every_seconds

    def before_fit(self):
        self.start = self.last = time.monotonic()

    def after_batch(self):
        now = time.monotonic()
        if self.training and now - self.last >= self.every_seconds:
            self.last = now
            log.info("epoch %d/%d: step %d/%d, smoothed loss %.5f, %.0f s", self.epoch + 1, self.n_epoch,
                     self.iter + 1, self.n_iter, float(self.smooth_loss), now - self.start)

    def after_epoch(self):
        self.last = time.monotonic()
        values = dict(zip(self.recorder.metric_names, self.recorder.log, strict=False))
        shown = ", ".join(f"{k} {v:.5f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()
                          if k != "epoch")
        log.info("epoch %d/%d: %s", self.epoch + 1, self.n_epoch, shown)


class EpochCheckpoint(Callback):
    """After every epoch: model, optimiser, sampler RNG and the log so far, written atomically, so
    a killed run resumes where it stopped instead of starting over."""

    order = 65  # after the CSV logger has written the epoch's line

    def __init__(self, path: Path, fingerprint: str, train: PatchBatches, log_csv: Path, previous_rows: str):
        self.path, self.fingerprint, self.train = path, fingerprint, train
        self.log_csv, self.previous_rows = log_csv, previous_rows

    def after_epoch(self):
        rows = self.previous_rows + (self.log_csv.read_text().split("\n", 1)[1] if self.log_csv.exists() else "")
        state = {"fingerprint": self.fingerprint, "epoch": self.epoch + 1, "model": self.learn.model.state_dict(),
                 "opt": _plain_opt_state(self.learn.opt.state_dict()), "sampler": self.train.gen.get_state(),
                 "history": rows}
        with atomic_output(self.path) as tmp:
            torch.save(state, tmp)


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
    log_csv = Path(log_csv)
    log_csv.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(checkpoint) if checkpoint else None
    resume = _load_checkpoint(checkpoint, fingerprint)
    dls = DataLoaders(train, valid, path=log_csv.parent, device=device)
    cbs = [CSVLogger(fname=log_csv.name), TimeBudget(max_seconds)]
    if checkpoint:
        cbs.append(EpochCheckpoint(checkpoint, fingerprint, train, log_csv, resume["history"] if resume else ""))
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
            learn.add_cb(PlainProgress())
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


def epochs_of(steps: int, steps_per_epoch: int) -> tuple[int, int]:
    steps_per_epoch = max(1, min(steps_per_epoch, steps))
    return math.ceil(steps / steps_per_epoch), steps_per_epoch


def join_logs(logs: list[Path], out_log: Path, column: str, labels: list) -> None:
    """One history from the fastai CSV logs of several rounds or stages, with a `column` naming each."""
    import pandas as pd

    frames = [pd.read_csv(p).assign(**{column: label}) for p, label in zip(logs, labels, strict=True) if p.exists()]
    with atomic_output(out_log) as tmp:
        pd.concat(frames).to_csv(tmp, index=False)
    for p in logs:
        p.unlink(missing_ok=True)
