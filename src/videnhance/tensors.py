"""uint8 frames ↔ float tensors: the one place the pipeline converts between them.

Frames are uint8 RGB in NHWC (as ffmpeg and numpy hold them); models take float32 NCHW in [0, 1].
`to_float` permutes without copying, so a contiguous NHWC batch becomes a channels_last NCHW
tensor (the layout CUDA's NHWC kernels want); `to_uint8` rounds to the nearest level, as a viewer
would see it.
"""

from __future__ import annotations

import numpy as np
import torch


def to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (n, H, W, 3) tensor → float32 (n, 3, H, W) in [0, 1], on the same device; windows
    (n, T, H, W, 3) → (n, T, 3, H, W)."""
    return frames.movedim(-1, -3).float().div_(255)


def to_uint8(images: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """float (n, 3, H, W) in [0, 1] → uint8 (n, H, W, 3), rounded, on the same device; `inplace`
    reuses `images`' memory for the intermediate steps."""
    if inplace:
        return images.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1)
    return images.clamp(0, 1).mul(255).round_().to(torch.uint8).permute(0, 2, 3, 1)


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (n, H, W, 3) array → float32 (n, 3, H, W) tensor in [0, 1] on the CPU."""
    return to_float(torch.from_numpy(np.ascontiguousarray(frames)))


def tensor_to_frames(images: torch.Tensor) -> np.ndarray:
    """float (n, 3, H, W) in [0, 1] → uint8 (n, H, W, 3) array."""
    return to_uint8(images).cpu().numpy()
