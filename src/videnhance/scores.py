"""The per-frame score files `evaluate` writes (results/<video>/scores.csv) and their means.

One row per frame and method. Methods, in table order: bicubic, single_frame (only for a
multi-frame base: the single-frame network it is built around), milestone (the base model),
fine_tuned (what the guard delivered). No torch here: the report reads these in any process.
"""

from __future__ import annotations

import pandas as pd

METHODS = ("bicubic", "milestone", "fine_tuned")  # every run scores these
ALL_METHODS = ("bicubic", "single_frame", "milestone", "fine_tuned")
COLUMNS = ["video", "protocol", "frame", "method", "psnr_y", "ssim_y", "psnr_rgb", "flicker", "motion"]
METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "flicker")  # per method; `motion` is the ground truth's, the same for all


def summarize(scores: pd.DataFrame) -> pd.DataFrame:
    """Per video and method: mean of the per-frame scores."""
    scores = scores.reindex(columns=COLUMNS)  # older score files lack flicker and motion: empty
    return (scores.groupby(["video", "protocol", "method"], sort=False)[[*METRICS, "motion"]]
            .mean().reset_index())


def methods_in(scores: pd.DataFrame) -> list[str]:
    """The scored methods, in table order: single_frame only where some video has a multi-frame base."""
    return [m for m in ALL_METHODS if m != "single_frame" or (scores.method == m).any()]
