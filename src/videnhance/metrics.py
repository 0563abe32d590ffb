"""Image quality the way the super-resolution literature computes it.

Y of BT.601 in [16, 235] (Y = 16 + 65.481 R + 128.553 G + 24.966 B, RGB in [0, 1]), float64,
PSNR with peak 255, SSIM with an 11×11 Gaussian window σ = 1.5 (scikit-image). Inputs are uint8
RGB (H, W, 3) frames, i.e. scored after rounding to 8 bits. Border crop is configurable.
Identical frames score `PSNR_CAP` dB instead of infinity, so one exact frame (a black fade, a
static title) cannot turn a clip's mean, or the guard's gain, into inf or nan.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

PSNR_CAP = 100.0  # dB; any real difference between 8-bit frames of up to 4K scores below ~140
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (…, 3) → float64 Y of BT.601 in [16, 235]. Channel order must be RGB."""
    return 16.0 + image.astype(np.float64) @ _Y_WEIGHTS


def _crop(image: np.ndarray, border: int) -> np.ndarray:
    return image[border:-border, border:-border] if border else image


def psnr(reference: np.ndarray, test: np.ndarray, border: int = 0) -> float:
    """PSNR (dB, peak 255) of two arrays of the same shape, on float64 values in [0, 255]; at most
    `PSNR_CAP` (identical arrays score exactly the cap)."""
    a, b = _crop(reference, border).astype(np.float64), _crop(test, border).astype(np.float64)
    if np.array_equal(a, b):
        return PSNR_CAP
    return min(PSNR_CAP, float(peak_signal_noise_ratio(a, b, data_range=255)))


def ssim_y(reference_y: np.ndarray, test_y: np.ndarray, border: int = 0) -> float:
    a, b = _crop(reference_y, border), _crop(test_y, border)
    win = min(11, *a.shape)  # tiny frames: the window may not exceed the image
    win -= 1 - win % 2
    return float(structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                       data_range=255, win_size=win))


def score_frame(reference: np.ndarray, test: np.ndarray, border: int = 0) -> dict[str, float]:
    """Y-PSNR, Y-SSIM and RGB-PSNR of one uint8 RGB frame against its reference."""
    if reference.shape != test.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape}, test {test.shape}")
    ref_y, test_y = rgb_to_y(reference), rgb_to_y(test)
    return {
        "psnr_y": psnr(ref_y, test_y, border),
        "ssim_y": ssim_y(ref_y, test_y, border),
        "psnr_rgb": psnr(reference, test, border),
    }



def flow_between(reference_prev: np.ndarray, reference: np.ndarray):
    """The reference's own motion from frame t-1 to frame t (OpenCV DIS), uint8 (H, W, 3) each:
    what `warp_error` warps outputs with."""
    from .temporal import dis_flow
    from .tensors import frames_to_tensor

    pair = frames_to_tensor(np.stack([reference_prev, reference]))
    return dis_flow(pair[:1], pair[1:])


def warp_error(output_prev: np.ndarray, output: np.ndarray, reference_prev: np.ndarray, reference: np.ndarray,
               flow=None, tolerance: float = 4.0) -> float:
    """Flicker between two consecutive output frames: the mean absolute Y difference (levels of
    255) between output frame t-1 and output frame t warped back onto it by the reference's own
    motion (`flow_between`), over the pixels where that warp explains the reference itself to
    within `tolerance` levels (not occluded, not at a cut; NaN when there are none). Lower is
    steadier. All uint8 (H, W, 3)."""
    from .temporal import warp
    from .tensors import frames_to_tensor, tensor_to_frames

    flow = flow_between(reference_prev, reference) if flow is None else flow
    back = tensor_to_frames(warp(frames_to_tensor(np.stack([reference, output])), flow.expand(2, -1, -1, -1)))
    mask = np.abs(rgb_to_y(back[0]) - rgb_to_y(reference_prev)) < tolerance
    if not mask.any():
        return float("nan")
    return float(np.abs(rgb_to_y(back[1]) - rgb_to_y(output_prev))[mask].mean())


def flicker(output: np.ndarray, reference: np.ndarray, tolerance: float = 4.0) -> float:
    """`warp_error` averaged over the consecutive frame pairs of a clip, uint8 (n, H, W, 3), n ≥ 2."""
    errors = [warp_error(output[t - 1], output[t], reference[t - 1], reference[t], tolerance=tolerance)
              for t in range(1, len(output))]
    return float(np.nanmean(errors)) if errors and not np.isnan(errors).all() else float("nan")
