"""The guard: is the fine-tuned model better than the base model on *this* video?

The fine-tune never sees the video's ground truth (there is none in enhance mode), so it is judged
on held-out stretches of the video's own frames (`samples.split_train_val`), with two kinds of pairs:

- **frame**: held-out frame degraded ×scale → that frame. The target is real video, but the
  content is `scale` times smaller than the model meets in use: at ×4 a 480×360 frame is judged
  on 120×90 inputs.
- **near_scale**: the base model's output for a held-out frame, shrunk by factors spread over
  `fine_tune.shrink`, → that degraded by the configured chain. Pairs at the scale of use, made the
  way the near-scale training pairs are (`near_scale`), from held-out frames only.
  The target is the base model's output, not real video.

Every model (the base, each round, the result) is scored on the same fixed pairs: inference
only. A held-out frame is the unit of evidence: its near-scale pairs are averaged first, and the
mean per-frame gain over the base and its standard error across frames decide
(`Rule.decide`). Which signal decides, and the margins, were chosen by the table in
docs/quality.md (`tools/guard_signal.py` measures it).

Here too are the guard's decisions during and after a fine-tune: early stopping per round
(`RoundTracker`), the held-out pairs of a video (`held_out_judge`), and the final choice among the
fine-tuned model, the base and a multi-frame base's own single-frame network (`choose`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..degrade import DegradeChain
from ..infer import run_model
from ..metrics import psnr, rgb_to_y
from ..models import LoadedModel
from ..settings import FineTune
from .near_scale import near_scale_pairs

log = logging.getLogger(__name__)


@dataclass
class HeldOutSet:
    """Evaluation pairs and the held-out frame each came from (its `group`)."""

    lr: list[np.ndarray]
    hr: list[np.ndarray]
    group: np.ndarray


@dataclass
class Signal:
    """A model's Y-PSNR gain over the base on one held-out set: mean over held-out frames of the
    per-frame gain (each frame's pairs averaged first), its standard error, and the counts."""

    gain_db: float
    stderr_db: float
    frames: int
    pairs: int

    def as_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _y_psnr(model: nn.Module | None, held: HeldOutSet, device: torch.device, batch_size: int = 4) -> np.ndarray:
    """Per-pair Y-PSNR of `model` (bicubic when None); pairs of one size run in batches."""
    scores = np.empty(len(held.lr))
    shapes: dict[tuple, list[int]] = {}
    for i, lr in enumerate(held.lr):
        shapes.setdefault(lr.shape, []).append(i)
    for idx in shapes.values():
        lr = np.stack([held.lr[i] for i in idx])
        outs = run_model(model, lr, held.hr[idx[0]].shape[:2], device=device, batch_size=batch_size)
        for i, out in zip(idx, outs, strict=True):
            scores[i] = psnr(rgb_to_y(held.hr[i]), rgb_to_y(out))
    return scores


class Judge:
    """Scores models on fixed held-out sets and compares them with the base model.

    `sets` maps a signal name to its pairs; the base is scored once, here."""

    def __init__(self, sets: dict[str, HeldOutSet], base: nn.Module, device: torch.device):
        self.sets, self.device = sets, device
        self.base_scores = self.score(base)

    def score(self, model: nn.Module | None, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Per-pair Y-PSNR of `model` (bicubic when None) on the named sets (default: all)."""
        return {name: _y_psnr(model, held, self.device) for name, held in self.sets.items()
                if names is None or name in names}

    def mean_psnr(self, scores: dict[str, np.ndarray]) -> dict[str, float]:
        return {name: float(s.mean()) for name, s in scores.items()}

    def signals(self, scores: dict[str, np.ndarray], against: dict[str, np.ndarray] | None = None) -> dict[str, Signal]:
        """The gain of a model with these `scores` over the base (or over the model scored `against`)."""
        reference = self.base_scores if against is None else against
        return {name: gain_signal(reference[name], scores[name], held.group) for name, held in self.sets.items()}


def gain_signal(base: np.ndarray, scores: np.ndarray, group: np.ndarray) -> Signal:
    """Per-pair Y-PSNR of a model and of the base → the gain per held-out frame (its pairs
    averaged), its mean and standard error across frames."""
    diff = np.asarray(scores, float) - np.asarray(base, float)
    per_frame = np.array([diff[group == g].mean() for g in np.unique(group)])
    n = len(per_frame)
    stderr = float(per_frame.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    return Signal(float(per_frame.mean()), stderr, n, len(diff))


@dataclass(frozen=True)
class Rule:
    """What the guard asks of a fine-tuned model (config keys under `fine_tune`):

    - `signal` (`guard_signal`): the held-out set whose mean per-frame gain must exceed
      `min_gain_db` and `z` (`guard_z`) standard errors;
    - `frame_margin_db` (`guard_frame_margin_db`): with the near_scale signal, the frame pairs,
      the only held-out pairs with real targets, must not lose more than this (non-inferiority;
      null = not checked).
    """

    signal: str
    min_gain_db: float
    z: float
    frame_margin_db: float | None

    @classmethod
    def from_settings(cls, cfg: FineTune) -> Rule:
        return cls(cfg.guard_signal, float(cfg.min_gain_db), float(cfg.guard_z), cfg.guard_frame_margin_db)

    def decide(self, signals: dict[str, Signal], model: str = "fine-tuned",
               reference: str = "the base model") -> tuple[bool, str]:
        """(keep the fine-tuned model?, why) from the signals of the model against the base. The
        names say which two models are compared (the guard also weighs a multi-frame model
        against its own single-frame network)."""
        s = signals[self.signal]
        gains = [x.gain_db for x in signals.values()]
        where = f"on {s.frames} held-out frames ({self.signal} pairs)"
        keeping = f"keeping {reference}"
        if not np.isfinite(gains).all():
            return False, f"a held-out score is not finite ({gains}); {keeping}"
        if s.gain_db <= self.min_gain_db:
            return False, (f"{model} did not beat {reference} by more than {self.min_gain_db} dB ({s.gain_db:+.3f} dB "
                           f"{where}); {keeping}")
        if self.z and s.gain_db <= self.z * s.stderr_db:
            return False, (f"{model} gains {s.gain_db:+.3f} dB {where}, within noise (less than {self.z:g} × "
                           f"{s.stderr_db:.3f} dB standard error); {keeping}")
        frame = signals.get("frame")
        if self.signal != "frame" and self.frame_margin_db is not None and frame is not None:
            if frame.gain_db < -self.frame_margin_db:
                return False, (f"{model} gains {s.gain_db:+.3f} dB {where} but loses {frame.gain_db:+.3f} dB on the "
                               f"held-out frame pairs (more than the {self.frame_margin_db} dB allowed); {keeping}")
        extra = f"; frame pairs {frame.gain_db:+.3f} dB" if frame is not None and self.signal != "frame" else ""
        return True, f"{model} beats {reference} by {s.gain_db:+.3f} dB Y-PSNR (±{s.stderr_db:.3f} s.e.) {where}{extra}"

    def better(self, signals: dict[str, Signal], best: dict[str, Signal] | None) -> bool:
        """Should a round's model replace the best one so far (None: the base)?

        With the frame signal: if its frame-pair gain is higher. With the near_scale signal: if the
        round passes the guard on its own (`decide`) and its frame-pair gain is no more than
        `frame_margin_db` below the best round's. Near-scale gains are not compared between rounds:
        their targets are the base model's output, and a round that trained on better targets
        (round 2 remakes them with round 1's model) moves away from those while getting closer to
        the truth (docs/quality.md: on coffee_pushin ×4 the near-scale gain fell from +1.73 to
        +1.55 dB from round 1 to 2 while the ground-truth gain rose from +0.42 to +0.67)."""
        if self.signal == "frame":
            gain = signals["frame"].gain_db
            return bool(np.isfinite(gain) and gain > (best["frame"].gain_db if best else 0.0))
        if not self.decide(signals)[0]:
            return False
        if best is None or self.frame_margin_db is None:
            return True
        return signals["frame"].gain_db >= best["frame"].gain_db - self.frame_margin_db


def state_copy(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class RoundTracker:
    """Early stopping per round, in the manner of fastai's `TrackerCallback` family: after each
    round the model is scored on the held-out pairs (`Judge`); a round that does not improve
    on the best model so far (`Rule.better`) is undone, its weights replaced by the best
    ones, and the next round runs at lr × `backoff`. After `patience` undone rounds in a row the
    fine-tune stops: more rounds from the same weights at a lower rate rarely pay for themselves.
    With `guard` False every round is kept (to measure the signal, `tools/guard_signal.py`)."""

    def __init__(self, rule: Rule, judge: Judge, model: nn.Module, lr: float, backoff: float, patience: int,
                 guard: bool = True):
        self.rule, self.judge, self.guard = rule, judge, guard
        self.lr, self.backoff, self.patience = lr, backoff, patience
        self.best: dict[str, Signal] | None = None  # signals of the best model so far; None = the base
        self.best_state, self.best_scores = state_copy(model), judge.base_scores
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
            self.best, self.best_state, self.best_scores = signals, state_copy(model), scores
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
        self.best_state = state_copy(model)
        self.best_scores = self.judge.score(model) if self.best else self.judge.base_scores


def held_out_judge(base: nn.Module, lr_val: np.ndarray, hr_val: np.ndarray, scale: int, cfg: FineTune,
                   chain: DegradeChain, device: torch.device, val_frames: np.ndarray | None = None) -> Judge:
    """The guard's held-out pairs for one video: its frame pairs as `degrade` made them, and
    near-scale pairs made from the same held-out frames (`val_frames`, default `hr_val`; the
    windows around them for a multi-frame model) by the base model, `guard_targets_per_frame` shrink
    factors spread over `shrink`, each frame on its own."""
    frames = hr_val if val_frames is None else val_frames
    lrs, hrs, group = near_scale_pairs(base, frames, scale, chain, tuple(cfg.shrink), cfg.guard_targets_per_frame,
                                       crop=8 * cfg.patch * scale, seed=cfg.seed + 7919, device=device, spread=True,
                                       batch_size=1)
    frame = HeldOutSet(list(lr_val), list(hr_val), np.arange(len(lr_val)))
    return Judge({"frame": frame, "near_scale": HeldOutSet(lrs, hrs, group)}, base, device)


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


def choose(cfg: FineTune, rule: Rule, judge: Judge, tracker: RoundTracker, skipped: int, model: nn.Module,
           base: LoadedModel) -> tuple[str, nn.Module, dict[str, Signal], str, LoadedModel | None]:
    """The guard's choice once the rounds are done: (kept, the delivered module, the held-out
    signals it was judged on, the reason, the base's single-frame network or None)."""
    signals = judge.signals(tracker.best_scores)
    if not cfg.guard:
        keep, reason = True, "guard off (fine_tune.guard: false): the fine-tuned model is delivered unchecked"
    elif tracker.best is None and tracker.last is not None:  # every round run was undone: report what it measured
        signals = tracker.last
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
