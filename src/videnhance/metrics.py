"""Image quality the way the super-resolution literature computes it.

Y of BT.601 in [16, 235] (Y = 16 + 65.481 R + 128.553 G + 24.966 B, RGB in [0, 1]), float64,
PSNR with peak 255, SSIM with an 11×11 Gaussian window σ = 1.5 (scikit-image). Inputs are uint8
RGB (H, W, 3) frames, i.e. scored after rounding to 8 bits. Border crop is configurable.
Identical frames score `PSNR_CAP` dB instead of infinity, so one exact frame (a black fade, a
static title) cannot turn a clip's mean, or the guard's gain, into inf or nan.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

PSNR_CAP = 100.0  # dB; any real difference between 8-bit frames of up to 4K scores below ~140
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (…, 3) → float64 Y of BT.601 in [16, 235]. Channel order must be RGB."""
    return 16.0 + image.astype(np.float64) @ _Y_WEIGHTS


def _crop(image: np.ndarray, border: int) -> np.ndarray:
    return image[border:-border, border:-border] if border else image


STRIP_PX = 1 << 20  # pixels per row strip that `score_frame` and `warp_error` work on at once
SSIM_RADIUS = int(3.5 * 1.5 + 0.5)  # scikit-image's Gaussian filter for SSIM: σ 1.5, truncated at 3.5σ


def _strips(height: int, width: int, strip_px: int = STRIP_PX) -> list[tuple[int, int]]:
    """Row ranges [r0, r1) of about `strip_px` pixels each that cover `height` rows."""
    rows = max(1, strip_px // max(1, width))
    return [(r0, min(height, r0 + rows)) for r0 in range(0, height, rows)]


def psnr(reference: np.ndarray, test: np.ndarray, border: int = 0) -> float:
    """PSNR (dB, peak 255) of two arrays of the same shape, on float64 values in [0, 255]; at most
    `PSNR_CAP` (identical arrays score exactly the cap)."""
    a, b = _crop(reference, border).astype(np.float64), _crop(test, border).astype(np.float64)
    if np.array_equal(a, b):
        return PSNR_CAP
    return min(PSNR_CAP, float(peak_signal_noise_ratio(a, b, data_range=255)))


def _psnr_from(squared_error: float, count: int) -> float:
    if squared_error == 0:
        return PSNR_CAP
    return min(PSNR_CAP, float(10 * np.log10(255.0**2 / (squared_error / count))))


def _ssim_args(height: int, width: int) -> dict:
    win = min(11, height, width)  # tiny frames: the window may not exceed the image
    win -= 1 - win % 2
    return {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255,
            "win_size": win}


def score_frame(reference: np.ndarray, test: np.ndarray, border: int = 0,
                strip_px: int = STRIP_PX) -> dict[str, float]:
    """Y-PSNR, Y-SSIM and RGB-PSNR of one uint8 RGB frame against its reference.

    Computed in row strips of about `strip_px` pixels (each with the SSIM filter's reach of rows
    on either side), so the float64 working memory stays the same for any frame size; the result
    is the whole-frame one (SSIM's map rows are the same numbers, summed in another order)."""
    if reference.shape != test.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape}, test {test.shape}")
    ref, tst = _crop(reference, border), _crop(test, border)
    h, w = ref.shape[:2]
    args = _ssim_args(h, w)
    pad = (args["win_size"] - 1) // 2  # scikit-image leaves this border out of SSIM's mean
    se_y = se_rgb = ssim_sum = 0.0
    for r0, r1 in _strips(h, w, strip_px):
        # the strip's Y with the SSIM filter's reach of rows on either side (≥ win_size rows, as
        # pad ≤ the radius), converted once for both measures
        lo, hi = max(0, r0 - SSIM_RADIUS), min(h, r1 + SSIM_RADIUS)
        ref_y, tst_y = rgb_to_y(ref[lo:hi]), rgb_to_y(tst[lo:hi])
        se_y += float(np.square(ref_y[r0 - lo : r1 - lo] - tst_y[r0 - lo : r1 - lo]).sum())
        se_rgb += float(np.square(ref[r0:r1].astype(np.float64) - tst[r0:r1]).sum())
        k0, k1 = max(r0, pad), min(r1, h - pad)  # the SSIM map rows this strip counts
        if k1 <= k0:
            continue
        _, ssim_map = structural_similarity(ref_y, tst_y, full=True, **args)
        ssim_sum += float(ssim_map[k0 - lo : k1 - lo, pad : w - pad].sum(dtype=np.float64))
    ssim_count = max(0, h - 2 * pad) * max(0, w - 2 * pad)
    return {
        "psnr_y": _psnr_from(se_y, h * w),
        "ssim_y": ssim_sum / ssim_count if ssim_count else float("nan"),
        "psnr_rgb": _psnr_from(se_rgb, h * w * 3),
    }


def flow_between(reference_prev: np.ndarray, reference: np.ndarray):
    """The reference's own motion from frame t-1 to frame t (OpenCV DIS), uint8 (H, W, 3) each:
    what `warp_error` warps outputs with, (1, 2, H, W). The luma is made in row strips, so the
    memory is DIS's own (about 55 bytes a pixel) and the flow's."""
    import torch

    from .temporal import dis_flow_luma, luma_u8
    from .tensors import frames_to_tensor

    h, w = reference.shape[:2]
    lumas = [np.concatenate([luma_u8(frames_to_tensor(frame[None, r0:r1])) for r0, r1 in _strips(h, w)], axis=1)
             for frame in (reference_prev, reference)]
    return torch.from_numpy(dis_flow_luma(*lumas))


def warp_error(output_prev: np.ndarray, output: np.ndarray, reference_prev: np.ndarray, reference: np.ndarray,
               flow=None, tolerance: float = 4.0, strip_px: int = STRIP_PX) -> float:
    """Flicker between two consecutive output frames: the mean absolute Y difference (levels of
    255) between output frame t-1 and output frame t warped back onto it by the reference's own
    motion (`flow_between`), over the pixels where that warp explains the reference itself to
    within `tolerance` levels (not occluded, not at a cut; NaN when there are none). Lower is
    steadier. All uint8 (H, W, 3). Warped in row strips of about `strip_px` pixels, each from the
    band of source rows its flow reaches."""
    import torch

    from .temporal import warp
    from .tensors import frames_to_tensor, tensor_to_frames

    flow = flow_between(reference_prev, reference) if flow is None else flow
    h, w = reference.shape[:2]
    total, count = 0.0, 0
    for r0, r1 in _strips(h, w, strip_px):
        band = flow[:, :, r0:r1]
        reach = band[:, 1] + torch.arange(r0, r1, dtype=band.dtype).view(-1, 1)
        s0 = min(max(0, math.floor(float(reach.min()))), h - 1)
        s1 = max(min(h - 1, math.ceil(float(reach.max()))), s0) + 1
        source = frames_to_tensor(np.stack([reference[s0:s1], output[s0:s1]]))
        back = tensor_to_frames(warp(source, band.expand(2, -1, -1, -1), row0=r0 - s0))
        mask = np.abs(rgb_to_y(back[0]) - rgb_to_y(reference_prev[r0:r1])) < tolerance
        total += float(np.abs(rgb_to_y(back[1]) - rgb_to_y(output_prev[r0:r1]))[mask].sum())
        count += int(mask.sum())
    return total / count if count else float("nan")


def flicker(output: np.ndarray, reference: np.ndarray, tolerance: float = 4.0) -> float:
    """`warp_error` averaged over the consecutive frame pairs of a clip, uint8 (n, H, W, 3), n ≥ 2."""
    errors = [warp_error(output[t - 1], output[t], reference[t - 1], reference[t], tolerance=tolerance)
              for t in range(1, len(output))]
    return float(np.nanmean(errors)) if errors and not np.isnan(errors).all() else float("nan")
