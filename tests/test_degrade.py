import numpy as np
import pytest
from PIL import Image

from videnhance.degrade import DegradeChain, codec_roundtrip, crop_to_multiple, eval_degrade, jpeg, make_pairs, shift
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


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_codec_round_trip_in_memory_keeps_size_and_hurts_more_at_higher_crf(codec):
    image = photo("coffee")[:61, :83]  # odd sides: padded for 4:2:0 and cropped back
    clip = np.stack([shift(image, 1, -2), image])
    errors = []
    for crf in (18, 40):
        out = codec_roundtrip(clip, codec, crf)
        assert out.shape == clip.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out, codec_roundtrip(clip, codec, crf))  # deterministic
        errors.append(np.abs(out[-1].astype(int) - image).mean())
    assert 0 < errors[0] < errors[1]


def test_the_codec_in_the_chain_is_seeded_and_leaves_codec_free_chains_alone():
    hr = photo("coffee")[:64, :66]
    plain = DegradeChain.defaults(jpeg_prob=0.5)
    unused = DegradeChain.defaults(jpeg_prob=0.5, codec_prob=0.0, codec=["libx265"], codec_crf=[40, 45])
    for seed in range(4):  # no codec draws when codec_prob is 0: the random stream is the old one
        np.testing.assert_array_equal(plain.apply(hr, 2, np.random.default_rng(seed)),
                                      unused.apply(hr, 2, np.random.default_rng(seed)))
    coded = DegradeChain.defaults(codec_prob=1.0, codec=["libx264"], codec_crf=[35, 35])
    a, b = (coded.apply(hr, 2, np.random.default_rng(7)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    clean = DegradeChain.defaults().apply(hr, 2, np.random.default_rng(7))
    assert a.shape == clean.shape == (32, 33, 3) and np.abs(a.astype(int) - clean).mean() > 0.5
    window = np.stack([shift(hr, 0, d) for d in (-1, 0, 1)])
    out = coded.apply_window(window, 2, np.random.default_rng(3))
    assert out.shape == (3, 32, 33, 3)
    np.testing.assert_array_equal(out, coded.apply_window(window, 2, np.random.default_rng(3)))


def test_shift_moves_content_and_repeats_the_edge():
    image = np.arange(20, dtype=np.uint8).reshape(4, 5, 1).repeat(3, axis=2)
    moved = shift(image, 1, -2)
    np.testing.assert_array_equal(moved[1:, :3], image[:3, 2:])
    np.testing.assert_array_equal(moved[0], moved[1])


def test_benchmark_input_can_be_compressed_video(tmp_path):
    from videnhance import pipeline
    from videnhance.io import LOSSLESS, probe
    from videnhance.settings import Benchmark, Settings

    from .helpers import make_clip, read_frames

    source = make_clip(tmp_path / "gt.mkv", size=(96, 64), frames=6, settings=LOSSLESS)
    for crf in (0, 40):
        pipeline.degrade_gt(ground_truth=source, input_video=tmp_path / f"in{crf}.mkv",
                            settings=Settings(scale=2, benchmark=Benchmark.defaults(crf=crf)))
    lossless, coded = probe(tmp_path / "in0.mkv"), probe(tmp_path / "in40.mkv")
    assert (lossless.codec, coded.codec) == ("ffv1", "h264") and coded.frames == 6 and coded.width == 48
    clean, compressed = read_frames(tmp_path / "in0.mkv"), read_frames(tmp_path / "in40.mkv")
    assert psnr(compressed, clean) < 40  # CRF 40 is visibly lossy
