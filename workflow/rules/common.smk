# Configuration, the video list and the input helpers every other rule file uses.
import os
import re
import sys

import videnhance
from videnhance.config import list_videos, validate_config, video_settings
from videnhance.layout import Results
from videnhance.archs import frames_in
from videnhance.segments import estimate_frames, plan as plan_parts
from videnhance.settings import Model
from videnhance.defaults import base_for
from videnhance.weights import is_packaged, packaged_files

CFG = validate_config(
    config
)  # a validated copy with defaults; `config` itself is not mutated
VIDEOS = list_videos(CFG)
SETTINGS = {vid: video_settings(CFG, row) for vid, row in VIDEOS.items()}
VERSION = (
    videnhance.__version__
)  # a rule param, so a new library version reruns the steps
EXT = CFG["encode"]["container"]
# a multi-frame base: benchmark mode also scores its own single-frame network (the report's row)
MULTI_FRAME = frames_in(Model.from_dict(CFG["model"])) > 1
# every rule's environment (the path is from workflow/rules/); its `-e ${VIDENHANCE_ROOT}` line
# installs this checkout (see envs/videnhance.yaml)
CONDA_ENV = "../../envs/videnhance.yaml"
# set, not read: see envs/videnhance.yaml
os.environ.update(VIDENHANCE_ROOT=workflow.basedir)
R = Results(CFG["results"])  # every path under results/ (videnhance.layout)
V = R.video("{video}")  # a video's files, as patterns of the {video} wildcard


def _parts(vid):
    """Frame ranges of a video's `infer` parts (videnhance.segments): one for most videos."""
    seconds = CFG["infer"]["segment_seconds"]
    if seconds <= 0:
        return [(0, None)]
    above = CFG["infer"]["segment_above_seconds"]
    # the header's word for short videos; the packets counted where it says to split
    frames, fps = estimate_frames(VIDEOS[vid]["path"], count_above_seconds=above)
    return plan_parts(frames, fps, seconds, above)


PARTS = {vid: _parts(vid) for vid in VIDEOS}
SEGMENTED = [vid for vid, parts in PARTS.items() if len(parts) > 1]
# benchmark mode scores every frame against the ground truth: a long video's evaluate runs in the
# same parts (enhance mode scores a sample of frames, one job)
SEGMENTED_BENCHMARK = [vid for vid in SEGMENTED if SETTINGS[vid]["mode"] == "benchmark"]


def videos_regex(ids):
    """A wildcard constraint that matches exactly these video ids (none: matches nothing)."""
    return "|".join(map(re.escape, ids)) or "(?!)"


wildcard_constraints:
    video="|".join(map(re.escape, VIDEOS)) or "NO_VIDEOS",
    scale=r"\d+",
    which="enhanced|milestone|single_frame",
    part=r"\d+",


def parts_of(wildcards):
    """The part files a segmented video's `join_parts` joins, in order."""
    files = R.video(wildcards.video)
    return [files.infer(wildcards.which, k) for k in range(len(PARTS[wildcards.video]))]


def part_of(wildcards):
    """A param of the part rules: this part's (start, end or None) frames."""
    return PARTS[wildcards.video][int(wildcards.part)]


def score_parts_of(wildcards):
    """The score files a segmented benchmark video's `join_scores` joins, in order."""
    files = R.video(wildcards.video)
    return [files.scores(k) for k in range(len(PARTS[wildcards.video]))]


def video_setting(key):
    """A param of the rules: this video's effective setting `key` (the sheet row's overrides applied).
    A plain dict lookup: `lookup(dpath=…, within=SETTINGS)` walks every video's settings for each
    job, which made `snakemake -n` quadratic in the number of videos (520 s for 1000).
    """
    return lambda wildcards: SETTINGS[wildcards.video][key]


def source_video(wildcards):
    return VIDEOS[wildcards.video]["path"]


def input_video(wildcards):
    """What the pipeline enhances: the degraded copy in benchmark mode, else the source."""
    if SETTINGS[wildcards.video]["mode"] == "benchmark":
        return R.video(wildcards.video).input_video
    return source_video(wildcards)


def input_files(wildcards):
    """The input video, and the probe step's meta.json when that video is the user's source (so
    later steps need not decode it again to count frames). In benchmark mode the input is our own
    lossless file, and the ground truth's meta.json must not feed the training side."""
    files = {"input_video": input_video(wildcards)}
    if SETTINGS[wildcards.video]["mode"] == "enhance":
        files["meta"] = R.video(wildcards.video).meta
    return files


def base_model_for(wildcards):
    return R.base(SETTINGS[wildcards.video]["scale"])


def model_for(wildcards):
    """What `infer` runs: the video's model (enhanced), or the base model (milestone; single_frame:
    the base's own single-frame network)."""
    if wildcards.which == "enhanced":
        return R.video(wildcards.video).model
    return base_model_for(wildcards)


def base_source(wildcards):
    """The `checkpoint` setting resolved at this scale (`auto` and per-scale mappings): a file,
    `package:NAME`, or None (our `pretrain`). A rule param, so changing one scale's base reruns
    only that scale's videos."""
    return base_for(CFG["checkpoint"], int(wildcards.scale), CFG["model"]["arch"])


def get_base_source(wildcards):
    """The base model file at this scale: the user's checkpoint (for `package:NAME`, the packaged
    .param file), else the `pretrain` rule's model."""
    source = base_source(wildcards)
    if is_packaged(source):
        return str(packaged_files(source)[0])
    return source or pretrained_name(wildcards.scale)


def get_scale(wildcards):
    return int(wildcards.scale)


def get_video_id(wildcards):
    return wildcards.video


def get_evaluate_gpus(wildcards):
    """Enhance-mode evaluate runs both models on the held-out frames; benchmark mode only reads videos."""
    return int(SETTINGS[wildcards.video]["mode"] != "benchmark")


def pretrained_name(scale):
    return R.pretrained(CFG["model"]["arch"], scale)


def evaluate_inputs(wildcards):
    files = R.video(wildcards.video)
    if SETTINGS[wildcards.video]["mode"] == "benchmark":
        return {
            "ground_truth": source_video(wildcards),
            "meta": files.meta,
            "input_video": files.input_video,
            "milestone": files.milestone,
            "enhanced": files.enhanced,
            **({"single_frame": files.single_frame} if MULTI_FRAME else {}),
        }
    return {
        "pairs": files.pairs,
        "base": base_model_for(wildcards),
        "model": files.model,
    }


def get_final_outputs():
    outputs = []
    for vid in VIDEOS:
        outputs += [R.video(vid).deliverable(EXT), R.video(vid).side_by_side]
    if VIDEOS:
        # run.json: written only by a complete report, so a partial one (onerror) is redone
        outputs += [R.report("summary.csv"), R.report("run.json")]
    return outputs


def mem_mb(megabytes):
    """A rule's memory request (MB), at least the configured `memory_mb` (the budget the step
    plans in: a Slurm job gets the memory its step counts on), doubled on each retry: a job
    killed for memory gets twice as much on its next attempt (`retries:` in profiles/slurm).
    Sites change it with `set-resources`.
    """
    planned = int(config.get("memory_mb") or 0)
    return lambda wildcards, attempt: max(megabytes, planned) * attempt


def runtime(minutes):
    """A rule's time limit (minutes; Slurm's `-t`), doubled on each retry like `mem_mb`."""
    return lambda wildcards, attempt: minutes * attempt


def pending_videos():
    """The videos with jobs Snakemake still had to run when the run stopped (None where this
    Snakemake's job graph cannot say: then a video with scores counts as done)."""
    try:
        jobs = workflow.dag.needrun_jobs()
    except AttributeError:
        return None
    return {dict(job.wildcards).get("video") for job in jobs} - {None}
