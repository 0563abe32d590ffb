import numpy as np

from videnhance.data import DEMO_PHOTOS, SKIMAGE_PHOTOS, PatchBatches, load_image_sources
from videnhance.samples import sample_indices, split_train_val


def test_sample_indices_spread_and_bounded():
    idx = sample_indices(1000, 10)
    assert len(idx) == 10 and idx[0] == 0 and idx[-1] == 999
    assert list(sample_indices(5, 10)) == [0, 1, 2, 3, 4]


def test_validation_is_held_out_in_stretches():
    idx = np.arange(0, 200, 5)
    train, val = split_train_val(idx, 0.25)
    assert len(val) == 10 and len(train) == 30
    assert not set(train) & set(val)
    positions = np.flatnonzero(np.isin(idx, val))
    assert (np.diff(positions) == 1).sum() >= 5  # consecutive runs, not every k-th frame
    assert val.min() < 100 < val.max()  # from all over the video


def test_patch_batches_align_lr_and_hr_and_repeat_with_seed():
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    hr = np.repeat(np.repeat(lr, 2, axis=0), 2, axis=1)  # each LR pixel is a 2×2 HR block
    a = PatchBatches([lr], [hr], 2, 8, batch_size=4, steps=3, seed=1)
    b = PatchBatches([lr], [hr], 2, 8, batch_size=4, steps=3, seed=1)
    batches_a, batches_b = list(a), list(b)
    assert len(batches_a) == 3
    for (la, ha), (lb, hb) in zip(batches_a, batches_b, strict=True):
        assert la.shape == (4, 3, 8, 8) and ha.shape == (4, 3, 16, 16)
        assert np.array_equal(la.numpy(), lb.numpy()) and np.array_equal(ha.numpy(), hb.numpy())
        assert np.array_equal(ha[:, :, ::2, ::2].numpy(), la.numpy())  # aligned through flips/rotations


def test_skimage_source_excludes_demo_photos():
    images = load_image_sources(["skimage"])
    assert len(images) >= 10 and all(im.dtype == np.uint8 and im.shape[2] == 3 for im in images)
    # the property that matters: no photo a demo clip is rendered from is in the pretraining set
    from skimage import data as skdata

    from videnhance.demo import DEMO_CLIPS

    used = {clip.photo for clip in DEMO_CLIPS}
    assert used <= set(DEMO_PHOTOS) and not used & set(SKIMAGE_PHOTOS)
    for name in used:
        photo = getattr(skdata, name)()
        assert not any(im.shape == photo.shape and np.array_equal(im, photo) for im in images), name
