"""Shared fixtures: tiny real clips made with the real ffmpeg (the helpers are in helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import make_clip


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "clip.mp4")


@pytest.fixture
def clip_with_audio(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "clip_audio.mp4", audio=True)
