import numpy as np
import pytest
from PIL import Image

from videnhance.degrade import DegradeChain, crop_to_multiple, eval_degrade, jpeg, make_pairs
from videnhance.metrics import psnr

from .helpers import photo


def test_bi_downscale_is_close_to_pil_bicubic():
    hr = crop_to_multiple(photo()[None], 4)
    lr = eval_degrade(hr, 4, "BI")[0]
    h, w = hr.shape[1:3]
    assert lr.shape == (h // 4, w // 4, 3)
    pil = np.asarray(Image.fromarray(hr[0]).resize((w // 4, h // 4), Image.Resampling.BICUBIC))
    assert psnr(pil, lr) > 35  # same kernel family; not bit-identical (documented)


def test_bd_and_scale_one_and_bad_sizes():
    hr = crop_to_multiple(photo()[None], 2)
    assert eval_degrade(hr, 2, "BD").shape[1:3] == (hr.shape[1] // 2, hr.shape[2] // 2)
    same = eval_degrade(hr, 1)
    assert same.shape == hr.shape and not np.array_equal(same, hr)
    with pytest.raises(ValueError, match="not divisible"):
        eval_degrade(np.zeros((1, 5, 6, 3), np.uint8), 2)


def test_chain_is_seeded_and_varies():
    chain = DegradeChain.defaults(downscale=["bicubic", "bilinear"], blur_sigma=[0.0, 1.5], jpeg_quality=[30, 60],
                                  jpeg_prob=1.0)
    image = crop_to_multiple(photo(), 2)
    a = make_pairs([image], 2, chain, seed=3, copies=3)[0]
    b = make_pairs([image], 2, chain, seed=3, copies=3)[0]
    c = make_pairs([image], 2, chain, seed=4, copies=3)[0]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert not np.array_equal(a[0], a[1])  # copies differ
    assert a[0].shape == (image.shape[0] // 2, image.shape[1] // 2, 3)


def test_jpeg_loses_information_in_proportion_to_quality():
    image = photo()
    assert psnr(image, jpeg(image, 95)) > psnr(image, jpeg(image, 20))
