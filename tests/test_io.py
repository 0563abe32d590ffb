from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from videnhance.io import (
    LOSSLESS,
    FrameReader,
    FrameWriter,
    VideoMeta,
    mux,
    probe,
    side_by_side,
)

from .helpers import make_clip


def test_probe_reads_size_rate_frames_and_audio(clip_with_audio):
    meta = probe(clip_with_audio)
    assert (meta.width, meta.height, meta.frames) == (64, 48, 16)
    assert meta.fps == Fraction(25)
    assert [a["codec"] for a in meta.audio] == ["aac"]


def test_meta_json_round_trip(clip, tmp_path):
    meta = probe(clip)
    meta.to_json(tmp_path / "meta.json")
    assert VideoMeta.from_json(tmp_path / "meta.json") == meta


def test_lossless_write_then_read_is_frame_exact(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (10, 24, 40, 3), dtype=np.uint8)
    path = tmp_path / "x.mkv"
    with FrameWriter(path, 40, 24, Fraction(30000, 1001), LOSSLESS) as writer:
        writer.write(frames[:7])
        writer.write(frames[7:])
    meta = probe(path)
    assert meta.frames == 10 and meta.fps == Fraction(30000, 1001)
    decoded = np.concatenate(list(FrameReader(path, batch_size=3)))
    np.testing.assert_array_equal(decoded, frames)


def test_read_selected_returns_exact_frames(tmp_path):
    frames = np.stack([np.full((16, 16, 3), i * 10, np.uint8) for i in range(12)])
    path = tmp_path / "x.mkv"
    with FrameWriter(path, 16, 16, Fraction(25), LOSSLESS) as writer:
        writer.write(frames)
    picked = FrameReader(path, batch_size=5).read_selected([9, 0, 4])
    assert [int(f[0, 0, 0]) for f in picked] == [0, 40, 90]


def test_failed_write_leaves_no_output(tmp_path):
    path = tmp_path / "out.mkv"
    with pytest.raises(RuntimeError, match="boom"):
        with FrameWriter(path, 16, 16, Fraction(25), LOSSLESS) as writer:
            writer.write(np.zeros((2, 16, 16, 3), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_mux_copies_audio_and_keeps_frame_count(tmp_path, clip_with_audio):
    enhanced = tmp_path / "enh.mkv"
    frames = np.concatenate(list(FrameReader(clip_with_audio)))
    with FrameWriter(enhanced, 128, 96, Fraction(25), LOSSLESS) as writer:
        writer.write(np.repeat(np.repeat(frames, 2, axis=1), 2, axis=2))
    out = tmp_path / "final.mkv"
    mux(enhanced, clip_with_audio, out)
    meta = probe(out)
    assert (meta.width, meta.height, meta.frames) == (128, 96, 16)
    with av.open(str(out)) as c_out, av.open(str(clip_with_audio)) as c_src:
        a_out, a_src = c_out.streams.audio[0], c_src.streams.audio[0]
        assert a_out.codec_context.name == a_src.codec_context.name == "aac"
        packets_out = [p.size for p in c_out.demux(a_out) if p.size]
        packets_src = [p.size for p in c_src.demux(a_src) if p.size]
    assert packets_out == packets_src  # copied bit for bit, not re-encoded


def test_side_by_side_is_twice_as_wide(tmp_path, clip):
    enhanced = make_clip(tmp_path / "big.mp4", size=(128, 96))
    out = tmp_path / "sbs.mp4"
    side_by_side(clip, enhanced, out)
    meta = probe(out)
    assert (meta.width, meta.height, meta.frames) == (256, 96, 16)


def test_a_side_by_side_too_wide_for_the_encoder_is_shown_smaller(tmp_path, clip, monkeypatch):
    """An 8K output ×2 would make a 30 720 px wide side-by-side, which x264 refuses (it failed
    `reassemble` on a 7680×4320 clip): beyond the limit both halves are shown at half of it."""
    import videnhance.io

    monkeypatch.setattr(videnhance.io, "SIDE_BY_SIDE_MAX_WIDTH", 128)
    enhanced = make_clip(tmp_path / "big.mp4", size=(128, 96))
    side_by_side(clip, enhanced, tmp_path / "sbs.mp4")
    meta = probe(tmp_path / "sbs.mp4")
    assert (meta.width, meta.height, meta.frames) == (128, 48, 16)


def test_side_by_side_of_an_odd_height_is_padded_to_4_2_0(tmp_path):
    small = make_clip(tmp_path / "small.mp4", size=(32, 15), frames=4, settings=LOSSLESS)
    enhanced = make_clip(tmp_path / "big.mkv", size=(64, 31), frames=4, settings=LOSSLESS)
    out = tmp_path / "sbs.mp4"
    side_by_side(small, enhanced, out)
    meta = probe(out)
    assert (meta.width, meta.height, meta.frames, meta.pix_fmt) == (128, 32, 4, "yuv420p")


def test_encoder_args_per_codec():
    """Each codec gets its own quality options; colour options only for YUV outputs."""
    from videnhance.colour import Colour
    from videnhance.io import EncodeSettings

    colour = Colour.of(64, 48, matrix="bt709")
    x264 = EncodeSettings().args(64, 48, colour)
    assert x264[x264.index("-crf") + 1] == "18" and x264[x264.index("-preset") + 1] == "veryfast"
    assert x264[x264.index("-colorspace") + 1] == "bt709" and x264[x264.index("-color_range") + 1] == "tv"
    nvenc = EncodeSettings(codec="h264_nvenc", crf=23, preset="p6").args(64, 48)
    assert nvenc[nvenc.index("-cq") + 1] == "23" and nvenc[nvenc.index("-preset") + 1] == "p6"
    assert "-crf" not in nvenc and "-preset" not in EncodeSettings(codec="hevc_nvenc").args(64, 48)  # x264 preset
    assert "-colorspace" not in EncodeSettings(codec="ffv1").args(64, 48, colour)  # RGB
    assert EncodeSettings().args(63, 48)[3] == "yuv444p"  # odd width: 4:2:0 impossible


def test_every_ffmpeg_io_starts_goes_through_spawn(tmp_path):
    """The benchmarks watch ffmpeg's memory through `io.on_spawn`, so every process io starts
    (the reader's, the writer's, one-shot runs) must pass through `io.spawn`."""
    from videnhance.io import on_spawn, run_ffmpeg

    seen = []
    with on_spawn(seen.append):
        path = tmp_path / "c.mkv"
        with FrameWriter(path, 16, 16, Fraction(25), LOSSLESS) as writer:
            writer.write(np.zeros((3, 16, 16, 3), np.uint8))
        frames = np.concatenate(list(FrameReader(path)))
        run_ffmpeg(["-i", str(path), "-f", "null", "-"], what="null output")
    assert frames.shape == (3, 16, 16, 3)
    assert len(seen) >= 3 and all("ffmpeg" in Path(p.args[0]).name for p in seen)
    seen.clear()
    FrameReader(path).read_selected(np.array([0]))  # outside the block: no hook
    assert seen == []
