"""Demo clips made from photos that ship inside scikit-image: a camera pushing in on a photo and
pulling back out, rendered from the full-resolution photo so the clip itself is ground truth.

The crop window never gets smaller than the frame (at the closest zoom one frame pixel is one
photo pixel), so no frame is ever upsampled. Resampling is Pillow's antialiased Lanczos.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from .files import atomic_output
from .io import EncodeSettings, FrameWriter, run_ffmpeg


@dataclass(frozen=True)
class DemoClip:
    name: str
    photo: str  # a scikit-image data function
    size: tuple[int, int]  # (width, height) of the clip
    focus: tuple[float, float]  # where the camera pushes in, as fractions of the photo (x, y)
    audio: bool


DEMO_CLIPS = (
    DemoClip("coffee_pushin", "coffee", (300, 200), (0.45, 0.42), audio=True),
    DemoClip("astronaut_pushin", "astronaut", (256, 256), (0.52, 0.30), audio=False),
    DemoClip("rocket_enhance", "rocket", (320, 212), (0.5, 0.45), audio=True),
)


def camera_path(n_frames: int, photo_wh: tuple[int, int], frame_wh: tuple[int, int],
                focus: tuple[float, float]) -> list[tuple[float, float, float, float]]:
    """Crop boxes (x0, y0, x1, y1) in photo pixels: from the widest view that fits the photo to a
    1:1 view centred on `focus` (first half), then back out (second half)."""
    pw, ph = photo_wh
    fw, fh = frame_wh
    widest = min(pw / fw, ph / fh)  # photo pixels per frame pixel at the widest view
    if widest < 1:
        raise ValueError(f"photo {pw}x{ph} is smaller than the frame {fw}x{fh}")
    boxes = []
    for i in range(n_frames):
        t = i / max(n_frames - 1, 1)
        closeness = 0.5 - 0.5 * math.cos(2 * math.pi * t)  # 0 → 1 → 0, smooth at the ends
        zoom = widest ** (1 - closeness)  # geometric: steady perceived speed; 1 = one photo px per frame px
        w, h = fw * zoom, fh * zoom
        cx = pw / 2 + (focus[0] * pw - pw / 2) * closeness
        cy = ph / 2 + (focus[1] * ph - ph / 2) * closeness
        x0 = min(max(cx - w / 2, 0.0), pw - w)
        y0 = min(max(cy - h / 2, 0.0), ph - h)
        boxes.append((x0, y0, x0 + w, y0 + h))
    return boxes


def render_clip(photo: np.ndarray, frame_wh: tuple[int, int], n_frames: int, focus: tuple[float, float]) -> np.ndarray:
    image = Image.fromarray(photo)
    frames = [np.asarray(image.resize(frame_wh, Image.Resampling.LANCZOS, box=box))
              for box in camera_path(n_frames, image.size, frame_wh, focus)]
    return np.stack(frames)


def make_demo_clips(out_dir: str | Path, seconds: float = 4.0, fps: int = 25, force: bool = False) -> list[Path]:
    """Write the demo clips (H.264 at crf 12, AAC audio where asked) into `out_dir`, if absent."""
    import skimage.data

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for clip in DEMO_CLIPS:
        path = out_dir / f"{clip.name}.mp4"
        paths.append(path)
        if path.exists() and not force:
            continue
        frames = render_clip(getattr(skimage.data, clip.photo)(), clip.size, int(seconds * fps), clip.focus)
        silent = out_dir / f".{clip.name}.video.mp4"
        settings = EncodeSettings(crf=12, preset="medium")
        with FrameWriter(silent, clip.size[0], clip.size[1], Fraction(fps), settings) as w:
            w.write(frames)
        with atomic_output(path) as tmp:
            if clip.audio:  # a two-tone chime, so audio sync and length are checkable by ear and by probe
                run_ffmpeg(["-i", str(silent), "-f", "lavfi", "-i",
                            f"sine=frequency=440:sample_rate=48000:duration={seconds}",
                            "-f", "lavfi", "-i", f"sine=frequency=660:sample_rate=48000:duration={seconds}",
                            "-filter_complex", "[1:a][2:a]amix=inputs=2,volume=0.5[a]",
                            "-map", "0:v", "-map", "[a]", "-c:v", "copy", "-c:a", "aac", "-b:a", "96k",
                            "-t", str(seconds), str(tmp)], what=str(path))
            else:
                silent.replace(tmp)
        silent.unlink(missing_ok=True)
    return paths
