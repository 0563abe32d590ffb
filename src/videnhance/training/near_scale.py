"""Pairs at the scale the model is used at (Yoo & Kim 2021, "Self-supervised adaptation for
video super-resolution"), one recipe for training and for the guard's held-out pairs.

The target is a model's (the base model's, or the current round's) output for one of the video's
frames, shrunk by a factor within `shrink` (e.g. 0.85–0.95) and cut to at most `crop` px a side at
a seeded place; its input is that target degraded by the configured chain. Plain
`frame/scale → frame` pairs train the model on content `scale` times smaller than it is used on;
at ×4 that lowered PSNR on ordinary clips, while these pairs raised it on every clip measured
(docs/quality.md).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..degrade import DegradeChain, centre, shrink_and_crop
from ..infer import teacher_outputs


def near_scale_pairs(teacher: nn.Module, frames: np.ndarray, scale: int, chain: DegradeChain,
                     shrink: tuple[float, float], per_frame: int, crop: int, seed: int, device: torch.device,
                     spread: bool = False, batch_size: int = 4
                     ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """`per_frame` pairs from each frame (or each window of frames, for a multi-frame teacher):
    inputs, targets, and the index of the frame each pair came from.

    Training draws each shrink factor at random from `shrink`; `spread` (the guard's held-out
    pairs) takes `per_frame` factors spread evenly over it instead, so every held-out frame is
    judged alike. Seeded: the same arguments give the same pairs."""
    rng = np.random.default_rng(seed)
    fixed = (np.linspace(shrink[0], shrink[1], per_frame) if per_frame > 1 else [float(np.mean(shrink))]) \
        if spread else None
    lrs, hrs, group = [], [], []
    for start in range(0, len(frames), batch_size):
        outs = teacher_outputs(teacher, frames[start : start + batch_size], device, batch_size)
        for i, out in enumerate(outs, start):
            for k in range(per_frame):
                factor = float(fixed[k]) if fixed is not None else float(rng.uniform(*shrink))
                target = shrink_and_crop(out, factor, scale, crop, rng)
                lrs.append(chain.apply_window(target, scale, rng))
                hrs.append(centre(target))
                group.append(i)
    return lrs, hrs, np.array(group, dtype=int)
