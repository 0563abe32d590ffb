"""The guard's verdict on one video's fine-tune (results/<video>/verdict.json), as one type.

`training.fine_tune` makes it (which model was delivered, why, the held-out signals, every round),
`training.fine_tune.keep_base` makes the short one (fine-tuning disabled, or nothing to judge on), and the
report, the command line, the benchmarks and the tools read it by attribute. The file keeps the
keys it always had; `read` ignores keys it does not know, so a verdict written by another
version still opens. No torch here: the report reads verdicts in a torch-free process.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .files import atomic_write_text

KEPT = ("fine_tuned", "base", "single_frame")  # what the guard can deliver


@dataclass(frozen=True)
class Verdict:
    kept: str  # one of KEPT
    reason: str = ""  # one sentence: why that model
    seconds: float = 0.0  # training time
    steps: int = 0  # optimiser steps run
    signal: str | None = None  # the held-out signal the rule judged on (near_scale, frame)
    gain_db: float | None = None  # its gain over the base model, dB
    gain_stderr_db: float | None = None
    signals: dict[str, dict] = field(default_factory=dict)  # every signal: gain_db, stderr_db, …
    val_frames: int | None = None
    train_frames: int | None = None
    train_pairs: int | None = None
    val_psnr_y: dict[str, float] = field(default_factory=dict)  # bicubic, milestone, fine_tuned on held-out frames
    lr: float | None = None
    pairs: str | None = None  # near_scale or frame
    device: str | None = None
    it_per_s: float | None = None
    threads: int | None = None  # torch's threads: on a CPU the weights depend on it (docs/robustness.md #27)
    resumed_from_epoch: int | None = None
    rounds: int | None = None
    rounds_run: int | None = None
    round_report: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kept not in KEPT:
            raise ValueError(f"verdict: kept must be one of {KEPT}, not {self.kept!r}")

    def as_dict(self) -> dict[str, Any]:
        """The JSON object: every field that has a value."""
        return {k: v for k, v in asdict(self).items() if v is not None and v != {} and v != []}

    def write(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.as_dict(), indent=2))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def read(cls, path: str | Path) -> Verdict:
        return cls.from_dict(json.loads(Path(path).read_text()))
