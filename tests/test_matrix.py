"""A generated matrix of awkward inputs, like FFmpeg's FATE suite: a table of cases, one check.

Every case is made here with the bundled ffmpeg (nothing committed): containers, codecs, pixel
formats, odd sizes, rotation, variable frame rate, streams that start late (video and audio each
with its own offset), several audio tracks, subtitles, cover art, very short clips, and stills
under video names. Each goes through the pipeline's own steps, probe → extract → infer →
reassemble, with a tiny model (no fine-tuning), and `check` holds the output to the source:

- frame count, and every presentation timestamp, start offset included (to 1 ms);
- size × scale, upright (a rotation tag is applied to the pixels, never passed on);
- every audio stream: codec, start time and duration (to 1 ms: they are copied);
- every subtitle stream (MP4's mov_text becomes SubRip in Matroska);
- or, for what cannot be enhanced, one line that names the file and says what to do.

`make test-fast` runs the cases not marked slow: one of each kind of check.
docs/robustness.md lists the matrix and what it found.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from videnhance import pipeline
from videnhance.config import validate_config
from videnhance.errors import VidenhanceError
from videnhance.io import frame_timestamps, probe
from videnhance.settings import full_video_settings

from .helpers import ffmpeg, tiny_model

SCALE = 2
TOLERANCE_S = 0.0011  # Matroska keeps milliseconds
CLIP = "testsrc2=size={size}:rate={rate}:duration={seconds}"


def _video(size="64x48", rate=25, seconds=1.0, fmt: str | None = None) -> list[str]:
    source = CLIP.format(size=size, rate=rate, seconds=seconds) + (f",format={fmt}" if fmt else "")
    return ["-f", "lavfi", "-i", source]


def _sine(seconds=1.0, freq=440, rate=48000) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate={rate}:duration={seconds}"]


@dataclass(frozen=True)
class Case:
    """One awkward input: how to make it (ffmpeg arguments, or a function of the output path), and
    what the pipeline must do with it: a correct output, `error` (a regex of the one-line error),
    and `warning` (a regex the log must hold)."""

    name: str
    suffix: str
    args: tuple[str, ...] = ()
    make: Callable[[Path], None] | None = None
    error: str | None = None
    warning: str | None = None
    fast: bool = False
    deliverable: str = ".mkv"  # the output container (encode.container)

    def build(self, folder: Path) -> Path:
        path = folder / f"{self.name}{self.suffix}"
        if self.make is not None:
            self.make(path)
        else:
            ffmpeg(*self.args, str(path))
        return path


def _codec(name, suffix, *codec_args, fmt=None, size="64x48", audio=(), fast=False, rate=25, warning=None) -> Case:
    """A clip of one container and codec (and pixel format), with the audio encoder args given."""
    inputs = _video(size, rate, 1.0, fmt) + (_sine() if audio else [])
    maps = ["-map", "0:v"] + (["-map", "1:a", *audio] if audio else [])
    return Case(name, suffix, (*inputs, *maps, *codec_args), fast=fast, warning=warning)


def _offsets(video_s: float, audio_s: float, suffix: str, vcodec=("-c:v", "libx264"), acodec=("-c:a", "aac")):
    """Video and audio that start at their own times (as in files cut from broadcasts)."""
    def make(path: Path) -> None:
        ffmpeg("-itsoffset", str(video_s), *_video(), "-itsoffset", str(audio_s), *_sine(), "-map", "0:v", "-map",
               "1:a", *vcodec, *acodec, "-copyts", str(path))
    return make


def _still(fmt: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        import skimage.data
        from PIL import Image

        Image.fromarray(skimage.data.astronaut()[:96, :128]).save(path, format=fmt)
    return make


def _with_subtitles(codec: str, container: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        srt = path.with_suffix(".srt")
        srt.write_text("1\n00:00:00,000 --> 00:00:00,800\nhello\n")
        ffmpeg(*_video(), *_sine(), "-i", str(srt), "-map", "0:v", "-map", "1:a", "-map", "2:s", "-c:v", "libx264",
               "-c:a", "aac", "-c:s", codec, "-f", container, str(path))
    return make


def _cover_art(path: Path) -> None:
    """A video with a PNG cover (attached picture) as a second video stream."""
    cover = path.with_name("cover.png")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x32:duration=0.04", "-frames:v", "1", str(cover))
    ffmpeg(*_video(), *_sine(), "-i", str(cover), "-map", "0:v", "-map", "1:a", "-map", "2:v", "-c:v:0", "libx264",
           "-c:a", "aac", "-c:v:1", "png", "-disposition:v:1", "attached_pic", str(path))


def _rotated(degrees: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        plain = path.with_name(f"plain_{path.name}")
        ffmpeg(*_video(), "-c:v", "libx264", str(plain))
        ffmpeg("-display_rotation", str(degrees), "-i", str(plain), "-c", "copy", str(path))
    return make


VFR = "setpts='(N/25+if(gt(N,10),0.3,0)+if(gt(N,18),(N-18)*0.02,0))/TB'"

CASES = [
    # containers × codecs, at 4:2:0 unless the codec says otherwise
    _codec("h264_mp4", ".mp4", "-c:v", "libx264", audio=("-c:a", "aac"), fast=True),
    _codec("h264_mkv", ".mkv", "-c:v", "libx264", audio=("-c:a", "libopus")),
    _codec("h264_mov", ".mov", "-c:v", "libx264", audio=("-c:a", "aac")),
    _codec("h264_ts", ".ts", "-c:v", "libx264", audio=("-c:a", "aac"), fast=True),
    _codec("hevc_mp4", ".mp4", "-c:v", "libx265", "-tag:v", "hvc1", "-x265-params", "log-level=error"),
    _codec("vp9_webm", ".webm", "-c:v", "libvpx-vp9", audio=("-c:a", "libopus")),
    _codec("av1_mkv", ".mkv", "-c:v", "libaom-av1", "-cpu-used", "8", "-crf", "40"),
    _codec("mpeg4_avi", ".avi", "-c:v", "mpeg4", audio=("-c:a", "libmp3lame")),
    _codec("prores_mov", ".mov", "-c:v", "prores_ks", "-profile:v", "hq", fmt="yuv422p10le"),
    _codec("ffv1_mkv", ".mkv", "-c:v", "ffv1"),
    # pixel formats
    _codec("yuv422p10_mkv", ".mkv", "-c:v", "libx264", "-pix_fmt", "yuv422p10le"),
    _codec("yuv444p_mp4", ".mp4", "-c:v", "libx264", "-pix_fmt", "yuv444p"),
    _codec("rgb24_mkv", ".mkv", "-c:v", "libx264rgb", "-pix_fmt", "rgb24"),
    _codec("gray_mkv", ".mkv", "-c:v", "ffv1", "-pix_fmt", "gray"),
    _codec("yuva420p_webm", ".webm", "-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p", fmt="yuva420p",
           warning=r"yuva420p_webm\.webm: has an alpha channel", fast=True),
    _codec("rgba_mov", ".mov", "-c:v", "png", fmt="rgba", warning=r"has an alpha channel"),
    # sizes and geometry
    _codec("odd_size_mkv", ".mkv", "-c:v", "libx264", "-pix_fmt", "yuv444p", size="63x47"),
    Case("rotated_90_mp4", ".mp4", make=_rotated(90), fast=True),
    Case("rotated_270_mp4", ".mp4", make=_rotated(270)),
    # timing
    Case("vfr_mkv", ".mkv", (*_video(seconds=1.2), "-vf", VFR, "-fps_mode", "passthrough", "-c:v", "libx264"),
         fast=True),
    Case("offset_both_23ms_mkv", ".mkv", make=_offsets(0.023, 0.023, ".mkv"), fast=True),
    Case("offset_video_100ms_mkv", ".mkv", make=_offsets(0.1, 0.0, ".mkv")),
    Case("offset_audio_60ms_mkv", ".mkv", make=_offsets(0.0, 0.06, ".mkv")),
    Case("offset_both_mp4", ".mp4", make=_offsets(0.5, 0.3, ".mp4")),
    Case("offset_ts", ".ts", make=_offsets(1.4, 1.4, ".ts")),
    Case("offset_both_mp4_to_mp4", ".mp4", make=_offsets(0.5, 0.3, ".mp4"), deliverable=".mp4"),
    # streams beside the video
    Case("three_audio_mkv", ".mkv", (*_video(), *_sine(freq=300), *_sine(freq=500), *_sine(freq=700, rate=22050),
                                     "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:a", "-c:v", "libx264",
                                     "-c:a:0", "aac", "-c:a:1", "libopus", "-c:a:2", "libmp3lame")),
    Case("subtitles_srt_mkv", ".mkv", make=_with_subtitles("srt", "matroska"), fast=True),
    Case("subtitles_mov_text_mp4", ".mp4", make=_with_subtitles("mov_text", "mp4")),
    Case("subtitles_srt_mkv_to_mp4", ".mkv", make=_with_subtitles("srt", "matroska"), deliverable=".mp4"),
    Case("cover_art_mp4", ".mp4", make=_cover_art),
    # length
    Case("one_frame_mkv", ".mkv", (*_video(seconds=0.04), "-c:v", "libx264")),
    Case("two_frames_mp4", ".mp4", (*_video(seconds=0.08), "-c:v", "libx264"), fast=True),
    # not videos at all, under video names
    Case("photo_jpeg_mp4", ".mp4", make=_still("JPEG"), error=r"photo_jpeg_mp4\.mp4: a still image \(JPEG\).*"
         r"videnhance sr-images", fast=True),
    Case("photo_png_mkv", ".mkv", make=_still("PNG"), error=r"photo_png_mkv\.mkv: a still image \(PNG\)"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    tiny_model(SCALE, channels=4, tail_std=0.02, seed=0, path=path)
    return path


def run_chain(source: Path, work: Path, model: Path, deliverable: str = ".mkv") -> Path:
    """probe → extract → infer → reassemble, as the workflow runs them for an enhance video."""
    cfg = validate_config({"scale": SCALE, "device": "cpu", "extract": {"frames": 4},
                           "encode": {"container": deliverable.lstrip(".")}})
    settings = full_video_settings(cfg, {"id": source.stem, "mode": "enhance"})
    meta = work / "meta.json"
    pipeline.probe(source=source, meta=meta, settings=settings)
    pipeline.extract(input_video=source, frames=work / "frames.npz", settings=settings, meta=meta)
    pipeline.infer(model=model, input_video=source, output=work / "enhanced.mkv", settings=settings, meta=meta)
    out = work / f"out{deliverable}"
    pipeline.reassemble(enhanced=work / "enhanced.mkv", source=source, input_video=source, deliverable=out,
                        side_by_side=work / "side_by_side.mp4", settings=settings, meta=meta)
    return out


def _times(path: Path) -> np.ndarray:
    pts, time_base = frame_timestamps(path)
    return pts * float(time_base)


def _audio_spans(path: Path) -> list[tuple[str, float, float]]:
    """(codec, start, end) of every audio stream, in seconds, from its packets."""
    import av

    spans = []
    with av.open(str(path)) as container:
        streams = list(container.streams.audio)
        first: dict[int, float] = {}
        last: dict[int, float] = {}
        for packet in container.demux(streams):
            if packet.pts is None or not packet.size:
                continue
            tb = float(packet.time_base)
            first[packet.stream.index] = min(first.get(packet.stream.index, np.inf), packet.pts * tb)
            last[packet.stream.index] = max(last.get(packet.stream.index, -np.inf),
                                            (packet.pts + (packet.duration or 0)) * tb)
        for s in streams:
            spans.append((s.codec_context.name, first.get(s.index, np.nan), last.get(s.index, np.nan)))
    return spans


def check(source: Path, out: Path) -> list[str]:
    """What the output lost or changed against its source (empty: nothing)."""
    src, dst = probe(source), probe(out)
    problems = []
    if dst.frames != src.frames:
        problems.append(f"frames: {dst.frames}, the source has {src.frames}")
    if (dst.width, dst.height, dst.rotation) != (src.width * SCALE, src.height * SCALE, 0):
        problems.append(f"size {dst.width}x{dst.height} rotation {dst.rotation}: expected "
                        f"{src.width * SCALE}x{src.height * SCALE} upright")
    t_src, t_dst = _times(source), _times(out)
    if len(t_src) != len(t_dst):
        problems.append(f"timestamps: {len(t_dst)}, the source has {len(t_src)}")
    elif len(t_src) and np.abs(t_src - t_dst).max() > TOLERANCE_S:
        worst = int(np.abs(t_src - t_dst).argmax())
        problems.append(f"frame {worst} at {t_dst[worst]:.4f} s, in the source at {t_src[worst]:.4f} s "
                        f"(first frame {t_dst[0]:.4f} against {t_src[0]:.4f})")
    a_src, a_dst = _audio_spans(source), _audio_spans(out)
    if [a[0] for a in a_src] != [a[0] for a in a_dst]:
        problems.append(f"audio codecs {[a[0] for a in a_dst]}, the source has {[a[0] for a in a_src]}")
    else:
        for i, ((_, s0, s1), (_, d0, d1)) in enumerate(zip(a_src, a_dst, strict=True)):
            if abs(s0 - d0) > TOLERANCE_S or abs((s1 - s0) - (d1 - d0)) > TOLERANCE_S:
                problems.append(f"audio {i}: {d0:.4f}–{d1:.4f} s, in the source {s0:.4f}–{s1:.4f} s")
    if len(dst.subtitles) != len(src.subtitles):
        problems.append(f"subtitles: {len(dst.subtitles)}, the source has {len(src.subtitles)}")
    return problems


def _params():
    return [pytest.param(case, id=case.name, marks=() if case.fast else pytest.mark.slow) for case in CASES]


@pytest.mark.parametrize("case", _params())
def test_awkward_input(case: Case, tmp_path, tiny, caplog):
    source = case.build(tmp_path)
    with caplog.at_level(logging.WARNING):
        if case.error:
            with pytest.raises(VidenhanceError) as err:
                run_chain(source, tmp_path, tiny, case.deliverable)
            message = str(err.value)
            assert "\n" not in message and re.search(case.error, message), message
            return
        out = run_chain(source, tmp_path, tiny, case.deliverable)
    assert check(source, out) == []
    if case.warning:
        assert re.search(case.warning, caplog.text), caplog.text


def test_the_matrix_covers_what_it_says():
    """The cases span the containers, codecs and pixel formats the module promises."""
    names = " ".join(case.name for case in CASES)
    for what in ("mp4", "mkv", "mov", "webm", "avi", "ts", "h264", "hevc", "vp9", "av1", "mpeg4", "prores", "ffv1",
                 "yuv422p10", "yuv444p", "yuva420p", "rgb24", "gray", "odd_size", "rotated", "vfr", "offset",
                 "three_audio", "subtitles", "cover_art", "one_frame", "two_frames", "photo"):
        assert what in names, what
    assert sum(case.fast for case in CASES) >= 8
