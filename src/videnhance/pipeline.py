"""The pipeline: one function per Snakemake rule, and the whole chain for one video.

Each step function is named after its rule and takes keyword-only arguments named like the rule's
named inputs and outputs, plus `settings`: the config sections the rule lists in its `params`
(so a change to anything a step reads reruns it) and the run-time keys `device` and `infer`
(`config.runtime_settings`, which rerun nothing). A workflow script is one call:
`pipeline.fine_tune(**snakemake.input, **snakemake.output, settings=settings)`.

`run_video` runs the same steps for one video in rule order, for `videnhance enhance` and the
benchmarks; it is the only place outside the Snakemake rules' inputs and outputs that knows
the order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .archs import arch_kwargs, frames_in
from .colour import HDR_TRANSFERS, bit_depth
from .errors import ModelFileError, VideoError
from .io import LOSSLESS, EncodeSettings, FrameReader, FrameWriter, VideoMeta, has_alpha, join_videos, mux
from .io import probe as probe_file
from .io import side_by_side as make_side_by_side
from .layout import VideoFiles
from .memory import budget, decoder_bytes, encoder_bytes, lean_encoder
from .samples import load_npz, sample_indices, save_frames, save_pairs, split_train_val
from .segments import part_span
from .settings import Encode, Settings
from .verdict import Verdict

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------- the steps
def probe(*, source: str | Path, meta: str | Path, settings: Settings) -> VideoMeta:
    """Write meta.json; refuse, with a message, what the pipeline cannot process."""
    scale, mode = settings.scale, settings.mode
    info = probe_file(source)
    min_side = 8 * (scale if mode == "benchmark" else 1)
    if min(info.width, info.height) < min_side:
        raise VideoError(f"{source}: frames of {info.width}x{info.height} are too small for mode {mode} at "
                         f"×{scale} (need at least {min_side} px a side).")
    if info.alpha:
        kind = info.pix_fmt
        if not has_alpha(kind):  # VP8/VP9 in WebM: the container says so (`io.probe`)
            kind = (f"{info.codec} alpha_mode 1: the alpha plane is kept beside the picture, where FFmpeg's own "
                    "decoder does not read it")
        log.warning("%s: has an alpha channel (%s); it is dropped, frames are enhanced as RGB", source, kind)
    if info.vfr:
        log.info("%s: variable frame rate; the output keeps the source's frame timestamps", source)
    info.to_json(meta)
    log.info("%s: %dx%d, %d frames at %s fps, %d audio stream(s)", source, info.width, info.height, info.frames,
             info.fps, len(info.audio))
    return info


def _input_meta(input_video: str | Path, meta: str | Path | None) -> VideoMeta:
    """The input video's metadata: from the `probe` step's meta.json when the input is the user's
    source (no second full decode), else by packet count (files the pipeline wrote itself)."""
    return VideoMeta.from_json(meta) if meta else probe_file(input_video, decode_check=False)


DEGRADE_BYTES_PER_PX = 32  # eval_degrade's float work (21 B a pixel, measured at 8K), the batch and the reader's queue


def degrade_gt(*, ground_truth: str | Path, input_video: str | Path, settings: Settings, meta: str | Path | None = None,
               batch_size: int = 16) -> None:
    """Benchmark mode: make the low-resolution input video from the ground truth (lossless FFV1).

    The ground truth is trimmed (bottom/right) to a multiple of the scale; evaluate trims the same way.
    With `benchmark.crf`, the input is x264 video at that CRF instead: compressed, as users' videos are.
    """
    from .degrade import crop_to_multiple, eval_degrade

    scale, kind, crf = settings.scale, settings.benchmark.degradation, settings.benchmark.crf
    info = VideoMeta.from_json(meta) if meta else probe_file(ground_truth)
    w, h = info.width - info.width % scale, info.height - info.height % scale
    encode = EncodeSettings(codec="libx264", crf=crf, preset="medium") if crf else LOSSLESS
    encode = lean_encoder(encode, w // scale, h // scale, str(input_video))
    # frames per batch from the budget: eval_degrade's float work, the batch and the reader's queue
    pipes = decoder_bytes(info.width, info.height) + encoder_bytes(encode, w // scale, h // scale)
    per_frame = DEGRADE_BYTES_PER_PX * info.width * info.height
    batch_size = int(max(1, min(batch_size, budget("cpu", beside=pipes) // per_frame)))
    with FrameWriter(input_video, w // scale, h // scale, info.fps, encode) as writer:
        for batch in FrameReader(ground_truth, info, batch_size=batch_size):
            writer.write(eval_degrade(crop_to_multiple(batch, scale), scale, kind))


def extract(*, input_video: str | Path, frames: str | Path, settings: Settings, meta: str | Path | None = None) -> None:
    """Sample `extract.frames` frames evenly (not every frame) and mark whole stretches for
    validation. For a multi-frame model each sample is the window of frames around it (T, H, W, 3),
    the video's first and last frames repeated beyond its ends."""
    count, val_fraction = settings.extract.frames, settings.extract.val_fraction
    radius = frames_in(settings.model) // 2
    info = _input_meta(input_video, meta)
    indices = sample_indices(info.frames, count)
    if radius:
        spans = np.clip(indices[:, None] + np.arange(-radius, radius + 1), 0, info.frames - 1)
        wanted = np.unique(spans)
        sampled = FrameReader(input_video, info).read_selected(wanted)[np.searchsorted(wanted, spans)]
    else:
        sampled = FrameReader(input_video, info).read_selected(indices)
    train_idx, val_idx = split_train_val(indices, val_fraction)
    is_val = np.isin(indices, val_idx)
    save_frames(frames, sampled, indices, is_val=is_val)
    log.info("sampled %d of %d frames (%d for validation)", len(indices), info.frames, int(is_val.sum()))


def degrade(*, frames: str | Path, pairs: str | Path, settings: Settings) -> None:
    """Training pairs: degraded(frame) → frame, seeded; validation frames get one copy. For a
    multi-frame model: degraded(window) → its centre frame, the whole window degraded alike, and
    the full-resolution windows kept (`hr_window`) for the near-scale pairs."""
    from .degrade import DegradeChain, centre, crop_to_multiple

    scale, degrade_cfg = settings.scale, settings.degrade
    data = load_npz(frames)
    chain = DegradeChain.from_settings(degrade_cfg)
    rng = np.random.default_rng(degrade_cfg.seed)
    hr_all = crop_to_multiple(data["frames"], scale)
    lrs, hrs, is_val, indices, windows = [], [], [], [], []
    for frame, val, index in zip(hr_all, data["is_val"], data["indices"], strict=True):
        for _ in range(1 if val else degrade_cfg.copies):
            lrs.append(chain.apply_window(frame, scale, rng))
            hrs.append(centre(frame))
            windows.append(frame)
            is_val.append(val)
            indices.append(index)
    extra = {"hr_window": np.stack(windows)} if hr_all.ndim == 5 else {}
    save_pairs(pairs, np.stack(lrs), np.stack(hrs), np.array(is_val), np.array(indices), **extra)


def pretrain(*, model: str | Path, history: str | Path, settings: Settings) -> dict:
    """Train the base model on the configured photos (`pretrain.images`) with the degrade chain."""
    from .data import load_image_sources
    from .training.pretrain import pretrain as train_base

    cfg = settings.pretrain
    images = load_image_sources(cfg.images, cfg.max_images)
    return train_base(images, model, history, settings.scale, settings.model, cfg, settings.degrade,
                      settings.device)


def base_model(*, model: str | Path, settings: Settings, checkpoint: str | Path | None = None) -> None:
    """The base model of this run: the user's `checkpoint` if configured, else `pretrain`'s output
    (the rule's input). Checks arch and scale and rewrites it in our format (weights only, never
    pickled code)."""
    from .bases import load_base

    source = settings.base_source() or checkpoint
    if not source:
        raise ModelFileError("no base model: set `checkpoint` or let `pretrain` make one.")
    base = load_base(source, arch=settings.model.arch, scale=settings.scale, kwargs=arch_kwargs(settings.model),
                     noise=settings.model.noise)
    if base.frames_in < frames_in(settings.model):  # a community or packaged network is single-frame
        raise ModelFileError(f"checkpoint: {source} is a single-frame network; model.arch: "
                             f"{settings.model.arch} needs a base of its own (remove `checkpoint`).")
    base.save(model, {"stage": "base_model", "source": str(source), "videnhance": __version__,
                      "source_provenance": base.provenance})


def fine_tune(*, pairs: str | Path, base: str | Path, model: str | Path, history: str | Path, verdict: str | Path,
              settings: Settings, on_round: Callable | None = None) -> Verdict:
    """Fine-tune the base model on the video's pairs behind the guard (`training.fine_tune`), or,
    with `fine_tune.enabled: false`, deliver the base model as the video's model. `on_round`: shown
    each round as it finishes (`training.fine_tune.RoundDone`)."""
    from .training.fine_tune import fine_tune as train_on_video
    from .training.fine_tune import keep_base

    cfg = settings.fine_tune
    if not cfg.enabled:
        return keep_base(base, model, history, verdict, "fine-tuning disabled in the config")
    return train_on_video(pairs, base, model, history, verdict, cfg, settings.device,
                          degrade_cfg=settings.degrade, on_round=on_round)


def infer(*, model: str | Path, input_video: str | Path, output: str | Path, settings: Settings,
          meta: str | Path | None = None, single_frame: bool = False,
          part: tuple[int, int | None] | None = None) -> dict:
    """Enhance every frame. Benchmark mode encodes losslessly so scores reflect the model, not
    the encoder; `reassemble` encodes the deliverable with the configured codec. `single_frame`:
    run a multi-frame model's own single-frame network instead (the report's single-frame row).
    `part` (start, end or None for the last frame): only those frames, one part of a long video
    (`segments`); `join_parts` puts the parts together."""
    from .infer import enhance_video
    from .models import load_model

    mode, infer_cfg = settings.mode, settings.infer
    loaded = load_model(model)
    if single_frame:
        loaded = loaded.single_frame()
        if loaded is None:
            raise ValueError(f"{model}: a single-frame model has no single-frame network of its own to run")
    info = _input_meta(input_video, meta) if mode == "benchmark" or meta else probe_file(input_video)
    encode = LOSSLESS if mode == "benchmark" else encode_settings(settings.encode, keep_order=info.vfr)
    if mode == "enhance":
        warn_depth_and_hdr(input_video, info, encode)
    if infer_cfg.tile and loaded.kwargs.get("tiling") in ("discouraged", "internal"):
        log.warning("%s: spandrel advises against tiling a %s model (%s); infer.tile: 0 lets the memory budget "
                    "decide, and it tiles only when a whole frame does not fit", model, loaded.kwargs.get("name"),
                    loaded.kwargs["tiling"])
    span = part_span(part, info.frames, input_video) if part is not None else None
    stats = enhance_video(loaded.module, input_video, output, loaded.scale, encode, device=settings.device,
                          batch_size=infer_cfg.batch_size, tile=infer_cfg.tile, overlap=infer_cfg.tile_overlap,
                          meta=info, compile=infer_cfg.compile, transport=infer_cfg.transport,
                          bf16=loaded.bf16, span=span)
    log.info("infer: %s", stats)
    return stats


def join_parts(*, parts: list[str | Path], output: str | Path, meta: str | Path, settings: Settings) -> int:
    """The parts of a long video's `infer`, joined without re-encoding into one stream with every
    frame of the video (checked against the probe's count)."""
    frames = VideoMeta.from_json(meta).frames
    joined = join_videos(parts, output)
    if joined != frames:
        Path(output).unlink(missing_ok=True)
        raise VideoError(f"{output}: the {len(parts)} parts hold {joined} frames, the video {frames}")
    log.info("joined %d parts: %d frames", len(parts), joined)
    return joined


def warn_depth_and_hdr(source: str | Path, meta: VideoMeta, encode: EncodeSettings) -> None:
    """Say when the output would hold fewer bits than the source, and that HDR stays in its own
    PQ/HLG encoding (the model sees those code values as they are; the output is tagged the same)."""
    bits, out_bits = bit_depth(meta.pix_fmt), bit_depth(encode.pix_fmt)
    if bits > out_bits and encode.codec != "ffv1":
        log.warning("%s: the source has %d bits per sample (%s) and the output %d (%s); set encode.pix_fmt: "
                    "yuv420p10le to keep 10 bits (with infer.transport yuv420p, or auto on a GPU, they reach the "
                    "model too)", source, bits, meta.pix_fmt, out_bits, encode.pix_fmt)
    hdr = HDR_TRANSFERS.get(meta.colour.transfer)
    if hdr:
        log.warning("%s: HDR (%s, %s primaries): frames are enhanced in their %s encoding and the output is tagged "
                    "the same; the base model was trained on SDR images, so check the result", source, hdr,
                    meta.colour.primaries, hdr)


def encode_settings(encode_cfg: Encode, keep_order: bool = False) -> EncodeSettings:
    """`keep_order`: no B-frames, so `reassemble` can give each frame its source timestamp (VFR)."""
    return EncodeSettings(codec=encode_cfg.codec, crf=encode_cfg.crf, preset=encode_cfg.preset,
                          pix_fmt=encode_cfg.pix_fmt, bframes=not keep_order)


def reassemble(*, enhanced: str | Path, source: str | Path, input_video: str | Path, deliverable: str | Path,
               side_by_side: str | Path, settings: Settings, meta: str | Path | None = None) -> None:
    """The deliverable (enhanced stream + the source's audio/subtitles, copied) and a comparison
    clip; refused (and removed) unless it has exactly the source's frame count."""
    encode = encode_settings(settings.encode)
    reencode = encode if settings.mode == "benchmark" else None  # benchmark infer wrote lossless FFV1
    source_meta = VideoMeta.from_json(meta) if meta else probe_file(source)
    mux(enhanced, source, deliverable, reencode, source_meta)
    out = probe_file(deliverable)
    if out.frames != source_meta.frames:
        Path(deliverable).unlink()
        raise VideoError(f"{deliverable}: has {out.frames} frames, the source {source} has {source_meta.frames}.")
    make_side_by_side(input_video, enhanced, side_by_side, colour=source_meta.colour)


def evaluate(*, scores: str | Path, settings: Settings, crops: str | Path | None = None,
             per_frame: str | Path | None = None, ground_truth: str | Path | None = None,
             meta: str | Path | None = None, input_video: str | Path | None = None, milestone: str | Path | None = None,
             enhanced: str | Path | None = None, pairs: str | Path | None = None, base: str | Path | None = None,
             model: str | Path | None = None, single_frame: str | Path | None = None,
             part: tuple[int, int | None] | None = None) -> None:
    """Per-frame scores of bicubic / (single-frame) / milestone / fine-tuned: against the ground
    truth in benchmark mode, on the video's own held-out frames in enhance mode (see `evaluate`).
    `part` (benchmark mode): only those frames of a long video (`join_scores` joins the parts)."""
    from .evaluate import evaluate_benchmark, evaluate_selfval

    border = settings.evaluate.crop_border
    if settings.mode == "benchmark":
        span = part_span(part, VideoMeta.from_json(meta).frames, ground_truth) if part is not None else None
        evaluate_benchmark(settings.video, ground_truth=ground_truth, input_video=input_video, milestone=milestone,
                           enhanced=enhanced, scale=settings.scale, out_csv=scores, border=border, out_crops=crops,
                           gt_meta_json=meta, single_frame=single_frame, out_plot=per_frame, span=span)
    else:
        evaluate_selfval(settings.video, pairs_path=pairs, base_model=base, model=model, out_csv=scores, border=border,
                         device=settings.device, out_crops=crops, out_plot=per_frame)


def join_scores(*, parts: list[str | Path], scores: str | Path, crops: str | Path, per_frame: str | Path,
                ground_truth: str | Path, meta: str | Path, input_video: str | Path, milestone: str | Path,
                enhanced: str | Path, settings: Settings, single_frame: str | Path | None = None) -> None:
    """A long video's benchmark scores from its parts (`evaluate.join_scores`)."""
    from .evaluate import join_scores as join

    join(settings.video, parts, out_csv=scores, ground_truth=ground_truth, input_video=input_video, milestone=milestone,
         enhanced=enhanced, scale=settings.scale, out_crops=crops, out_plot=per_frame, gt_meta_json=meta,
         single_frame=single_frame)


def report(*, scores: list[str], verdicts: list[str], metas: list[str], csv: str | Path, md: str | Path,
           html: str | Path, gains: str | Path, run: str | Path, settings: Settings,
           outcomes: list | None = None, bases: list[str] | None = None, crops: list[str] = (),
           per_frame: list[str] = (), side_by_side: list[str] = ()) -> None:
    """The run's summary table and plots from every video's scores and verdict; `outcomes`
    (`runs.outcomes`) after a failed run, for the videos that did not finish. `crops`,
    `per_frame` and `side_by_side` are the rule's way of waiting for the files summary.html shows
    in each video's section; the page finds them beside each video's verdict and links those that
    exist."""
    from .report import write_report

    write_report(scores, verdicts, scales=settings.scales, out_csv=csv, out_md=md, out_html=html, out_gains_png=gains,
                 out_run=run, border=settings.evaluate.crop_border, degradation=settings.benchmark.degradation,
                 metas={Path(m).parent.name: m for m in metas}, outcomes=outcomes, bases=bases)


# ------------------------------------------------------------------------------ one video, whole
@dataclass
class RunResult:
    """What `run_video` did: each step's seconds, the video's files, the fine-tune's verdict
    (None when it stopped before `fine_tune`)."""

    seconds: dict[str, float]
    files: VideoFiles
    verdict: Verdict | None = None


def run_video(source: str | Path, deliverable: str | Path, settings: Settings, work: str | Path, *,
              base_checkpoint: str | Path | None = None, until: str | None = None, score: bool = False,
              before: Callable[[str], None] | None = None, on_round: Callable | None = None) -> RunResult:
    """One video through the workflow's steps, in rule order, without Snakemake: probe,
    (benchmark mode: degrade_gt), extract, degrade, base_model, fine_tune, infer, reassemble,
    and with `score` the milestone's inference and evaluate.

    `settings` is the whole per-video settings (`settings.full_video_settings`); the base model is
    `base_checkpoint` (a pretrained file; `settings.checkpoint` wins, as in the workflow).
    `until` stops after that step; `before(name)` is called as each step starts (the benchmarks
    time one step); `on_round` is handed to `fine_tune` (the measurement tools record each round).
    Logs one progress line per step and returns each step's seconds, the files and the fine-tune
    verdict."""
    from .memory import set_budget

    files = VideoFiles(str(work))
    Path(work).mkdir(parents=True, exist_ok=True)
    set_budget(settings.memory_mb)
    benchmark = settings.mode == "benchmark"
    input_video = files.input_video if benchmark else source
    input_meta = None if benchmark else files.meta  # the source's meta.json only describes the source
    single = benchmark and frames_in(settings.model) > 1  # the report's single-frame row
    steps = [
        ("probe", lambda: probe(source=source, meta=files.meta, settings=settings)),
        ("degrade_gt", lambda: degrade_gt(ground_truth=source, meta=files.meta, input_video=files.input_video,
                                          settings=settings)) if benchmark else None,
        ("extract", lambda: extract(input_video=input_video, meta=input_meta, frames=files.frames, settings=settings)),
        ("degrade", lambda: degrade(frames=files.frames, pairs=files.pairs, settings=settings)),
        ("base_model", lambda: base_model(checkpoint=base_checkpoint, model=files.base, settings=settings)),
        ("fine_tune", lambda: fine_tune(pairs=files.pairs, base=files.base, model=files.model, history=files.history,
                                        verdict=files.verdict, settings=settings, on_round=on_round)),
        ("infer", lambda: infer(model=files.model, input_video=input_video, meta=input_meta, output=files.enhanced,
                                settings=settings)),
        ("reassemble", lambda: reassemble(enhanced=files.enhanced, source=source, meta=files.meta,
                                          input_video=input_video, deliverable=deliverable,
                                          side_by_side=files.side_by_side, settings=settings)),
        ("infer_milestone", lambda: infer(model=files.base, input_video=input_video, meta=input_meta,
                                          output=files.milestone, settings=settings)) if score else None,
        ("infer_single_frame", lambda: infer(model=files.base, input_video=input_video, output=files.single_frame,
                                             settings=settings, single_frame=True)) if score and single else None,
        ("evaluate", lambda: evaluate(ground_truth=source, meta=files.meta, input_video=input_video,
                                      milestone=files.milestone, enhanced=files.enhanced, pairs=files.pairs,
                                      base=files.base, model=files.model, scores=files.scores, crops=files.crops,
                                      per_frame=files.per_frame,
                                      single_frame=files.single_frame if single else None,
                                      settings=settings)) if score else None,
    ]
    steps = [s for s in steps if s is not None]
    if until is not None:
        names = [name for name, _ in steps]
        if until not in names:
            raise ValueError(f"until={until!r}: not one of {names}")
        steps = steps[: names.index(until) + 1]
    result = RunResult(seconds={}, files=files)
    for number, (name, call) in enumerate(steps, start=1):
        log.info("[%d/%d] %s: %s", number, len(steps), name, Path(source).name)
        if before is not None:
            before(name)
        start = time.monotonic()
        out = call()
        result.seconds[name] = round(time.monotonic() - start, 2)
        if name == "fine_tune":
            result.verdict = out
            log.info("[%d/%d] fine_tune: %s", number, len(steps), out.reason)
        log.info("[%d/%d] %s done in %.1f s", number, len(steps), name, result.seconds[name])
    return result
