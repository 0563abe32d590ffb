"""Long videos in parts: `infer` as several jobs, each one stretch of frames (`infer.segment_seconds`).

A two-hour film is hours of one GPU, longer than many clusters' job limit, and a job killed at
95 % would start again from frame 0. So a video longer than `infer.segment_above_seconds` is cut
by frame index into parts of about `infer.segment_seconds` each: every part is its own `gpu=1`
job (many GPUs work on one film at once, a killed job redoes only its part), decodes the
`radius` frames of context a multi-frame model needs on each side, and encodes only its own
frames. `io.join_videos` joins the parts without re-encoding; `reassemble` then gives every frame
the source's timestamp (variable frame rate) and muxes the audio once, as for a single part. In
benchmark mode, where every frame is scored against the ground truth, `evaluate` runs in the same
parts and `evaluate.join_scores` joins their score files.

The number of parts is planned when the workflow is built, before any step has run: from the
frame count the container states (or its duration times the frame rate), and for a video that
this says is long enough to split, from its packets, counted. Each part's frames are fixed by
index, and the last part runs to whatever the last frame really is.
"""

from __future__ import annotations

from pathlib import Path


def estimate_frames(path: str | Path, count_above_seconds: float | None = None) -> tuple[int, float]:
    """(frames, frames per second) of a video's first video stream, from its container's header
    (no decoding): the stated frame count, else the duration times the average rate. Where that
    says the video is longer than `count_above_seconds`, the video stream's packets are counted
    instead (a demuxing pass, no decoding): Matroska states no count, and its duration may be the
    audio's. (0, 0.0) when the file cannot be read (the probe step reports that properly)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames = int(stream.frames or 0)
            if not frames:
                seconds = (float(stream.duration * stream.time_base) if stream.duration
                           else (container.duration or 0) / 1e6)
                frames = int(seconds * fps)
            if count_above_seconds is not None and frames > count_above_seconds * fps:
                frames = sum(1 for packet in container.demux(stream) if packet.size)
            return frames, fps
    except (OSError, IndexError, ValueError, av.error.FFmpegError):
        return 0, 0.0


def part_span(part: tuple[int, int | None], frames: int, path: str | Path) -> tuple[int, int]:
    """A planned part (start, end or None for the last frame) as frames [start, end) of a video of
    `frames` frames, checked: the plan came from the container's header, the count from `probe`."""
    from .errors import VideoError

    start, end = part[0], frames if part[1] is None else part[1]
    if not 0 <= start < end <= frames:
        raise VideoError(f"{path}: part {start}–{end} is not within its {frames} frames (the container's header "
                         "misstated its length); set infer.segment_seconds: 0 to run it whole")
    return start, end


def plan(frames: int, fps: float, seconds: float, above_seconds: float) -> list[tuple[int, int | None]]:
    """Frame ranges [start, end) of the parts; end None: to the video's last frame. One part
    (the whole video) when splitting is off (`seconds` 0) or the video is not longer than
    `above_seconds`; else parts of round(seconds·fps) frames, the last one taking the rest."""
    length = round(seconds * fps)
    if seconds <= 0 or length < 1 or frames <= above_seconds * fps or frames < 2 * length:
        return [(0, None)]
    count = frames // length
    return [(k * length, (k + 1) * length if k < count - 1 else None) for k in range(count)]

