import numpy as np
import pytest
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from videnhance.metrics import PSNR_CAP, psnr, rgb_to_y, score_frame
from videnhance.training.guard import Rule, gain_signal

from .helpers import photo


def test_y_matches_scikit_image_and_uses_rgb_order():
    image = photo()
    np.testing.assert_allclose(rgb_to_y(image), rgb2ycbcr(image)[..., 0], atol=1e-9)
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 255
    assert abs(rgb_to_y(red)[0, 0] - (16 + 65.481)) < 1e-9  # R carries the 65.481 weight, not B


def test_psnr_hand_computed():
    a = np.zeros((4, 4), np.float64)
    b = a.copy()
    b[0, 0] = 10  # MSE = 100 / 16
    assert abs(psnr(a, b) - 10 * np.log10(255**2 / (100 / 16))) < 1e-9


def test_score_frame_matches_scikit_image():
    ref = photo()
    noisy = np.clip(ref.astype(int) + np.random.default_rng(0).integers(-20, 21, ref.shape), 0, 255).astype(np.uint8)
    s = score_frame(ref, noisy)
    ry, ny = rgb2ycbcr(ref)[..., 0], rgb2ycbcr(noisy)[..., 0]
    assert abs(s["psnr_y"] - peak_signal_noise_ratio(ry, ny, data_range=255)) < 1e-6
    expected_ssim = structural_similarity(ry, ny, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                          data_range=255)
    assert abs(s["ssim_y"] - expected_ssim) < 1e-9
    assert abs(s["psnr_rgb"] - peak_signal_noise_ratio(ref, noisy, data_range=255)) < 1e-6


def test_scores_in_row_strips_equal_the_whole_frame():
    """`score_frame` works in row strips so that its memory does not grow with the frame; any
    strip height, down to one row, gives the whole-frame scores of scikit-image."""
    ref = photo()[:150, :101]
    noisy = np.clip(ref.astype(int) + np.random.default_rng(1).integers(-9, 10, ref.shape), 0, 255).astype(np.uint8)
    ry, ny = rgb2ycbcr(ref)[..., 0], rgb2ycbcr(noisy)[..., 0]
    expected = {"psnr_y": peak_signal_noise_ratio(ry, ny, data_range=255),
                "ssim_y": structural_similarity(ry, ny, gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False, data_range=255),
                "psnr_rgb": peak_signal_noise_ratio(ref, noisy, data_range=255)}
    for strip_px in (101, 7 * 101, 40 * 101, 10**9):
        for border in (0, 3):
            got = score_frame(ref, noisy, border, strip_px=strip_px)
            whole = score_frame(ref, noisy, border, strip_px=10**9)
            assert all(abs(got[k] - whole[k]) < 1e-12 for k in got), (strip_px, border, got, whole)
        got = score_frame(ref, noisy, strip_px=strip_px)
        assert all(abs(got[k] - expected[k]) < 1e-9 for k in expected), (strip_px, got, expected)
    tiny = score_frame(ref[:6, :5], noisy[:6, :5], strip_px=5)  # smaller than the 11×11 window
    expected_tiny = structural_similarity(ry[:6, :5], ny[:6, :5], gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=255, win_size=5)
    assert abs(tiny["ssim_y"] - expected_tiny) < 1e-12


def test_border_crop_ignores_the_border():
    a = np.full((20, 20, 3), 100, np.uint8)
    b = a.copy()
    b[0, :] = 0
    assert score_frame(a, b, border=2)["psnr_y"] == PSNR_CAP
    assert score_frame(a, b)["psnr_y"] < 40


def test_identical_frames_keep_means_and_the_guard_finite():
    """A fade to black scores the cap, not inf: the clip mean and the guard's gain stay usable."""
    black = np.zeros((16, 16, 3), np.uint8)
    noisy = np.random.default_rng(0).integers(0, 8, (16, 16, 3), dtype=np.uint8)
    base = [score_frame(black, black), score_frame(black, noisy), score_frame(black, noisy)]
    tuned = [score_frame(black, black), score_frame(black, black), score_frame(black, noisy)]
    assert all(np.isfinite([s["psnr_y"] for s in base + tuned]))
    signal = gain_signal(np.array([s["psnr_y"] for s in base]), np.array([s["psnr_y"] for s in tuned]), np.arange(3))
    assert np.isfinite(signal.gain_db) and np.isfinite(signal.stderr_db) and signal.gain_db > 0
    assert Rule("frame", 0.0, 0.0, None).decide({"frame": signal})[0]


def test_flicker_follows_the_reference_motion_and_sees_frame_to_frame_noise():
    from videnhance.metrics import flicker

    picture = photo("coffee")[:96, :128]
    clip = np.stack([np.roll(picture, k, axis=1) for k in range(4)])  # moving 1 px a frame
    noisy = np.clip(clip + np.random.default_rng(0).normal(0, 5, clip.shape), 0, 255).astype(np.uint8)
    frozen = np.repeat(clip[:1], 4, axis=0)  # an output that ignores the motion
    assert flicker(clip, clip) < 0.3  # steady: the reference's own motion explains the change
    assert flicker(noisy, clip) > 2.5 and flicker(frozen, clip) > 2 * flicker(clip, clip)


def test_flicker_in_row_strips_equals_the_whole_frame():
    """`warp_error` warps a band of rows at a time from the source rows its flow reaches, so its
    memory does not grow with the frame: any band height gives the whole-frame measure."""
    from videnhance.metrics import flow_between, warp_error

    picture = photo("astronaut")
    reference = [picture[10:210, 20:300], picture[14:214, 23:303]]  # moving (3, 4) px a frame
    rng = np.random.default_rng(2)
    output = [np.clip(r + rng.normal(0, 4, r.shape), 0, 255).astype(np.uint8) for r in reference]
    flow = flow_between(*reference)
    assert float(flow[0, 1].mean()) == pytest.approx(-4, abs=0.5)  # the picture moves up
    whole = warp_error(*output, *reference, flow, strip_px=10**9)
    for rows in (1, 7, 64):
        assert warp_error(*output, *reference, flow, strip_px=rows * 280) == pytest.approx(whole, abs=1e-3)
