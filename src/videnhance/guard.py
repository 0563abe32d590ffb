"""The guard: is the fine-tuned model better than the base model on *this* video?

The fine-tune never sees the video's ground truth (there is none in enhance mode), so it is judged
on held-out stretches of the video's own frames (`samples.split_train_val`), with two kinds of pairs:

- **frame**: held-out frame degraded ×scale → that frame. The target is real video, but the
  content is `scale` times smaller than the model meets in use: at ×4 a 480×360 frame is judged
  on 120×90 inputs.
- **near_scale**: the base model's output for a held-out frame, shrunk by factors spread over
  `fine_tune.shrink`, → that degraded by the configured chain. Pairs at the scale of use, made the
  way the near-scale training pairs are (`train.near_scale_pairs`), from held-out frames only.
  The target is the base model's output, not real video.

Every model (the base, each round, the result) is scored on the same fixed pairs: inference
only. A held-out frame is the unit of evidence: its near-scale pairs are averaged first, and the
mean per-frame gain over the base and its standard error across frames decide
(`decide`). Which signal decides, and the margins, were chosen by the table in docs/quality.md
(`tools/guard_signal.py` measures it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .degrade import DegradeChain, centre, shrink_and_crop
from .infer import run_model, teacher_outputs
from .metrics import psnr, rgb_to_y
from .settings import FineTune


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


def near_scale_set(base: nn.Module, frames: np.ndarray, scale: int, chain: DegradeChain,
                   shrink: tuple[float, float], per_frame: int, crop: int, seed: int,
                   device: torch.device) -> HeldOutSet:
    """Held-out pairs at the scale of use: for each held-out frame, the base model's output shrunk
    by `per_frame` factors spread evenly over `shrink` (a crop of at most `crop` px a side at a
    seeded place), → that degraded by `chain` (seeded), as `train.near_scale_pairs` makes them."""
    rng = np.random.default_rng(seed)
    factors = np.linspace(shrink[0], shrink[1], per_frame) if per_frame > 1 else [float(np.mean(shrink))]
    lrs, hrs, group = [], [], []
    for i, frame in enumerate(frames):  # a frame, or a window of frames around it (multi-frame model)
        out = teacher_outputs(base, frame[None], device=device, batch_size=1)[0]
        for factor in factors:
            target = shrink_and_crop(out, float(factor), scale, crop, rng)
            lrs.append(chain.apply_window(target, scale, rng))
            hrs.append(centre(target))
            group.append(i)
    return HeldOutSet(lrs, hrs, np.array(group))


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
