"""One video's fine-tune: the base model trained on the video's own near-scale pairs in rounds,
each judged on held-out stretches of the video (`guard`), and the verdict that says what was
delivered and why (`verdict.Verdict`)."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..data import FixedBatches, PatchBatches
from ..defaults import AUTO, fine_tune_lr
from ..degrade import DegradeChain
from ..files import atomic_output, atomic_write_text
from ..infer import pick_device
from ..models import load_model
from ..samples import load_npz
from ..settings import Degrade, FineTune
from ..verdict import Verdict
from .guard import RoundTracker, Rule, choose, held_out_judge
from .learner import epochs_of, fit, join_logs, seed_everything
from .near_scale import near_scale_pairs

log = logging.getLogger(__name__)


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
        self.epochs, self.per_epoch = epochs_of(max(1, cfg.steps // self.count), cfg.steps_per_epoch)
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
            join_logs([self.log(r) for r in range(self.run)], self.out_log, "round", list(range(1, self.run + 1)))

    def clean_up(self) -> None:
        """The `.done` files go once the delivered model and the verdict are written."""
        for r in range(self.count):
            self.done(r).unlink(missing_ok=True)

    def stats(self) -> dict:
        t = self.totals
        return {"seconds": round(t["seconds"], 2), "steps": t["steps"],
                "it_per_s": round(t["steps"] / max(t["seconds"], 1e-9), 3),
                "resumed_from_epoch": t["resumed_from_epoch"],
                "rounds": self.count, "rounds_run": self.run, "threads": torch.get_num_threads()}


@dataclass(frozen=True)
class RoundDone:
    """What `fine_tune`'s `on_round` hook is shown after each round it trains: the round (from 1),
    the model as that round left it (before the guard keeps or undoes it), the pairs it trained
    on, and the degradation chain that made their inputs."""

    number: int
    model: nn.Module
    lr_train: list[np.ndarray]
    hr_train: list[np.ndarray]
    chain: DegradeChain


def _train_round(model: nn.Module, r: int, data: VideoPairs, scale: int, chain: DegradeChain, cfg: FineTune, lr: float,
                 rounds: Rounds, device: torch.device) -> tuple[dict, list[np.ndarray], list[np.ndarray]]:
    """One round of training in place: near-scale targets from the model as it is now (the base,
    then the best round's), or the frame pairs; fastai's one-cycle at `lr`. Returns the stats and
    the pairs."""
    lr_train, hr_train = list(data.lr_train), list(data.hr_train)
    if cfg.pairs == "near_scale":
        lr_train, hr_train, _ = near_scale_pairs(model, data.train_frames, scale, chain, tuple(cfg.shrink),
                                                 cfg.targets_per_frame, crop=4 * cfg.patch * scale,
                                                 seed=cfg.seed + r, device=device)
    train = PatchBatches(lr_train, hr_train, scale, cfg.patch, cfg.batch_size, rounds.per_epoch,
                         seed=cfg.seed + r, device=device)
    valid = FixedBatches(list(data.lr_val), list(data.hr_val), batch_size=2, device=device)
    log.info("fine-tuning%s on %d %s pairs from %d frames (validation %d), %d epochs × %d steps, lr %g, on %s",
             f" round {r + 1} of {rounds.count}" if rounds.count > 1 else "", len(lr_train), cfg.pairs,
             len(data.train_frames), len(data.lr_val), rounds.epochs, rounds.per_epoch, lr, device)
    stats = fit(model, train, valid, rounds.epochs, lr, cfg.loss, rounds.log(r), device, rounds.max_seconds,
                checkpoint=rounds.checkpoint(r), fingerprint=f"{rounds.fingerprint}:{r}:{lr}")
    return {**stats, "train_pairs": len(lr_train)}, lr_train, hr_train


def freeze_all_but_tail(model: nn.Module, layers: int = 2) -> list[str]:
    """Freeze every parameter but those of the last `layers` modules with weights (in the order
    the network registers them: its output end); returns the names of the modules left to train."""
    weighted = [(name, m) for name, m in model.named_modules() if isinstance(getattr(m, "weight", None), nn.Parameter)]
    model.requires_grad_(False)
    for _, module in weighted[-layers:]:
        module.requires_grad_(True)
    return [name for name, _ in weighted[-layers:]]


def fine_tune(pairs_path: str | Path, base_model_path: str | Path, out_model: str | Path, out_log: str | Path,
              out_verdict: str | Path, cfg: FineTune, device: str = "auto", *, degrade_cfg: Degrade,
              on_round: Callable[[RoundDone], None] | None = None) -> Verdict:
    """Fine-tune the base model on one video; deliver it only if the guard finds it better than
    the base on the video's held-out frames (`guard`). Writes the delivered model and a verdict.

    `cfg.pairs` picks the training pairs: "near_scale" (the model's own output, shrunk
    slightly, → the same degraded; see `near_scale`) or "frame" (degraded frame → frame, as
    made by the `degrade` step). `degrade_cfg` is the configured chain: near-scale inputs are made
    with it, as the `degrade` step made the frame pairs.

    The steps are split into rounds, each scored on the held-out pairs (`RoundTracker`): a round
    that does not improve them is undone and the next runs at `lr × lr_backoff`, and after
    `patience` undone rounds in a row the fine-tune stops. The guard (`guard.Rule`) then judges
    the best round against the base on the same pairs, so with a little selection optimism;
    `guard_z` and the frame-pair margin keep it conservative. `on_round` is shown each round as it
    finishes (`RoundDone`): what the measurement tools record (`tools/guard_signal.py`)."""
    dev = pick_device(device)
    seed_everything(cfg.seed)
    base = load_model(base_model_path)
    if base.arch.from_weights:  # a community network: only architectures verified to train here
        from ..community import check_trainable

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
        stats, lr_train, hr_train = _train_round(model, r, data, base.scale, chain, cfg, tracker.lr, rounds, dev)
        train_pairs = stats["train_pairs"]
        if on_round is not None:
            on_round(RoundDone(r + 1, model, lr_train, hr_train, chain))
        tracker.after_round(r + 1, model)
        rounds.finish(r, model, tracker, stats)
    rounds.join_logs()
    kept, delivered, signals, reason, single = choose(cfg, rule, judge, tracker, rounds.count - rounds.run, model,
                                                      base)
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
