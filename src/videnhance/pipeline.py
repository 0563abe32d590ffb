"""The pipeline's steps as plain functions: each reads files and writes files, so every Snakemake
rule is a thin script around one of these, and each is testable without Snakemake."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from . import __version__
from .colour import HDR_TRANSFERS, bit_depth
from .data import load_npz, sample_indices, save_frames, save_pairs, split_train_val
from .degrade import DegradeChain, crop_to_multiple, eval_degrade
from .io import (
    LOSSLESS,
    EncodeSettings,
    FrameReader,
    FrameWriter,
    VideoError,
    VideoMeta,
    mux,
    probe,
    side_by_side,
)
from .models import ModelFileError, load_model, save_model

log = logging.getLogger(__name__)


def probe_video(source: str | Path, out_meta: str | Path, scale: int, mode: str) -> VideoMeta:
    """Write meta.json; refuse, with a message, what the pipeline cannot process."""
    meta = probe(source)
    min_side = 8 * (scale if mode == "benchmark" else 1)
    if min(meta.width, meta.height) < min_side:
        raise VideoError(f"{source}: frames of {meta.width}x{meta.height} are too small for mode {mode} at "
                         f"×{scale} (need at least {min_side} px a side).")
    if meta.alpha:
        log.warning("%s: has an alpha channel (%s); it is dropped, frames are enhanced as RGB", source, meta.pix_fmt)
    if meta.vfr:
        log.info("%s: variable frame rate; the output keeps the source's frame timestamps", source)
    meta.to_json(out_meta)
    log.info("%s: %dx%d, %d frames at %s fps, %d audio stream(s)", source, meta.width, meta.height, meta.frames,
             meta.fps, len(meta.audio))
    return meta


def input_meta(input_video: str | Path, meta_json: str | Path | None) -> VideoMeta:
    """The input video's metadata: from the `probe` step's meta.json when the input is the user's
    source (no second full decode), else by packet count (files the pipeline wrote itself)."""
    return VideoMeta.from_json(meta_json) if meta_json else probe(input_video, decode_check=False)


def degrade_gt(source: str | Path, out_video: str | Path, scale: int, kind: str, batch_size: int = 16,
               meta_json: str | Path | None = None) -> None:
    """Benchmark mode: make the low-resolution input video from the ground truth (lossless FFV1).

    The ground truth is trimmed (bottom/right) to a multiple of `scale`; evaluate trims the same way.
    """
    meta = VideoMeta.from_json(meta_json) if meta_json else probe(source)
    w, h = meta.width - meta.width % scale, meta.height - meta.height % scale
    with FrameWriter(out_video, w // scale, h // scale, meta.fps, LOSSLESS) as writer:
        for batch in FrameReader(source, meta, batch_size=batch_size):
            writer.write(eval_degrade(crop_to_multiple(batch, scale), scale, kind))


def extract(input_video: str | Path, out_frames: str | Path, count: int, val_fraction: float,
            meta_json: str | Path | None = None) -> None:
    """Sample `count` frames evenly (not every frame) and mark whole stretches for validation."""
    meta = input_meta(input_video, meta_json)
    indices = sample_indices(meta.frames, count)
    frames = FrameReader(input_video, meta).read_selected(indices)
    train_idx, val_idx = split_train_val(indices, val_fraction)
    is_val = np.isin(indices, val_idx)
    save_frames(out_frames, frames, indices, is_val=is_val)
    log.info("sampled %d of %d frames (%d for validation)", len(indices), meta.frames, int(is_val.sum()))


def degrade(frames_path: str | Path, out_pairs: str | Path, scale: int, degrade_cfg: dict) -> None:
    """Training pairs: degraded(frame) → frame, seeded; validation frames get one copy."""
    data = load_npz(frames_path)
    chain = DegradeChain.from_config(degrade_cfg)
    rng = np.random.default_rng(degrade_cfg["seed"])
    hr_all = crop_to_multiple(data["frames"], scale)
    lrs, hrs, is_val, indices = [], [], [], []
    for frame, val, index in zip(hr_all, data["is_val"], data["indices"], strict=True):
        for _ in range(1 if val else degrade_cfg["copies"]):
            lrs.append(chain.apply(frame, scale, rng))
            hrs.append(frame)
            is_val.append(val)
            indices.append(index)
    save_pairs(out_pairs, np.stack(lrs), np.stack(hrs), np.array(is_val), np.array(indices))


def pretrain_load(out_model: str | Path, scale: int, model_cfg: dict, checkpoint: str | None,
                  pretrained: str | None) -> None:
    """The base model of this run: the user's checkpoint if configured, else `pretrain`'s output.
    Checks arch and scale and rewrites it in our format (weights only, never pickled code)."""
    from .train import model_kwargs

    source = checkpoint or pretrained
    if not source:
        raise ModelFileError("no base model: set `checkpoint` or let `pretrain` make one.")
    model, header = load_model(source, arch=model_cfg["arch"], scale=scale, kwargs=model_kwargs(model_cfg))
    provenance = {"stage": "pretrain_load", "source": str(source), "videnhance": __version__,
                  "source_provenance": header.get("provenance")}
    save_model(model, out_model, header["arch"], scale, header["kwargs"], provenance)


def skip_fine_tune(base_model: str | Path, out_model: str | Path, out_log: str | Path, out_verdict: str | Path) -> None:
    """fine_tune.enabled = false: the base model is the video's model."""
    from .train import keep_base

    keep_base(base_model, out_model, out_log, out_verdict, "fine-tuning disabled in the config")


def infer(model_path: str | Path, input_video: str | Path, out_video: str | Path, mode: str,
          encode_cfg: dict, infer_cfg: dict, device: str, meta_json: str | Path | None = None) -> dict:
    """Enhance every frame. Benchmark mode encodes losslessly so scores reflect the model, not
    the encoder; `reassemble` encodes the deliverable with the configured codec."""
    from .infer import enhance_video

    model, header = load_model(model_path)
    meta = input_meta(input_video, meta_json) if mode == "benchmark" or meta_json else probe(input_video)
    settings = LOSSLESS if mode == "benchmark" else encode_settings(encode_cfg, keep_order=meta.vfr)
    if mode == "enhance":
        warn_depth_and_hdr(input_video, meta, settings)
    stats = enhance_video(model, input_video, out_video, header["scale"], settings, device=device,
                          batch_size=infer_cfg["batch_size"], tile=infer_cfg["tile"], overlap=infer_cfg["tile_overlap"],
                          meta=meta, compile=infer_cfg.get("compile", False), transport=infer_cfg.get("transport", "auto"))
    log.info("infer: %s", stats)
    return stats


def warn_depth_and_hdr(source: str | Path, meta: VideoMeta, settings: EncodeSettings) -> None:
    """Say when the output would hold fewer bits than the source, and that HDR stays in its own
    PQ/HLG encoding (the model sees those code values as they are; the output is tagged the same)."""
    bits, out_bits = bit_depth(meta.pix_fmt), bit_depth(settings.pix_fmt)
    if bits > out_bits and settings.codec != "ffv1":
        log.warning("%s: the source has %d bits per sample (%s) and the output %d (%s); set encode.pix_fmt: "
                    "yuv420p10le to keep 10 bits (with infer.transport yuv420p, or auto on a GPU, they reach the "
                    "model too)", source, bits, meta.pix_fmt, out_bits, settings.pix_fmt)
    hdr = HDR_TRANSFERS.get(meta.colour.transfer)
    if hdr:
        log.warning("%s: HDR (%s, %s primaries): frames are enhanced in their %s encoding and the output is tagged "
                    "the same; the base model was trained on SDR images, so check the result", source, hdr,
                    meta.colour.primaries, hdr)


def encode_settings(encode_cfg: dict, keep_order: bool = False) -> EncodeSettings:
    """`keep_order`: no B-frames, so `reassemble` can give each frame its source timestamp (VFR)."""
    return EncodeSettings(codec=encode_cfg["codec"], crf=encode_cfg["crf"], preset=encode_cfg["preset"],
                          pix_fmt=encode_cfg["pix_fmt"], bframes=not keep_order)


def reassemble(enhanced: str | Path, source: str | Path, input_video: str | Path, out_video: str | Path,
               out_side_by_side: str | Path, mode: str, encode_cfg: dict, source_meta: str | Path | None = None) -> None:
    """The deliverable (enhanced stream + the source's audio/subtitles, copied) and a comparison clip."""
    settings = encode_settings(encode_cfg)
    reencode = settings if mode == "benchmark" else None  # benchmark infer wrote lossless FFV1
    source_meta = VideoMeta.from_json(source_meta) if source_meta else probe(source)
    mux(enhanced, source, out_video, reencode, source_meta)
    out = probe(out_video)
    if out.frames != source_meta.frames:
        Path(out_video).unlink()
        raise VideoError(f"{out_video}: has {out.frames} frames, the source {source} has {source_meta.frames}.")
    side_by_side(input_video, enhanced, out_side_by_side, colour=source_meta.colour)
