"""Typed settings: the validated configuration as frozen dataclasses, one per config section.

The schema (`schemas/config.schema.yaml`) is the only home of defaults and allowed values: these
classes declare names and types and nothing else, and are only ever built from a configuration
that `config.validate_config` has checked and completed. A test holds each class's fields equal
to its schema section's keys.

    settings = Settings.from_dict(validate_config(raw))   # the whole configuration
    settings.fine_tune.lr, settings.degrade.blur_sigma     # typed, read-only
    FineTune.defaults(steps=50)                            # one section: the schema's defaults + overrides

`Settings` also carries what a step knows about its video (`mode`, `video`, `scales`). A
workflow step gets only the sections its rule lists in `params` (so that a change to them reruns
it) plus the run-time `device` and `infer`; the sections it was not given are None.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from .config import validate_config, video_settings
from .defaults import DEFAULT_ARCH, base_for

S = TypeVar("S", bound="Section")


@dataclass(frozen=True)
class Section:
    """A config section: built from its validated dict; lists become tuples, and the keys in
    `NESTED` sections of their own."""

    NAME: ClassVar[str]
    PARENT: ClassVar[str | None] = None  # the section this one is a key of (pretrain.motion)
    NESTED: ClassVar[dict[str, type[Section]]] = {}

    @classmethod
    def from_dict(cls: type[S], data: dict) -> S:
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            raise ValueError(f"{cls.NAME}: keys {sorted(set(data) ^ names)} differ from the schema's "
                             "(build settings from config.validate_config's output)")
        return cls(**{k: cls.NESTED[k].from_dict(v) if k in cls.NESTED else _frozen(v) for k, v in data.items()})

    @classmethod
    def defaults(cls: type[S], **overrides: Any) -> S:
        """This section with the schema's defaults and `overrides`, validated."""
        if cls.PARENT:
            return cls.from_dict(validate_config({cls.PARENT: {cls.NAME: overrides}})[cls.PARENT][cls.NAME])
        return cls.from_dict(validate_config({cls.NAME: overrides})[cls.NAME])

    def replace(self: S, **changes: Any) -> S:
        """A copy with `changes`, validated against the schema like a config file."""
        return type(self).defaults(**{**self.as_dict(), **changes})

    def as_dict(self) -> dict:
        """The plain dict the schema describes (tuples as lists): for JSON, hashes and rule params."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return copy.deepcopy(value)  # the loss weights: a small mapping, copied so the config stays untouched
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Section):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Videos(Section):
    NAME = "videos"
    sheet: str | None
    glob: str | None
    glob_mode: str


@dataclass(frozen=True)
class Model(Section):
    """The architecture (`arch`, a registered name) and the keys its builder may take."""

    NAME = "model"
    arch: str
    channels: int
    blocks: int
    encoder: str
    radius: int
    align: str
    fuse_channels: int
    fuse_blocks: int
    noise: int


@dataclass(frozen=True)
class Degrade(Section):
    NAME = "degrade"
    downscale: tuple[str, ...]
    blur_sigma: tuple[float, float]
    noise_sigma: tuple[float, float]
    jpeg_quality: tuple[int, int]
    jpeg_prob: float
    codec_prob: float
    codec: tuple[str, ...]
    codec_crf: tuple[int, int]
    copies: int
    seed: int


@dataclass(frozen=True)
class Motion(Section):
    """How far a neighbour one frame away may move in the synthetic clips the temporal model is
    pretrained on (`pretrain.motion`): `shift` in low-resolution pixels, `zoom` as a fraction,
    `rotate` in degrees, `warp` (smooth local displacement) in low-resolution pixels;
    `occlusion` is the chance a clip gets a sliding patch."""

    NAME = "motion"
    PARENT = "pretrain"
    shift: float
    zoom: float
    rotate: float
    warp: float
    occlusion: float


@dataclass(frozen=True)
class Pretrain(Section):
    NAME = "pretrain"
    NESTED = {"motion": Motion}
    images: tuple[str, ...]
    max_images: int
    copies: int
    steps: int
    steps_per_epoch: int
    batch_size: int
    patch: int
    lr: float
    loss: dict[str, float | str | None]
    max_seconds: float | None
    seed: int
    temporal_steps: int
    temporal_lr: float
    motion: Motion


@dataclass(frozen=True)
class Extract(Section):
    NAME = "extract"
    frames: int
    val_fraction: float


@dataclass(frozen=True)
class FineTune(Section):
    NAME = "fine_tune"
    enabled: bool
    steps: int
    steps_per_epoch: int
    batch_size: int
    patch: int
    layers: str  # all | tail
    lr: float | str  # a rate, or "auto" (weights.fine_tune_lr)
    loss: dict[str, float | str | None]
    pairs: str
    shrink: tuple[float, float]
    targets_per_frame: int
    rounds: int
    lr_backoff: float
    patience: int
    guard: bool
    guard_signal: str
    guard_targets_per_frame: int
    guard_frame_margin_db: float | None
    min_gain_db: float
    guard_z: float
    max_seconds: float | None
    seed: int


@dataclass(frozen=True)
class Benchmark(Section):
    NAME = "benchmark"
    degradation: str
    crf: int


@dataclass(frozen=True)
class Infer(Section):
    NAME = "infer"
    batch_size: int | str
    compile: bool
    tile: int
    transport: str
    tile_overlap: int
    segment_seconds: float
    segment_above_seconds: float


@dataclass(frozen=True)
class Encode(Section):
    NAME = "encode"
    codec: str
    crf: int
    preset: str
    pix_fmt: str
    container: str


@dataclass(frozen=True)
class Evaluate(Section):
    NAME = "evaluate"
    crop_border: int


SECTIONS: dict[str, type[Section]] = {cls.NAME: cls for cls in (Videos, Model, Degrade, Pretrain, Extract, FineTune,
                                                                 Benchmark, Infer, Encode, Evaluate)}
PLAIN_KEYS = ("results", "scale", "device", "memory_mb", "checkpoint")  # top-level config keys that are not sections
VIDEO_KEYS = ("mode", "video", "scales")  # what a step knows about its video, not config keys


@dataclass(frozen=True)
class Settings:
    """The configuration, or the part of it one step was given (None: not given to it).

    `mode` (enhance | benchmark), `video` (its id) and `scales` (video id → scale, for the
    report) describe the video(s) a step works on; the rest are the config's keys, with the
    video's own overrides from the sheet already applied."""

    mode: str | None = None
    video: str | None = None
    scales: dict[str, int] | None = None
    results: str | None = None
    scale: int | None = None
    device: str | None = None
    memory_mb: int | None = None
    checkpoint: str | dict | None = None
    videos: Videos | None = None
    model: Model | None = None
    degrade: Degrade | None = None
    pretrain: Pretrain | None = None
    extract: Extract | None = None
    fine_tune: FineTune | None = None
    benchmark: Benchmark | None = None
    infer: Infer | None = None
    encode: Encode | None = None
    evaluate: Evaluate | None = None

    @classmethod
    def from_dict(cls, data: dict) -> Settings:
        """From validated settings (`validate_config`, `video_settings`, a rule's params): every
        key must be a section, a plain config key or a video key."""
        unknown = set(data) - set(SECTIONS) - set(PLAIN_KEYS) - set(VIDEO_KEYS)
        if unknown:
            raise ValueError(f"not settings: {sorted(unknown)}")
        return cls(**{k: SECTIONS[k].from_dict(v) if k in SECTIONS else copy.deepcopy(v) for k, v in data.items()})

    def base_source(self) -> str | None:
        """The base model's source at this scale (`checkpoint` resolved, `auto` included): a file,
        `package:NAME`, or None (train one with `pretrain`)."""
        return base_for(self.checkpoint, self.scale, self.model.arch if self.model else DEFAULT_ARCH)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """The keys that were given, as plain validated dicts."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None}


def full_video_settings(cfg: dict, row: dict) -> Settings:
    """Everything any step may read for one video, as `pipeline.run_video` hands it to each step:
    the config, the row's overrides (`video_settings`), the video's id and its scale for the report."""
    per_video = video_settings(cfg, row)
    return Settings.from_dict({**cfg, **per_video, "video": row["id"], "scales": {row["id"]: per_video["scale"]}})
