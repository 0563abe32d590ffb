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


def tiny_model(scale: int = 2, channels: int = 8, blocks: int = 1, tail_std: float = 0.0, seed: int | None = None,
               path: Path | None = None):
    """A small srresnet for tests (eval mode): its tail at zero (exactly bicubic) unless `tail_std`
    gives it some detail, seeded when `seed` is given; saved as a model file at `path` if given."""
    import torch

    from videnhance.models import SRResNet, save_model

    if seed is not None:
        torch.manual_seed(seed)
    model = SRResNet(scale, channels, blocks)
    if tail_std:
        torch.nn.init.normal_(model.tail.weight, std=tail_std)
    if path is not None:
        save_model(model, path, "srresnet", scale, {"channels": channels, "blocks": blocks})
    return model.eval()


def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/data is optional outside CI)")
    return path


def tiny_settings(**fine_tune):
    """Settings of a tiny model and a few steps of pretraining and fine-tuning (`fine_tune` overrides)."""
    from videnhance.config import validate_config
    from videnhance.settings import Settings

    cfg = validate_config({
        "model": {"channels": 8, "blocks": 1},
        "pretrain": {"steps": 6, "steps_per_epoch": 3, "batch_size": 4, "patch": 16, "copies": 1},
        "fine_tune": {"steps": 6, "steps_per_epoch": 3, "batch_size": 4, "patch": 16, **fine_tune},
    })
    return Settings.from_dict(cfg)


def video_pairs(tmp_path: Path, n: int = 8) -> None:
    """A pairs file of `n` coffee crops (the last two held out) and a tiny base beside it, as the
    `degrade` and `base_model` steps would leave them in a video's folder."""
    from videnhance.degrade import DegradeChain, make_pairs
    from videnhance.samples import save_pairs

    frames = [photo("coffee")[i * 10 : i * 10 + 64, i * 12 : i * 12 + 96] for i in range(n)]
    lrs, hrs = make_pairs(frames, 2, DegradeChain.defaults(), seed=0)
    is_val = np.zeros(n, bool)
    is_val[-2:] = True
    save_pairs(tmp_path / "pairs.npz", np.stack(lrs), np.stack(hrs), is_val, np.arange(n))
    tiny_model(path=tmp_path / "base.pt")


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")  # Debian's packages


def chromium(user_data_dir: str | Path, width: int = 1400, height: int = 1000):
    """Debian's chromium, headless, driven by Selenium through chromedriver: nothing downloaded, a
    fresh profile in `user_data_dir`, the console kept, and a viewport of exactly width × height."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                "--disable-component-update", "--disable-sync", f"--window-size={width},{height}",
                f"--user-data-dir={user_data_dir}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    # --window-size counts the window, not what the page gets
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    return driver
