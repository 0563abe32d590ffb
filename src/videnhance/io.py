"""Video in and out: probe, streaming decode into uint8 batches, streaming encode, mux.

Frames travel through ffmpeg pipes as raw RGB24 (no file per frame). The ffmpeg binary is the
static one shipped by imageio-ffmpeg, so no system ffmpeg is needed. Probing uses PyAV, because
that binary comes without ffprobe.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .colour import (
    MATRICES,
    PLANAR,
    PRIMARIES,
    RANGES,
    TRANSFERS,
    Colour,
    is_yuv,
    yuv420_frame_bytes,
)
from .errors import VideoError
from .files import atomic_output, atomic_write_text  # noqa: F401 - re-exported for callers of io
from .memory import lean_encoder

log = logging.getLogger(__name__)


PIPE_SIZE = 1 << 20  # bigger pipe buffers: fewer wake-ups per frame between ffmpeg and Python


_SPAWN_HOOKS: list = []


@contextmanager
def on_spawn(hook):
    """While the block runs, `hook(process)` is called for every process `spawn` starts (the
    benchmarks record the ffmpeg processes' peak memory this way)."""
    _SPAWN_HOOKS.append(hook)
    try:
        yield
    finally:
        _SPAWN_HOOKS.remove(hook)


def spawn(cmd: list[str], **popen_kwargs) -> subprocess.Popen:
    """Start a process (every ffmpeg this module runs starts here)."""
    proc = subprocess.Popen(cmd, **popen_kwargs)
    for hook in list(_SPAWN_HOOKS):
        hook(proc)
    return proc


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd, capture_output=True, text=True)` through `spawn`."""
    proc = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def ffmpeg_exe() -> str:
    """The ffmpeg binary: $VIDENHANCE_FFMPEG, else imageio-ffmpeg's bundled static build."""
    exe = os.environ.get("VIDENHANCE_FFMPEG")
    if exe:
        return exe
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class VideoMeta:
    """What the pipeline needs to know about a video, as written to meta.json by `probe`."""

    path: str
    width: int  # display size (after rotation), the size decoded frames come out in
    height: int
    fps_num: int
    fps_den: int
    frames: int
    duration: float
    codec: str
    pix_fmt: str
    rotation: int = 0
    audio: list[dict] = field(default_factory=list)
    subtitles: list[dict] = field(default_factory=list)
    vfr: bool = False  # frame durations differ: reassemble restores the source's timestamps
    start: float = 0.0  # the first frame's presentation time, seconds: the output's video starts there too
    alpha: bool = False  # an alpha channel, which is dropped (frames are decoded as RGB)
    # colour tags as ffmpeg names ("" = not tagged); `colour` fills the gaps
    color_space: str = ""
    color_range: str = ""
    color_primaries: str = ""
    color_transfer: str = ""

    @property
    def colour(self) -> Colour:
        """The matrix, range, primaries and transfer frames are read and written with. An RGB
        stream's matrix and range tags say nothing about YUV, so they are guessed like untagged ones."""
        yuv = is_yuv(self.pix_fmt)
        coded = (self.height, self.width) if self.rotation % 180 else (self.width, self.height)  # players guess from it
        return Colour.of(*coded, self.pix_fmt, self.color_space if yuv else "",
                         self.color_range if yuv else "", self.color_primaries, self.color_transfer)

    @property
    def fps(self) -> Fraction:
        return Fraction(self.fps_num, self.fps_den)

    def to_json(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def from_json(cls, path: str | Path) -> VideoMeta:
        return cls(**json.loads(Path(path).read_text()))


def probe(path: str | Path, decode_check: bool = True) -> VideoMeta:
    """Read a video's metadata with PyAV.

    `decode_check=True` counts frames by decoding the whole stream with ffmpeg, which also finds
    truncated or corrupt files: right for a user's file, once (the `probe` step writes meta.json
    for the later steps). `False` counts packets only (no decoding): exact for the files the
    pipeline writes itself, and much cheaper on long videos."""
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file. Check the path in your video sheet or glob.")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: the file is empty. Re-copy or re-download it, or remove it from the sheet.")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise VideoError(f"{path}: not a readable video ({err}). Check it plays, or remove it from the sheet.") from err
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: has no video stream (audio only?). Remove it from the sheet.")
        stream = container.streams.video[0]
        if is_still_image(container.format.name):
            kind = IMAGE_CODECS.get(stream.codec_context.name, stream.codec_context.name.upper())
            raise VideoError(f"{path}: a still image ({kind}) under a video name, not a video: per-video fine-tuning "
                             "needs a moving clip. Give it its own suffix and take it out of the video sheet or glob; "
                             "`videnhance sr-images` runs a base model on still images.")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise VideoError(f"{path}: frame rate unknown. Remux it with a frame rate (ffmpeg -r).")
        audio = [
            {"index": s.index, "codec": s.codec_context.name, "sample_rate": s.codec_context.sample_rate,
             "channels": s.codec_context.channels}
            for s in container.streams.audio
        ]
        subtitles = [{"index": s.index, "codec": s.codec_context.name} for s in container.streams.subtitles]
        codec = stream.codec_context.name
        pix_fmt = stream.codec_context.pix_fmt or ""
        # VP8/VP9 in WebM/Matroska keep alpha beside the picture (BlockAdditional), where FFmpeg's own
        # decoders do not look: the decoded format says yuv420p, the container says alpha_mode 1
        side_alpha = {k.lower(): v for k, v in stream.metadata.items()}.get("alpha_mode") == "1"
        width, height = stream.codec_context.width, stream.codec_context.height
        duration = float(container.duration / 1_000_000) if container.duration else 0.0
        rotation = 0
        frames = 0
        tags = _colour_tags(stream.codec_context)
        try:
            for frame in container.decode(stream):
                rotation = int(getattr(frame, "rotation", 0) or 0)
                tags = {key: tags[key] or value for key, value in _colour_tags(frame).items()}
                frames = 1
                break
        except av.error.FFmpegError as err:
            raise VideoError(f"{path}: the video stream cannot be decoded ({err}). The file may be truncated or "
                             "corrupt.") from err
        if frames == 0:
            raise VideoError(f"{path}: the video stream has no frames. Remove it from the sheet.")
    timestamps, time_base = frame_timestamps(path)
    frames = count_frames(path) if decode_check else len(timestamps)
    vfr = off_grid(timestamps, time_base, rate)
    start = float(int(timestamps[0]) * time_base) if len(timestamps) else 0.0
    alpha = has_alpha(pix_fmt) or side_alpha
    if rotation % 180:
        width, height = height, width
    if not duration:
        duration = float(frames / rate)
    return VideoMeta(
        path=str(path), width=width, height=height, fps_num=rate.numerator, fps_den=rate.denominator,
        frames=frames, duration=duration, codec=codec, pix_fmt=pix_fmt, rotation=rotation,
        audio=audio, subtitles=subtitles, vfr=vfr, start=start, alpha=alpha, **tags,
    )


# demuxers of single images: a photo named .mp4 opens as one of these, not as a video container
IMAGE_CODECS = {"mjpeg": "JPEG", "png": "PNG", "webp": "WebP", "bmp": "BMP", "tiff": "TIFF", "jpeg2000": "JPEG 2000",
                "jpegxl": "JPEG XL", "qoi": "QOI", "pam": "PAM", "ppm": "PPM", "pgm": "PGM"}


def has_alpha(pix_fmt: str) -> bool:
    return pix_fmt.startswith(("rgba", "bgra", "argb", "abgr", "yuva", "gbrap", "ya"))


def is_still_image(format_name: str) -> bool:
    """Whether FFmpeg opened the file with a still-image demuxer (image2, jpeg_pipe, png_pipe, …)."""
    return any(name == "image2" or name.endswith("_pipe") for name in format_name.split(","))


def off_grid(timestamps: np.ndarray, time_base: Fraction, rate: Fraction, tolerance_s: float = 0.0015) -> bool:
    """Whether frames are not all at start + k / rate: a variable frame rate, or gaps (an AVI that
    muxed its first frame late, a dropped frame), which the output must keep. Within `tolerance_s`
    or half a tick (Matroska rounds to milliseconds). A false alarm costs little: the output is
    encoded without B-frames and given the source's timestamps, which it would match anyway."""
    if len(timestamps) < 2:
        return False
    seconds = timestamps.astype(np.float64) * float(time_base)
    grid = seconds[0] + np.arange(len(seconds)) / float(rate)
    return bool(np.abs(seconds - grid).max() > max(tolerance_s, 0.5 * float(time_base)))


def _colour_tags(obj) -> dict[str, str]:
    """The colour tags of a PyAV codec context or frame, as ffmpeg option names ("" = untagged)."""
    def name(table: dict[int, str], attr: str) -> str:
        try:
            return table.get(int(getattr(obj, attr, 0) or 0), "")
        except (TypeError, ValueError):
            return ""
    return {"color_space": name(MATRICES, "colorspace"), "color_range": name(RANGES, "color_range"),
            "color_primaries": name(PRIMARIES, "color_primaries"), "color_transfer": name(TRANSFERS, "color_trc")}


def frame_timestamps(path: str | Path) -> tuple[np.ndarray, Fraction]:
    """Presentation timestamps of the first video stream's frames, sorted, in its time base
    (read-only). One demuxing pass per file version in a process: `probe` and a part's seek, say,
    share it."""
    stat = os.stat(path)
    return _frame_timestamps(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _frame_timestamps(path: str, _mtime_ns: int, _size: int) -> tuple[np.ndarray, Fraction]:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        pts = np.sort(np.asarray([p.pts for p in container.demux(stream) if p.pts is not None and p.size],
                                 dtype=np.int64))
        pts.flags.writeable = False
        return pts, Fraction(stream.time_base)


def retime(video_path: str | Path, timestamps: np.ndarray, time_base: Fraction, out_path: str | Path) -> None:
    """Copy a video stream whose frames are in presentation order (intra-only or encoded without
    B-frames), giving frame k the timestamp `timestamps[k]`: restores variable frame timing."""
    import av

    with (av.open(str(video_path)) as src, atomic_output(out_path) as tmp,
          av.open(str(tmp), "w", format="matroska") as dst):
        in_stream = src.streams.video[0]
        out_stream = dst.add_stream_from_template(in_stream)
        k = 0
        for packet in src.demux(in_stream):
            if packet.size == 0:
                continue
            if k >= len(timestamps):
                raise VideoError(f"{video_path}: more frames than the source's {len(timestamps)} timestamps")
            packet.pts = packet.dts = int(timestamps[k])
            packet.time_base = time_base
            packet.stream = out_stream
            dst.mux(packet)
            k += 1
        if k != len(timestamps):
            raise VideoError(f"{video_path}: {k} frames for {len(timestamps)} source timestamps")


def join_videos(parts: list[str | Path], out_path: str | Path) -> int:
    """Join videos of the same stream layout end to end without re-encoding (ffmpeg's concat
    demuxer, packets copied): the parts of a long video (`segments`). Checks that the result has
    every part's frames, each with its own timestamp, and returns the frame count."""
    counts = [len(frame_timestamps(p)[0]) for p in parts]
    with atomic_output(out_path) as tmp, tempfile.TemporaryDirectory(prefix="videnhance-join-") as folder:
        listing = Path(folder) / "parts.txt"
        listing.write_text("".join("file '" + str(Path(p).resolve()).replace("'", "'\\''") + "'\n" for p in parts))
        run_ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing), "-map", "0:v:0", "-c", "copy",
                    "-f", "matroska", str(tmp)], what=f"joining {len(parts)} parts into {out_path}")
        stamps = frame_timestamps(tmp)[0]
    if len(stamps) != sum(counts) or len(np.unique(stamps)) != len(stamps):
        raise VideoError(f"{out_path}: joining parts of {counts} frames gave {len(stamps)} frames "
                         f"({len(np.unique(stamps))} distinct timestamps)")
    return len(stamps)


TRUNCATION_SIGNS = ("File ended prematurely", "partial file", "Truncating packet", "moov atom not found",
                    "Packet corrupt", "Invalid NAL unit size")


def count_frames(path: str | Path) -> int:
    """Exact number of decodable frames, counted the way the decoder will deliver them."""
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0",
           "-fps_mode", "passthrough", "-f", "null", "-progress", "pipe:1", "-"]
    proc = _run(cmd)
    if proc.returncode != 0:
        raise VideoError(f"{path}: ffmpeg cannot decode it: {proc.stderr.strip()[-400:]}")
    if any(sign in proc.stderr for sign in TRUNCATION_SIGNS):
        raise VideoError(
            f"{path}: the file is truncated or corrupt (ffmpeg: {proc.stderr.strip().splitlines()[-1][-200:]}). "
            "Re-copy it; to keep only the part that decodes, remux it first: ffmpeg -i IN -c copy OUT.mkv"
        )
    counts = [int(line.split("=", 1)[1]) for line in proc.stdout.splitlines() if line.startswith("frame=")]
    if not counts or counts[-1] == 0:
        raise VideoError(f"{path}: the video stream has no decodable frames. Remove it from the sheet.")
    return counts[-1]


PIPE_FORMATS = ("rgb24", *PLANAR)  # what FrameReader delivers and FrameWriter takes


def frame_layout(pix_fmt: str, height: int, width: int) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one frame in a transport format: RGB (h, w, 3) uint8, or the 4:2:0
    planes (h·w·3/2,) as uint8 at 8 bits and int16 at 10 (little-endian, as ffmpeg writes
    `yuv420p10le` on x86 and ARM)."""
    if pix_fmt not in PIPE_FORMATS:
        raise ValueError(f"pix_fmt must be one of {PIPE_FORMATS}, not {pix_fmt!r}")
    if pix_fmt == "rgb24":
        return (height, width, 3), np.dtype(np.uint8)
    if width % 2 or height % 2:
        raise ValueError(f"{pix_fmt} frames need even sizes, not {width}x{height}")
    return (yuv420_frame_bytes(height, width),), np.dtype(np.uint8 if PLANAR[pix_fmt] == 8 else "<i2")


class FrameReader:
    """Decode a video's first video stream into batches of frames (`frame_layout`).

    `pix_fmt="rgb24"` (the default) gives uint8 RGB frames, shape (n, H, W, 3), converted by ffmpeg
    with the source's colour matrix and range (`VideoMeta.colour`). `pix_fmt="yuv420p"` (uint8)
    or `"yuv420p10le"` (int16) gives the planar 4:2:0 samples, shape (n, H·W·3/2), for
    `colour.yuv420_to_rgb` on the model's device (even sizes only). ffmpeg decodes in its own
    process; a thread reads ahead into a bounded queue so decoding overlaps with whatever
    consumes the batches, and memory stays flat in video length.
    """

    def __init__(self, path: str | Path, meta: VideoMeta | None = None, batch_size: int = 8, prefetch: int = 2,
                 pix_fmt: str = "rgb24", span: tuple[int, int] | None = None):
        self.path = Path(path)
        self.meta = meta or probe(path)
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.span = span  # frames [start, end) only, by index (ffmpeg decodes and drops the ones before)
        if span is not None and not 0 <= span[0] < span[1] <= self.meta.frames:
            raise ValueError(f"{self.path}: frames {span[0]}–{span[1]} are not within its {self.meta.frames} frames")
        self.expected = span[1] - span[0] if span is not None else self.meta.frames
        try:
            self._shape, self._dtype = frame_layout(pix_fmt, self.meta.height, self.meta.width)
        except ValueError as err:
            raise ValueError(f"{self.path}: {err}") from None
        self.pix_fmt = pix_fmt

    def _command(self) -> list[str]:
        convert = self.meta.colour.decode_filter(self.meta.pix_fmt) if self.pix_fmt == "rgb24" else []
        filters, seek, limit = convert[1:], [], []  # `decode_filter` gives ["-vf", filter] or []
        if self.span is not None:
            start, end = self.span
            seek = self._seek(start)
            if seek is None:  # no timestamp per frame: decode from the start and drop what comes before
                filters = [f"select=between(n\\,{start}\\,{end - 1})", *filters]
                seek = []
            limit = ["-frames:v", str(end - start)]  # and stop at the part's last frame
        vf = ["-vf", ",".join(filters)] if filters else []
        return [ffmpeg_exe(), "-nostdin", "-v", "error", *seek, "-i", str(self.path), "-map", "0:v:0", *vf, *limit,
                "-fps_mode", "passthrough", "-thread_queue_size", "1",  # one decoded frame queued, not 8
                "-f", "rawvideo", "-pix_fmt", self.pix_fmt, "-"]

    def _seek(self, start: int) -> list[str] | None:
        """ffmpeg input args that start decoding at frame `start`: a seek to the keyframe before it
        and, as ffmpeg seeks accurately, every frame before its presentation timestamp dropped
        (the stream's own timestamps, so variable frame rates and B-frames are exact). None when
        the container's timestamps do not give one per frame."""
        if start == 0:
            return []
        stamps, time_base = frame_timestamps(self.path)
        if len(stamps) != self.meta.frames or len(np.unique(stamps)) != len(stamps):
            return None
        at, before = stamps[start] * time_base, stamps[start - 1] * time_base
        return ["-seek_timestamp", "1", "-ss", f"{float(at - (at - before) / 4):.6f}"]

    def __iter__(self) -> Iterator[np.ndarray]:
        shape, dtype = self._shape, self._dtype
        frame_bytes = int(np.prod(shape)) * dtype.itemsize
        proc = spawn(self._command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, pipesize=PIPE_SIZE)
        batches: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def pump() -> None:
            try:
                while not stop.is_set():
                    batch = np.empty((self.batch_size, *shape), dtype)  # writable, filled in place
                    view, filled = memoryview(batch).cast("B"), 0
                    while filled < len(view):
                        got = proc.stdout.readinto(view[filled:])
                        if not got:
                            break
                        filled += got
                    n = filled // frame_bytes
                    if n:
                        batches.put(batch[:n])
                    if filled < len(view):
                        break
            finally:
                batches.put(None)

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        delivered = 0
        try:
            while (batch := batches.get()) is not None:
                delivered += len(batch)
                yield batch
        finally:
            stop.set()
            if proc.poll() is None and delivered < self.expected:
                proc.kill()
            while thread.is_alive():  # drain so the pump can finish
                try:
                    batches.get(timeout=0.1)
                except queue.Empty:
                    pass
            proc.stdout.close()
            stderr = proc.stderr.read().decode(errors="replace")
            proc.stderr.close()
            code = proc.wait()
        if code != 0:
            raise VideoError(f"{self.path}: decoding failed after {delivered} frames: {stderr.strip()[-400:]}")
        if delivered != self.expected:
            raise VideoError(
                f"{self.path}: decoded {delivered} frames, probe counted {self.expected}"
                f"{f' from frame {self.span[0]}' if self.span else ''}. "
                "The file may be truncated or corrupt; re-copy it."
            )

    def read_selected(self, indices: list[int] | np.ndarray) -> np.ndarray:
        """Return only the frames at `indices` (sorted), decoding the stream once."""
        wanted = np.asarray(sorted(set(int(i) for i in indices)))
        out = np.empty((len(wanted), *self._shape), self._dtype)
        pos = 0
        start = 0
        for batch in self:
            stop = start + len(batch)
            while pos < len(wanted) and wanted[pos] < stop:
                out[pos] = batch[wanted[pos] - start]
                pos += 1
            start = stop
        if pos != len(wanted):
            raise VideoError(f"{self.path}: asked for frame {wanted[pos]} of {start}.")
        return out


@dataclass
class EncodeSettings:
    """How video is encoded (config key `encode`)."""

    codec: str = "libx264"
    crf: int = 18
    preset: str = "veryfast"
    pix_fmt: str = "yuv420p"
    bframes: bool = True  # False: frames stay in presentation order (needed to restore VFR timing)
    lean: bool = False  # x264/x265 with a short look-ahead: 60 % of the memory for huge frames (`memory.lean_encoder`)

    def args(self, width: int, height: int, colour: Colour | None = None) -> list[str]:
        """Output options for a width×height stream; with `colour`, a YUV output is converted
        with its matrix and range and tagged with them (primaries and transfer need
        `colour.tag_filter()` in the filter graph, or `-color_primaries`/`-color_trc` on a raw input)."""
        if self.codec == "ffv1":  # lossless RGB: what evaluation and the benchmark input use
            return ["-c:v", "ffv1", "-level", "3", "-pix_fmt", "gbrp"]
        pix_fmt = self.pix_fmt
        if pix_fmt.startswith("yuv420") and (width % 2 or height % 2):
            pix_fmt = pix_fmt.replace("420", "444")  # 4:2:0 needs even sizes
        args = ["-c:v", self.codec, "-pix_fmt", pix_fmt]
        if colour is not None and is_yuv(pix_fmt):
            args += colour.encode_args()
        if self.codec == "libx264" and self.crf == 0:  # lossless; at 10 bits crf 0 is not (crf goes below 0 there)
            args += ["-qp", "0", "-preset", self.preset]
        elif self.codec in ("libx264", "libx265"):
            args += ["-crf", str(self.crf), "-preset", self.preset]
        if self.lean and self.codec == "libx264":  # a 5-frame look-ahead (mbtree stays on), no B-frames, slice threads
            args += ["-x264-params", LEAN_X264]
        elif self.lean and self.codec == "libx265":
            args += ["-x265-params", LEAN_X265]
        elif self.codec == "libsvtav1":
            args += ["-crf", str(self.crf), "-preset", "8"]
        elif self.codec.endswith("_nvenc"):  # constant quality, like crf (cq 0 would mean "automatic")
            args += ["-rc", "vbr", "-cq", str(min(max(self.crf, 1), 51)), "-b:v", "0"]
            if self.preset in NVENC_PRESETS:
                args += ["-preset", self.preset]
        if not self.bframes:
            args += ["-bf", "0"]
        return args


LOSSLESS = EncodeSettings(codec="ffv1")
LEAN_X264 = "sliced-threads=1:rc-lookahead=5:bframes=0"  # docs/performance.md, "ffmpeg's own memory"
LEAN_X265 = "rc-lookahead=5:bframes=0:frame-threads=1"  # the same idea for x265 (not measured)
NVENC_PRESETS = tuple(f"p{i}" for i in range(1, 8))


class FrameWriter:
    """Encode batches into a video file through an ffmpeg pipe: uint8 RGB (n, H, W, 3) with
    `pix_fmt="rgb24"`, or planar 4:2:0 samples (n, H·W·3/2) with `pix_fmt="yuv420p"` (uint8) or
    `"yuv420p10le"` (int16), which must already be in `colour` and are encoded without any
    conversion when the output has the same format.

    `colour` (default: what an untagged stream of this size would be) sets the RGB → YUV
    conversion and the stream's colour tags.

    Use as a context manager: the file appears under its final name only after ffmpeg finished
    cleanly; a failure or kill leaves no complete-looking file. Writing runs in a thread.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: Fraction,
                 settings: EncodeSettings | None = None, queue_size: int = 2, pix_fmt: str = "rgb24",
                 colour: Colour | None = None):
        self.path = Path(path)
        self.width, self.height, self.fps = width, height, Fraction(fps)
        self.settings = lean_encoder(settings or EncodeSettings(), width, height, str(self.path))
        try:
            self.frame_shape, self.frame_dtype = frame_layout(pix_fmt, height, width)
        except ValueError as err:
            raise ValueError(f"{self.path}: {err}") from None
        self.pix_fmt = pix_fmt
        self.colour = colour or Colour.of(width, height)
        self.frames = 0
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None

    def __enter__(self) -> FrameWriter:
        self._ctx = atomic_output(self.path)
        self._tmp = self._ctx.__enter__()
        if self.pix_fmt != "rgb24":  # already in the output's colour: tag it so that nothing converts it
            raw_colour = self.colour.yuv_input_args()
        else:  # the encoder's RGB → YUV uses the output options; primaries and transfer stick from here
            raw_colour = ["-color_primaries", self.colour.primaries, "-color_trc", self.colour.transfer]
        cmd = [ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", self.pix_fmt,
               "-s", f"{self.width}x{self.height}", "-r", f"{self.fps.numerator}/{self.fps.denominator}",
               *raw_colour, "-i", "-", *self.settings.args(self.width, self.height, self.colour), str(self._tmp)]
        self._proc = spawn(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, pipesize=PIPE_SIZE)
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()
        return self

    def _pump(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._proc.stdin.write(memoryview(batch).cast("B"))  # no copy of the frames
                except (BrokenPipeError, OSError) as err:
                    self._error = err

    def write(self, batch: np.ndarray) -> None:
        if batch.dtype != self.frame_dtype or batch.shape[1:] != self.frame_shape:
            raise ValueError(f"expected {self.frame_dtype} frames of {self.frame_shape}, "
                             f"got {batch.dtype} {batch.shape}")
        if self._error is not None:
            raise VideoError(f"{self.path}: encoder stopped: {self._stderr()}")
        self._queue.put(np.ascontiguousarray(batch))
        self.frames += len(batch)

    def _stderr(self) -> str:
        try:
            return self._proc.stderr.read().decode(errors="replace").strip()[-400:]
        except ValueError:
            return ""

    def __exit__(self, exc_type, exc, tb) -> None:
        self._queue.put(None)
        self._thread.join()
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        if exc_type is not None:
            self._proc.kill()
            self._proc.wait()
            self._ctx.__exit__(exc_type, exc, tb)
            return
        code = self._proc.wait()
        if code != 0 or self._error is not None:
            message = self._stderr()
            err = VideoError(f"{self.path}: encoding failed (ffmpeg exit {code}): {message or self._error}. "
                             "Check free disk space and the encode settings.")
            self._ctx.__exit__(VideoError, err, None)
            raise err
        self._ctx.__exit__(None, None, None)


def run_ffmpeg(args: list[str], what: str) -> None:
    proc = _run([ffmpeg_exe(), "-nostdin", "-y", "-v", "error", *args])
    if proc.returncode != 0:
        raise VideoError(f"{what}: ffmpeg failed: {proc.stderr.strip()[-600:]}")


def mux(video_path: str | Path, source_path: str | Path, out_path: str | Path,
        settings: EncodeSettings | None = None, source_meta: VideoMeta | None = None) -> None:
    """Put the enhanced video stream together with the source's audio and subtitles (copied), every
    stream at the source's own times: the video at its first frame's time (a file cut from a
    broadcast starts at 23 ms or 1.4 s, and its audio may start elsewhere), and a variable or
    gapped frame timing restored frame by frame.

    `settings=None` copies the video stream as is; otherwise it is encoded with `settings`.
    """
    meta = source_meta or probe(source_path)
    out_path = Path(out_path)
    if meta.vfr:  # the enhanced stream was written at a constant rate: give it the source's timing
        timestamps, time_base = frame_timestamps(source_path)
        if len(timestamps) == meta.frames:
            retimed = out_path.with_name(f".{out_path.stem}.retimed.mkv")
            retime(video_path, timestamps, time_base, retimed)
            try:
                return _mux(retimed, source_path, out_path, settings, meta, video_start=None)
            finally:
                retimed.unlink(missing_ok=True)
        log.warning("%s: %d timestamps for %d frames; keeping a constant frame rate", source_path,
                    len(timestamps), meta.frames)
    _mux(video_path, source_path, out_path, settings, meta, video_start=meta.start)


TEXT_SUBTITLES = {"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"}


def _subtitle_args(meta: VideoMeta, out_path: Path) -> list[str]:
    """Maps and codecs that carry the source's subtitles into `out_path`'s container.

    Matroska holds nearly all of them as they are, except mov_text (→ SubRip). MP4/MOV hold
    only mov_text: text subtitles are converted to it; bitmap ones (PGS, DVD, DVB) cannot be and
    are left out with a warning instead of failing the whole video."""
    if out_path.suffix.lower() not in (".mp4", ".mov", ".m4v"):
        mov_text = any(sub["codec"] == "mov_text" for sub in meta.subtitles)
        return ["-map", "1:s?", "-c:s", "srt" if mov_text else "copy"]
    args = []
    for i, sub in enumerate(meta.subtitles):
        if sub["codec"] in TEXT_SUBTITLES:
            args += ["-map", f"1:s:{i}"]
        else:
            log.warning("%s: subtitle stream %d (%s) is a bitmap format that %s cannot hold; it is left out "
                        "(use encode.container: mkv to keep it)", out_path, i, sub["codec"], out_path.suffix)
    return [*args, "-c:s", "mov_text"] if args else args


def _mux(video_path: Path | str, source_path: Path | str, out_path: Path, settings: EncodeSettings | None,
         meta: VideoMeta, video_start: float | None) -> None:
    """`video_start`: where the enhanced stream (written from 0) starts in the output, in seconds;
    None: it carries its timestamps already (`retime`). Timestamps are copied (`-copyts`), so the
    source's audio and subtitles keep theirs."""
    offset = ["-itsoffset", f"{video_start:.6f}"] if video_start else []
    video_codec = ["-c:v", "copy"]  # keeps the colour tags FrameWriter gave the stream
    if settings is not None:
        vmeta = probe(video_path, decode_check=False)
        settings = lean_encoder(settings, vmeta.width, vmeta.height, str(out_path))
        video_codec = ["-vf", meta.colour.tag_filter(), *settings.args(vmeta.width, vmeta.height, meta.colour)]
    subtitles = _subtitle_args(meta, out_path)
    with atomic_output(out_path) as tmp:
        run_ffmpeg(
            [*offset, "-i", str(video_path), "-i", str(source_path), "-map", "0:v:0", "-map", "1:a?", *subtitles,
             *video_codec, "-fps_mode", "passthrough", "-c:a", "copy", "-copyts", "-map_metadata", "1", str(tmp)],
            what=f"{out_path} (mux of {video_path} with the audio of {source_path})",
        )


SIDE_BY_SIDE_MAX_WIDTH = 7680  # two 3840-wide halves; x264 refuses frames wider than 16384


def side_by_side(input_path: str | Path, enhanced_path: str | Path, out_path: str | Path,
                 settings: EncodeSettings | None = None, colour: Colour | None = None) -> None:
    """Comparison clip: the input upscaled with bicubic (left) next to the enhanced video (right),
    with one black row added below when the height is odd (so it can be 4:2:0). Outputs wider
    than half of `SIDE_BY_SIDE_MAX_WIDTH` are shown at that width, both halves alike.

    Both sides are read as RGB with `colour` (the source's; default: the enhanced stream's) and
    the clip is encoded and tagged with it, so the two halves show the colours the pipeline saw."""
    emeta = probe(enhanced_path, decode_check=False)
    colour = colour or emeta.colour
    settings = settings or EncodeSettings(crf=20)
    panel_w, panel_h, resize = emeta.width, emeta.height, ""
    if 2 * panel_w > SIDE_BY_SIDE_MAX_WIDTH:  # an 8K output ×2: too wide for the encoders; show it smaller
        panel_w = SIDE_BY_SIDE_MAX_WIDTH // 2
        panel_h = max(2, round(emeta.height * panel_w / emeta.width / 2) * 2)
        resize = f"{panel_w}:{panel_h}:flags=area:"
        log.info("%s: the side-by-side shows both halves at %dx%d (the output is %dx%d)", out_path, panel_w,
                 panel_h, emeta.width, emeta.height)
    width = 2 * panel_w
    height = panel_h + panel_h % 2  # padded to even: 4:2:0, which every player can show
    settings = lean_encoder(settings, width, height, str(out_path))
    to_rgb = f"{colour.scale_input()},format=gbrp"
    # frame numbers, not container timestamps, pair the two sides (mp4 and mkv round differently)
    retime = f"settb=AVTB,setpts=N*{emeta.fps_den}/{emeta.fps_num}/TB"
    with atomic_output(out_path) as tmp:
        run_ffmpeg(
            ["-i", str(input_path), "-i", str(enhanced_path), "-filter_complex",
             f"[0:v:0]{retime},scale={panel_w}:{panel_h}:flags=bicubic:{to_rgb},setsar=1[l];"
             f"[1:v:0]{retime},scale={resize}{to_rgb},setsar=1[r];"
             f"[l][r]hstack=inputs=2:shortest=1,pad={width}:{height},{colour.tag_filter()}[v]",
             "-map", "[v]", "-fps_mode", "passthrough", *settings.args(width, height, colour), str(tmp)],
            what=f"{out_path} (side-by-side of {input_path} and {enhanced_path})",
        )

