"""Colour handling: tags read and written, untagged sources read as players show them, and the
yuv420p transport (conversion on the model's device) against ffmpeg's own conversion."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.transform import resize

from videnhance.colour import Colour, rgb_to_yuv420, yuv420_to_rgb
from videnhance.infer import choose_layout, enhance_video
from videnhance.io import (
    EncodeSettings,
    FrameReader,
    FrameWriter,
    VideoMeta,
    ffmpeg_exe,
    mux,
    probe,
    side_by_side,
)

from .helpers import ffmpeg, lavfi_clip, photo, read_frames, tiny_model


def lavfi(path: Path, size: str, *tags: str, frames: int = 3) -> Path:
    """testsrc2 (saturated colour bars and gradients) as lossless 8-bit 4:2:0, with the given tags."""
    return lavfi_clip(path, size, frames / 25, 25, "-pix_fmt", "yuv420p", *tags, "-c:v", "libx264", "-qp", "0")


def test_probe_reads_tags_and_guesses_like_players(tmp_path):
    tagged = probe(lavfi(tmp_path / "t.mkv", "64x48", "-colorspace", "bt709", "-color_range", "tv"))
    assert (tagged.color_space, tagged.color_range) == ("bt709", "tv")
    assert tagged.colour.matrix == "bt709" and "matrix" not in tagged.colour.guessed

    untagged = probe(lavfi(tmp_path / "u.mkv", "64x48"))
    assert untagged.color_space == "" and untagged.colour.matrix == "smpte170m"
    assert "matrix" in untagged.colour.guessed
    assert Colour.of(1280, 720).matrix == "bt709" and Colour.of(720, 576).matrix == "smpte170m"
    assert Colour.of(640, 480, "yuvj420p").range == "pc"
    # meta.json written before colour tags existed still loads (untagged)
    old = {k: v for k, v in untagged.__dict__.items() if not k.startswith("color_")}
    fields = lambda c: (c.matrix, c.range, c.primaries, c.transfer)  # noqa: E731
    assert fields(VideoMeta(**old).colour) == fields(untagged.colour)


def test_untagged_hd_is_read_as_bt709(tmp_path):
    """ffmpeg alone reads every untagged source as BT.601; we read untagged HD as BT.709, as
    players show it. Our own conversion of the same planes agrees only with the matrix used."""
    clip = lavfi(tmp_path / "hd.mkv", "1280x720", frames=1)
    rgb = read_frames(clip).astype(int)
    planes = torch.from_numpy(read_frames(clip, "yuv420p"))
    for matrix, close in (("bt709", True), ("smpte170m", False)):
        ours = yuv420_to_rgb(planes, 720, 1280, Colour(matrix=matrix))
        ours = (ours * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy().astype(int)
        error = np.abs(ours - rgb).max()
        assert (error <= 3) == close, (matrix, error)


@pytest.mark.parametrize("matrix,size", [("bt709", (128, 96)), ("smpte170m", (1280, 720))])
def test_written_colour_round_trips_and_is_tagged(tmp_path, matrix, size):
    """RGB → YUV in the encoder and YUV → RGB in the reader use the same matrix, whichever it is
    and whatever the size would suggest, because the stream is tagged with it."""
    w, h = size
    still = (resize(photo("coffee"), (h, w), anti_aliasing=True) * 255).round().astype(np.uint8)
    pixels = np.stack([still, still[:, ::-1]])
    out = tmp_path / "out.mkv"
    colour = Colour.of(w, h, matrix=matrix)
    with FrameWriter(out, w, h, Fraction(25), EncodeSettings(crf=0), colour=colour) as writer:
        writer.write(pixels)
    meta = probe(out)
    assert (meta.color_space, meta.color_range, meta.color_primaries) == (matrix, "tv", colour.primaries)
    back = read_frames(out).astype(float)
    bias = np.abs((back - pixels).mean(axis=(0, 1, 2)))  # 4:2:0 chroma loss averages out, a matrix slip does not
    wrong = "bt601" if matrix == "bt709" else "bt709"
    slipped = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(out), "-vf", f"scale=in_color_matrix={wrong}",
                              "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    slip = np.abs((np.frombuffer(slipped, np.uint8).reshape(pixels.shape) - pixels.astype(float)).mean(axis=(0, 1, 2)))
    # ffmpeg's fast yuv420p → rgb24 path reads about 1.2 levels dark (docs/performance.md, "Colour")
    assert bias.max() < 2.0 and slip.max() > 3.5, (bias, slip)


def test_deliverables_keep_the_source_colour(tmp_path):
    """The deliverable (re-encoded, as in benchmark mode, or copied, as in enhance mode) and the
    side-by-side clip are tagged with the source's colour; the side-by-side shows its colours."""
    source = lavfi(tmp_path / "src.mkv", "64x48", "-colorspace", "bt709", "-color_range", "tv",
                   "-color_primaries", "bt709", "-color_trc", "bt709")
    meta = probe(source)
    enhanced = tmp_path / "enh.mkv"
    enhance_video(None, source, enhanced, 2, EncodeSettings(codec="ffv1"), device="cpu", meta=meta, progress=False)
    final = tmp_path / "final.mkv"
    mux(enhanced, source, final, EncodeSettings(), meta)
    sbs = tmp_path / "sbs.mkv"
    side_by_side(source, enhanced, sbs, colour=meta.colour)
    enhanced_x264, copied = tmp_path / "enh264.mkv", tmp_path / "copied.mp4"  # enhance mode: the stream is copied
    enhance_video(None, source, enhanced_x264, 2, EncodeSettings(), device="cpu", meta=meta, progress=False)
    mux(enhanced_x264, source, copied, None, meta)
    for path in (final, sbs, enhanced_x264, copied):
        out = probe(path)
        assert (out.color_space, out.color_range, out.color_primaries, out.color_transfer) == (
            "bt709", "tv", "bt709", "bt709"), path
    left = read_frames(sbs)[:, :, :128].astype(float)
    reference = np.concatenate(list(FrameReader(source))).repeat(2, axis=1).repeat(2, axis=2).astype(float)
    bias = (left - reference).mean(axis=(0, 1, 2))  # interpolation differences average out, a matrix slip does not
    assert np.abs(bias).max() < 1.5, bias


def test_torch_conversion_matches_ffmpeg():
    """rgb_to_yuv420 against ffmpeg's own RGB → yuv420p on a photo, both matrices, both ranges."""
    h, w = 96, 128
    rgb = np.ascontiguousarray(photo("astronaut")[::4, ::4][:h, :w])
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    for matrix in ("bt709", "smpte170m"):
        for rng in ("tv", "pc"):
            ref = subprocess.run(
                [ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-i", "-",
                 "-vf", f"scale=out_color_matrix={'bt601' if matrix == 'smpte170m' else matrix}:out_range={rng}"
                 ":flags=accurate_rnd", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
                input=rgb.tobytes(), capture_output=True, check=True).stdout
            ref = np.frombuffer(ref, np.uint8).astype(int)
            ours = rgb_to_yuv420(x, Colour(matrix=matrix, range=rng))[0].numpy().astype(int)
            luma = slice(0, h * w)
            assert np.abs(ours[luma] - ref[luma]).max() <= 1, (matrix, rng)
            assert np.abs(ours - ref).mean() < 1.0, (matrix, rng)
            # and back: YUV → RGB undoes it up to 4:2:0 chroma and rounding
            back = yuv420_to_rgb(torch.from_numpy(ours.astype(np.uint8))[None], h, w, Colour(matrix=matrix, range=rng))
            assert (back[0].permute(1, 2, 0) * 255 - torch.from_numpy(rgb)).abs().mean() < 4


def test_yuv_passthrough_is_exact(tmp_path):
    """4:2:0 bytes read and written as yuv420p reach a lossless encoder untouched: no conversion
    on either side (the raw input is tagged with the output's colour)."""
    source = lavfi(tmp_path / "src.mkv", "64x48", frames=5)
    meta = probe(source)
    out = tmp_path / "out.mkv"
    with FrameWriter(out, 64, 48, meta.fps, EncodeSettings(crf=0), pix_fmt="yuv420p", colour=meta.colour) as writer:
        for batch in FrameReader(source, meta, batch_size=2, pix_fmt="yuv420p"):
            assert batch.shape[1:] == (64 * 48 * 3 // 2,)
            writer.write(batch)
    np.testing.assert_array_equal(read_frames(out, "yuv420p"), read_frames(source, "yuv420p"))


def test_yuv_transport_matches_rgb24(tmp_path):
    """The same video enhanced with frames carried as yuv420p (converted in torch) and as rgb24
    (converted by ffmpeg) differs by the rounding of the two conversions only."""
    source = lavfi(tmp_path / "src.mkv", "96x64", frames=6)
    outs = {}
    for transport in ("rgb24", "yuv420p"):
        outs[transport] = tmp_path / f"{transport}.mkv"
        stats = enhance_video(None, source, outs[transport], 2, EncodeSettings(crf=0), device="cpu", batch_size=4,
                              progress=False, transport=transport)
        assert stats["frames"] == 6 and stats["transport"] == f"{transport}→{transport}"
    a, b = (read_frames(outs[t]).astype(int) for t in ("rgb24", "yuv420p"))
    assert a.shape == b.shape == (6, 128, 192, 3)
    assert np.abs(a - b).mean() < 2.0 and np.abs(a.mean() - b.mean()) < 1.0


_META = dict(path="x", width=1280, height=720, fps_num=25, fps_den=1, frames=1, duration=1.0, codec="h264")

# (transport asked, device, source pix_fmt, source width, encode settings) → (read, write)
LAYOUTS = [
    ("auto", "cuda", "yuv420p", 1280, {}, ("yuv420p", "yuv420p")),
    ("auto", "cpu", "yuv420p", 1280, {}, ("rgb24", "rgb24")),  # swscale converts cheaper than torch on a CPU
    ("yuv420p", "cpu", "yuv420p", 1280, {}, ("yuv420p", "yuv420p")),
    ("rgb24", "cuda", "yuv420p", 1280, {}, ("rgb24", "rgb24")),
    ("auto", "cuda", "yuv420p", 1280, {"codec": "ffv1"}, ("yuv420p", "rgb24")),  # FFV1 is RGB
    ("auto", "cuda", "yuv420p", 1280, {"pix_fmt": "yuv444p"}, ("yuv420p", "rgb24")),
    ("auto", "cuda", "yuv420p10le", 1280, {}, ("yuv420p10le", "yuv420p")),
    ("auto", "cuda", "yuv420p10le", 1280, {"pix_fmt": "yuv420p10le"}, ("yuv420p10le", "yuv420p10le")),
    ("auto", "cuda", "yuv422p10le", 1280, {}, ("rgb24", "yuv420p")),
    ("auto", "cuda", "yuv420p", 1279, {}, ("rgb24", "rgb24")),  # odd width: no 4:2:0 planes
    ("auto", "cuda", "yuvj420p", 640, {}, ("yuv420p", "yuv420p")),  # full range, read as it is
    ("auto", "cuda", "bt2020c", 640, {}, ("rgb24", "rgb24")),  # constant luminance is not a matrix: ffmpeg converts
]


@pytest.mark.parametrize(("transport", "device", "source", "width", "encode", "expected"), LAYOUTS,
                         ids=[f"{t}-{d}-{s}-{w}-{'-'.join(map(str, e.values())) or 'x264'}"
                              for t, d, s, w, e, _ in LAYOUTS])
def test_choose_layout(transport, device, source, width, encode, expected):
    pix_fmt, extra = (source, {}) if source != "bt2020c" else ("yuv420p", {"color_space": "bt2020c"})
    meta = VideoMeta(**{**_META, "width": width}, pix_fmt=pix_fmt, **extra)
    layout = choose_layout(transport, torch.device(device), meta, EncodeSettings(**encode))
    assert (layout.read, layout.write) == expected


def test_choose_layout_refuses_an_unknown_transport():
    with pytest.raises(ValueError, match="transport"):
        choose_layout("nv12", torch.device("cpu"), VideoMeta(**_META, pix_fmt="yuv420p"), EncodeSettings())


def test_pal_and_jpeg_sources_keep_their_gamma_tags(tmp_path):
    """A full-range MJPEG clip (matrix bt470bg, so a guessed gamma 2.8 transfer) goes through the
    deliverables: each step accepts the transfer's name and tags the output with it."""
    source = tmp_path / "mjpeg.avi"
    lavfi_clip(source, "64x48", 3 / 25, 25, "-pix_fmt", "yuvj420p", "-colorspace", "bt470bg", "-color_range", "pc",
               "-c:v", "mjpeg")
    meta = probe(source)
    assert (meta.colour.matrix, meta.colour.range, meta.colour.transfer) == ("bt470bg", "pc", "bt470bg")
    enhanced = tmp_path / "enh.mkv"
    stats = enhance_video(None, source, enhanced, 2, EncodeSettings(), device="cpu", meta=meta, progress=False,
                          transport="yuv420p")
    assert stats["transport"] == "yuv420p→yuv420p"
    final, sbs = tmp_path / "final.mkv", tmp_path / "sbs.mkv"
    mux(enhanced, source, final, EncodeSettings(), meta)
    side_by_side(source, enhanced, sbs, colour=meta.colour)
    for path in (enhanced, final, sbs):
        out = probe(path)
        assert (out.color_space, out.color_range, out.color_transfer) == ("bt470bg", "pc", "bt470bg"), path


def test_untagged_rotated_clip_is_guessed_from_its_coded_size(tmp_path):
    plain = lavfi(tmp_path / "plain.mp4", "640x360")
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated))
    meta = probe(rotated)
    assert (meta.width, meta.height) == (360, 640)  # display size
    assert meta.colour.matrix == "smpte170m"  # as players guess from the 640x360 the stream holds
    assert Colour.of(360, 640).matrix == "bt709"  # what the display size alone would have given


def test_full_range_and_constant_luminance_keep_their_tags():
    base = dict(_META, width=640, height=480)
    cuda = torch.device("cuda")
    jpeg = choose_layout("auto", cuda, VideoMeta(**base, pix_fmt="yuvj420p"), EncodeSettings())
    assert jpeg.colour.range == "pc"
    assert Colour(matrix="bt2020c").encode_args()[:2] == ["-colorspace", "bt2020nc"]


def test_constant_luminance_bt2020_is_written_as_bt2020nc(tmp_path):
    """swscale cannot convert to bt2020c: the output is converted and tagged as bt2020nc."""
    out = tmp_path / "cl.mkv"
    with FrameWriter(out, 64, 48, Fraction(25), EncodeSettings(), colour=Colour.of(64, 48, matrix="bt2020c")) as w:
        w.write(np.zeros((2, 48, 64, 3), np.uint8))
    meta = probe(out)
    assert (meta.frames, meta.color_space, meta.color_primaries) == (2, "bt2020nc", "bt2020")


def ten_bit_clip(path: Path, w: int = 64, h: int = 48, frames: int = 4) -> tuple[Path, np.ndarray]:
    """A lossless 10-bit 4:2:0 clip of smooth ramps whose code values are not multiples of 4 (so
    an 8-bit step anywhere shows), and its planes."""
    yy, xx = np.mgrid[0:h, 0:w]
    planes = []
    for k in range(frames):
        luma = 200 + 9 * xx + 2 * yy + k  # within 64..940 (10-bit limited range), and in the RGB gamut
        cy, cx = np.mgrid[0 : h // 2, 0 : w // 2]
        u, v = 512 + cx - cy, 512 - cx + cy
        planes.append(np.concatenate([luma.ravel(), u.ravel(), v.ravel()]).astype("<i2"))
    planes = np.stack(planes)
    ten = EncodeSettings(crf=0, pix_fmt="yuv420p10le")
    with FrameWriter(path, w, h, Fraction(25), ten, pix_fmt="yuv420p10le", colour=Colour.of(w, h)) as writer:
        writer.write(planes)
    return path, planes


def test_ten_bit_planes_pass_through_exactly(tmp_path):
    source, planes = ten_bit_clip(tmp_path / "ten.mkv")
    meta = probe(source)
    assert meta.pix_fmt == "yuv420p10le" and meta.colour.matrix == "smpte170m"
    read = read_frames(source, "yuv420p10le")
    assert read.dtype == np.int16 and read.shape == planes.shape
    np.testing.assert_array_equal(read, planes)


def test_ten_bits_survive_the_yuv_transport(tmp_path):
    """A 10-bit source through an identity model into a 10-bit output keeps its luma to within a
    code (only float rounding) with the yuv420p transport; the rgb24 transport steps it to 8 bits."""
    source, planes = ten_bit_clip(tmp_path / "ten.mkv")
    area = 64 * 48
    ten = EncodeSettings(crf=0, pix_fmt="yuv420p10le")
    errors = {}
    for transport in ("yuv420p", "rgb24"):
        out = tmp_path / f"{transport}.mkv"
        stats = enhance_video(None, source, out, 1, ten, device="cpu", batch_size=3, progress=False,
                              transport=transport)
        luma = read_frames(out, "yuv420p10le")[:, :area].astype(int)
        errors[transport] = np.abs(luma - planes[:, :area])
        if transport == "yuv420p":
            assert stats["transport"] == "yuv420p10le→yuv420p10le"
    assert errors["yuv420p"].max() <= 1 and errors["yuv420p"].mean() < 0.1
    assert errors["rgb24"].mean() > 0.5  # 8-bit RGB in between: quantisation (and swscale's offset)


def test_config_transport_reaches_inference(tmp_path):
    """`infer.transport` from the config goes through the pipeline's infer step; a bad value is
    refused by the schema."""
    from videnhance.config import ConfigError, validate_config
    from videnhance.pipeline import infer
    from videnhance.settings import Settings

    cfg = validate_config({"infer": {"transport": "yuv420p", "batch_size": 2}})
    assert validate_config({})["infer"]["transport"] == "auto"
    with pytest.raises(ConfigError, match="transport"):
        validate_config({"infer": {"transport": "nv12"}})
    source = lavfi(tmp_path / "src.mkv", "64x48")
    tiny_model(path=tmp_path / "m.pt")
    stats = infer(model=tmp_path / "m.pt", input_video=source, output=tmp_path / "out.mkv",
                  settings=Settings.from_dict({**cfg, "mode": "enhance", "device": "cpu"}))
    assert stats["transport"] == "yuv420p→yuv420p" and stats["frames"] == 3


def test_bit_depth_of_pixel_formats():
    from videnhance.colour import bit_depth

    assert [bit_depth(f) for f in ("yuv420p", "yuvj420p", "yuv420p10le", "yuv422p12be", "rgb48le", "gbrp16le",
                                   "nv12", "p010le", "p210be", "p416le", "rgb24", "gray", "gray16le", "rgb565le")] == [
        8, 8, 10, 12, 16, 16, 8, 10, 10, 16, 8, 8, 16, 8]


def test_ten_bit_hdr_source_into_eight_bits_is_warned_about(tmp_path, caplog):
    from videnhance.pipeline import infer

    source = lavfi_clip(tmp_path / "hdr.mkv", "64x48", 2 / 25, 25, "-vf",
                        "setparams=colorspace=bt2020nc:color_primaries=bt2020:color_trc=smpte2084",
                        "-pix_fmt", "yuv420p10le", "-c:v", "libx264")
    assert (probe(source).color_transfer, probe(source).color_space) == ("smpte2084", "bt2020nc")
    tiny_model(path=tmp_path / "m.pt")
    from videnhance.config import validate_config
    from videnhance.settings import Settings

    cfg = validate_config({"infer": {"batch_size": 2, "tile_overlap": 8, "transport": "yuv420p"},
                           "encode": {"preset": "veryfast", "pix_fmt": "yuv420p"}})
    settings = Settings.from_dict({**cfg, "mode": "enhance", "device": "cpu"})
    with caplog.at_level("WARNING"):
        stats = infer(model=tmp_path / "m.pt", input_video=source, output=tmp_path / "8.mkv", settings=settings)
    assert stats["transport"] == "yuv420p10le→yuv420p"
    assert "10 bits per sample" in caplog.text and "HDR (PQ, bt2020 primaries)" in caplog.text
    assert probe(tmp_path / "8.mkv").color_transfer == "smpte2084"
    caplog.clear()
    with caplog.at_level("WARNING"):
        infer(model=tmp_path / "m.pt", input_video=source, output=tmp_path / "10.mkv",
              settings=settings.replace(encode=settings.encode.replace(pix_fmt="yuv420p10le")))
    assert "bits per sample" not in caplog.text and "HDR" in caplog.text
    assert probe(tmp_path / "10.mkv").pix_fmt == "yuv420p10le"
