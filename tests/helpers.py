"""Test helpers (imported by the tests; pytest's fixtures are in conftest.py): tiny real clips made
with the real ffmpeg, photos, and paths to ../shared/data."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from videnhance.demo import render_clip
from videnhance.io import EncodeSettings, FrameReader, FrameWriter, run_ffmpeg

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def ffmpeg(*args: str) -> None:
    run_ffmpeg(list(args), what="test input")


def lavfi_clip(path: Path, size="64x48", seconds=1, rate=25, *extra: str) -> Path:
    """testsrc2 (colour bars, gradients, a moving pattern), encoded with the ffmpeg args `extra`."""
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}", *extra, str(path))
    return path


def read_frames(path: Path, pix_fmt: str = "rgb24") -> np.ndarray:
    """Every frame of a video, in one array."""
    return np.concatenate(list(FrameReader(path, pix_fmt=pix_fmt)))


def photo(name: str = "coffee") -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def make_clip(path: Path, size=(64, 48), frames=16, fps=Fraction(25), audio=False, photo_name="coffee",
              settings: EncodeSettings | None = None) -> Path:
    """A small push-in clip rendered from a scikit-image photo, optionally with a sine audio track."""
    pixels = render_clip(photo(photo_name), size, frames, (0.5, 0.4))
    target = path if not audio else path.with_name(f"silent_{path.name}")
    with FrameWriter(target, size[0], size[1], fps, settings or EncodeSettings(crf=10)) as writer:
        writer.write(pixels)
    if audio:
        seconds = float(frames / fps)
        run_ffmpeg(["-i", str(target), "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
                    "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(path)], what=str(path))
        target.unlink()
    return path


def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/data is optional outside CI)")
    return path
