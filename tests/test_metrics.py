import numpy as np
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from videnhance.guard import Rule, gain_signal
from videnhance.metrics import PSNR_CAP, psnr, rgb_to_y, score_frame

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
