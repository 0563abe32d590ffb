"""One family of user-facing errors: what steps, the CLI and sr-images catch and print as one line."""

import subprocess
import sys

import pytest
import torch

from videnhance import errors
from videnhance.config import ConfigError
from videnhance.data import load_image_sources
from videnhance.errors import VidenhanceError
from videnhance.images import ImageSetError
from videnhance.infer import pick_device
from videnhance.io import VideoError
from videnhance.models import ModelFileError

from .helpers import REPO


def test_every_user_error_is_one_family():
    for cls in (ConfigError, VideoError, ModelFileError, ImageSetError):
        assert issubclass(cls, VidenhanceError) and cls.__module__ == errors.__name__


def test_a_bad_pretrain_images_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="pretrain.images: folder .*missing not found"):
        load_image_sources([str(tmp_path / "missing")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no images"):
        load_image_sources([str(tmp_path / "empty")])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_without_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="device: cuda"):
        pick_device("cuda")


def test_a_step_ends_a_user_error_with_one_line(tmp_path):
    """The `step` wrapper every workflow script uses: the message, the log's path, exit 1, no traceback."""
    script = ("from videnhance.step import step\nfrom videnhance.data import load_image_sources\n"
              f"with step({str(tmp_path / 'x.log')!r}):\n    load_image_sources(['/nonexistent/photos'])\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "videnhance error: pretrain.images: folder /nonexistent/photos not found" in proc.stderr
