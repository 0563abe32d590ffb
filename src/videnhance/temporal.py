"""The multi-frame network: each output frame from a window of 2·radius + 1 input frames.

`TemporalSR` is the single-frame SRResNet plus a fusion branch. The branch sees the centre frame,
its neighbours aligned to it, and the single-frame network's features of the centre frame; it adds
its result to those features before the upsampler. Its last layer starts at zero, so an
untrained `TemporalSR` is exactly the single-frame network it was built around: the worst a
temporal model can start from is today's result.

Alignment (`align`):
- "dis": classical optical flow, OpenCV's DIS (Kroeger et al., ECCV 2016), from the centre frame
  to each neighbour on the low-resolution frames, then a bilinear warp. No learned weights; the
  flow is a function of the input only, so gradients flow through the warp, not the flow.
- "none": the neighbours as they are; the fusion convolutions must find the motion themselves
  (RRN-style), which works for motion within their receptive field.

Input (n, T, 3, h, w) RGB in [0, 1], T = 2·radius + 1, centre at index `radius`; output
(n, 3, h·scale, w·scale). Frames outside the video are the edge frame repeated (the callers do it).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .models import ResBlock, SRResNet

ALIGNMENTS = ("dis", "none")


def luma_u8(x: torch.Tensor) -> np.ndarray:
    """(n, 3, h, w) in [0, 1] → the uint8 BT.601 luma (n, h, w) that DIS works on."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    y = (x.detach().float() * weights).sum(1).clamp(0, 1).mul(255).round()
    return y.to(torch.uint8).cpu().numpy()


def dis_flow_luma(a: np.ndarray, b: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Optical flow from luma `a` to luma `b`, uint8 (n, h, w) each → float32 (n, 2, h, w)."""
    import cv2

    presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
    h, w = a.shape[1:]
    flows = np.zeros((len(a), 2, h, w), np.float32)
    if min(h, w) < 8:  # below DIS's smallest patch: no motion estimate
        return flows
    dis = cv2.DISOpticalFlow_create(presets[preset])
    for i in range(len(a)):
        flows[i] = dis.calc(a[i], b[i], None).transpose(2, 0, 1)
    return flows


def dis_flow(ref: torch.Tensor, other: torch.Tensor, preset: str = "medium") -> torch.Tensor:
    """Optical flow from `ref` to `other`, (n, 3, h, w) in [0, 1] → (n, 2, h, w) in pixels (x, y):
    ref(p) ≈ other(p + flow(p)). OpenCV's DIS on the BT.601 luma, on the CPU, without gradients."""
    return torch.from_numpy(dis_flow_luma(luma_u8(ref), luma_u8(other), preset)).to(ref.device)


def warp(image: torch.Tensor, flow: torch.Tensor, row0: int = 0) -> torch.Tensor:
    """`image` (n, c, H, W) sampled at p + flow(p) (bilinear, edges repeated), for the points p of
    `flow` (n, 2, h, W): by default the whole image (h = H); a band of rows whose first is image
    row `row0` otherwise."""
    _, _, height, width = image.shape
    ys, xs = torch.meshgrid(torch.arange(row0, row0 + flow.shape[2], device=image.device, dtype=flow.dtype),
                            torch.arange(width, device=image.device, dtype=flow.dtype), indexing="ij")
    x = (xs + flow[:, 0]) * (2 / max(width - 1, 1)) - 1
    y = (ys + flow[:, 1]) * (2 / max(height - 1, 1)) - 1
    grid = torch.stack([x, y], dim=-1).to(image.dtype)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


class TemporalSR(nn.Module):
    """Single-frame SRResNet + a zero-initialised fusion branch over aligned neighbours.

    Args:
        scale, channels, blocks: the single-frame network's (`model.channels`, `model.blocks`).
        radius: neighbours on each side (`model.radius`); the window is 2·radius + 1 frames.
        align: "dis" or "none" (`model.align`).
        fuse_channels, fuse_blocks: the fusion branch's width and depth.
    """

    def __init__(self, scale: int, channels: int, blocks: int, radius: int, align: str, fuse_channels: int,
                 fuse_blocks: int):
        super().__init__()
        if align not in ALIGNMENTS:
            raise ValueError(f"align must be one of {ALIGNMENTS}, not {align!r}")
        self.scale, self.radius, self.align = scale, radius, align
        self.frames_in = 2 * radius + 1
        self.single = SRResNet(scale, channels, blocks)
        self.fuse_head = nn.Conv2d(3 * self.frames_in + channels, fuse_channels, 3, padding=1)
        self.fuse_body = nn.Sequential(*[ResBlock(fuse_channels, 1.0) for _ in range(fuse_blocks)])
        self.fuse_tail = nn.Conv2d(fuse_channels, channels, 3, padding=1)
        nn.init.zeros_(self.fuse_tail.weight)  # untrained: exactly the single-frame network
        nn.init.zeros_(self.fuse_tail.bias)

    def aligned(self, x: torch.Tensor) -> torch.Tensor:
        """The window (n, T, 3, h, w) with every neighbour warped onto the centre frame."""
        if self.align == "none" or self.radius == 0:
            return x
        centre = x[:, self.radius]
        frames = []
        for t in range(self.frames_in):
            if t == self.radius:
                frames.append(centre)
            else:
                frames.append(warp(x[:, t], dis_flow(centre, x[:, t])))
        return torch.stack(frames, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != self.frames_in:
            raise ValueError(f"TemporalSR takes (n, {self.frames_in}, 3, h, w) windows, not {tuple(x.shape)}")
        centre = x[:, self.radius]
        feat = self.single.features(centre)
        window = self.aligned(x).flatten(1, 2) - 0.5
        fused = self.fuse_head(torch.cat([window, feat], 1))
        return self.single.render(centre, feat + self.fuse_tail(fused + self.fuse_body(fused)))

    def load_single(self, single: SRResNet) -> None:
        """Start from a trained single-frame network (same channels and blocks)."""
        self.single.load_state_dict(single.state_dict())
