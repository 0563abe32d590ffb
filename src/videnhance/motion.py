"""Synthetic motion: short clips made from still photos, for pretraining the temporal model.

No external video is used: each photo becomes a window of 2·radius + 1 frames whose centre frame
is the photo itself (the ground truth) and whose neighbours see it moved by a sub-pixel
translation, a zoom, a rotation and a smooth local warp, each growing linearly with the frame's
distance from the centre, optionally with a patch of the photo sliding over it on its own path
(an occlusion). Every frame is then degraded by the configured chain with the same drawn
parameters (blur, kernel, JPEG quality), as one camera would.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .degrade import DegradeChain, crop_to_multiple
from .tensors import frames_to_tensor, tensor_to_frames

if TYPE_CHECKING:
    from .settings import Motion


def _grid(h: int, w: int, d: int, scale: int, params: dict) -> torch.Tensor:
    """The sampling grid (1, h, w, 2) in [-1, 1] of the frame `d` frames from the centre."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    zoom = (1 + params["zoom"]) ** d
    angle = math.radians(params["rotate"] * d)
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    u, v = xs - cx, ys - cy
    x = cx + cos * u - sin * v + params["shift"][0] * scale * d
    y = cy + sin * u + cos * v + params["shift"][1] * scale * d
    x = x + params["warp"][0] * d
    y = y + params["warp"][1] * d
    return torch.stack([x * 2 / max(w - 1, 1) - 1, y * 2 / max(h - 1, 1) - 1], -1)[None].float()


def _smooth_field(h: int, w: int, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random displacement field (2, h, w): a 4×4 grid of random offsets, upsampled."""
    coarse = torch.from_numpy(rng.uniform(-amplitude, amplitude, (1, 2, 4, 4)))
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[0].numpy()


def motion_clip(photo: np.ndarray, scale: int, radius: int, chain: DegradeChain, rng: np.random.Generator,
                motion: Motion) -> tuple[np.ndarray, np.ndarray]:
    """One training window from a photo: (low-resolution frames (T, h, w, 3), ground truth (H, W, 3)),
    T = 2·radius + 1, the ground truth being the centre frame: the photo, cropped to a multiple of
    `scale`."""
    hr = crop_to_multiple(photo[None], scale)[0]
    h, w = hr.shape[:2]
    angle = rng.uniform(0, 2 * math.pi)
    speed = motion.shift * math.sqrt(rng.uniform(0, 1))
    params = {"shift": (speed * math.cos(angle), speed * math.sin(angle)),
              "zoom": rng.uniform(-motion.zoom, motion.zoom), "rotate": rng.uniform(-motion.rotate, motion.rotate),
              "warp": torch.from_numpy(_smooth_field(h, w, motion.warp * scale, rng))}
    source = frames_to_tensor(hr[None]).double()
    occluder = None
    if rng.random() < motion.occlusion:  # a patch of the photo, flipped, sliding on its own path
        side = int(min(h, w) * rng.uniform(0.15, 0.35))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        patch = source[..., y0 : y0 + side, x0 : x0 + side].flip(-1)
        velocity = rng.uniform(-2 * motion.shift, 2 * motion.shift, 2) * scale
        start = (int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1)))
        occluder = (patch, velocity, start, side)
    frames = []
    for t in range(2 * radius + 1):
        d = t - radius
        if d == 0:
            frame = source.clone()
        else:
            grid = _grid(h, w, d, scale, params)
            frame = F.grid_sample(source.float(), grid, mode="bicubic", padding_mode="reflection",
                                  align_corners=True).double()
        if occluder is not None:
            patch, velocity, (py, px), side = occluder
            y = int(round(min(max(py + velocity[1] * d, 0), h - side)))
            x = int(round(min(max(px + velocity[0] * d, 0), w - side)))
            frame[..., y : y + side, x : x + side] = patch
        frames.append(tensor_to_frames(frame.float())[0])
    # the ground truth is what the centre frame shows (with the occluder, if any); one camera
    # degrades every frame of the window alike
    return chain.apply_window(np.stack(frames), scale, rng), frames[radius]


def motion_clips(photos: list[np.ndarray], scale: int, radius: int, chain: DegradeChain, motion: Motion, seed: int,
                 copies: int = 1) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`copies` windows per photo, seeded: (low-resolution windows, ground truths)."""
    rng = np.random.default_rng(seed)
    lrs, hrs = [], []
    for photo in photos:
        for _ in range(copies):
            lr, hr = motion_clip(photo, scale, radius, chain, rng, motion)
            lrs.append(lr)
            hrs.append(hr)
    return lrs, hrs


class MotionBatches:
    """An iterable of (low-resolution windows, ground truth) float batches, each sample a fresh
    synthetic clip cut from a random place of a random photo: every step sees new motion, and
    nothing is held in memory but the photos. Seeded; random flips and transposes as
    `data.PatchBatches`. Windows (n, T, 3, patch, patch), ground truth (n, 3, patch·s, patch·s)."""

    def __init__(self, photos: list[np.ndarray], scale: int, radius: int, chain: DegradeChain, motion: Motion,
                 patch: int, batch_size: int, steps: int, seed: int = 0, device: str | torch.device = "cpu"):
        self.photos = [crop_to_multiple(p[None], scale)[0] for p in photos]
        smallest = min(min(p.shape[:2]) for p in self.photos) // scale
        # a margin around the patch, in input pixels, so that the motion brings in real content
        self.margin = int(math.ceil(radius * (motion.shift + motion.warp) + 2))
        self.patch = max(4, min(patch, smallest - 2 * self.margin))
        self.scale, self.radius, self.chain, self.motion = scale, radius, chain, motion
        self.batch_size, self.steps, self.device = batch_size, steps, torch.device(device)
        self.rng = np.random.default_rng(seed)  # pretraining keeps no checkpoints, so no sampler state to save

    def __len__(self) -> int:
        return self.steps

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        s, p, m = self.scale, self.patch, self.margin
        photo = self.photos[int(self.rng.integers(len(self.photos)))]
        side = (p + 2 * m) * s
        h, w = photo.shape[:2]
        y = int(self.rng.integers(0, (h - min(side, h)) // s + 1)) * s
        x = int(self.rng.integers(0, (w - min(side, w)) // s + 1)) * s
        lr, hr = motion_clip(photo[y : y + side, x : x + side], s, self.radius, self.chain, self.rng, self.motion)
        top, left = (lr.shape[1] - p) // 2, (lr.shape[2] - p) // 2
        return lr[:, top : top + p, left : left + p], hr[top * s : (top + p) * s, left * s : (left + p) * s]

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        from .data import random_flips
        from .tensors import to_float

        samples = [self.sample() for _ in range(self.batch_size)]
        lr = to_float(torch.from_numpy(np.stack([a for a, _ in samples])).to(self.device))
        hr = to_float(torch.from_numpy(np.stack([b for _, b in samples])).to(self.device))
        lr, hr = random_flips(lr, hr, lambda: self.rng.random() < 0.5)
        return lr.contiguous(), hr.contiguous()

    def __iter__(self):
        for _ in range(self.steps):
            yield self.batch()
