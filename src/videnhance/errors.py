"""The one family of errors a user sees: each names the file or key at fault and what to do.

Steps (`step.step`), the command line (`cli.main`) and `sr-images` catch `VidenhanceError` and print
its message as one line; anything else is a bug and keeps its traceback. The subclasses also derive
from the built-in type they used to be, so `except ValueError` around a config load still works.
"""

from __future__ import annotations


class VidenhanceError(Exception):
    """A problem with the user's input or settings, explained in the message."""


class ConfigError(VidenhanceError, ValueError):
    """The configuration or the video sheet is wrong; the message names the key or row."""


class VideoError(VidenhanceError, RuntimeError):
    """A video could not be read or written; the message names the file and what to do."""


class ModelFileError(VidenhanceError, ValueError):
    """A checkpoint is missing, not ours, or does not fit the configuration."""


class ImageSetError(VidenhanceError, ValueError):
    """A test-set folder is missing, empty, or its HR and LR images do not fit together."""
