# Enhancing every frame (streamed, no file per frame) and putting the video back together.


rule infer:
    input:
        unpack(input_files),
        model=model_for,
    output:
        output=f"{RESULTS}/{{video}}/infer/{{which}}.mkv",
    log:
        f"{RESULTS}/{{video}}/logs/infer_{{which}}.log",
    benchmark:
        f"{RESULTS}/{{video}}/benchmarks/infer_{{which}}.tsv"
    wildcard_constraints:
        video=videos_regex(sorted(set(VIDEOS) - set(SEGMENTED))),
    conda:
        CONDA_ENV
    threads: 8
    resources:
        mem_mb=mem_mb(16000),
        runtime=runtime(120),
        gpu=1,
    params:
        mode=video_setting("mode"),
        encode=CFG["encode"],
        version=VERSION,
    script:
        "../scripts/infer.py"


# A long video (infer.segment_seconds, videnhance.segments): one job per part, then a join.
use rule infer as infer_part with:
    output:
        output=f"{RESULTS}/{{video}}/infer/{{which}}.part{{part}}.mkv",
    log:
        f"{RESULTS}/{{video}}/logs/infer_{{which}}.part{{part}}.log",
    benchmark:
        f"{RESULTS}/{{video}}/benchmarks/infer_{{which}}.part{{part}}.tsv"
    wildcard_constraints:
        video=videos_regex(SEGMENTED),
    params:
        mode=video_setting("mode"),
        encode=CFG["encode"],
        part=part_of,
        version=VERSION,


rule join_parts:
    input:
        parts=parts_of,
        meta=rules.probe.output.meta,
    output:
        output=f"{RESULTS}/{{video}}/infer/{{which}}.mkv",
    log:
        f"{RESULTS}/{{video}}/logs/join_{{which}}.log",
    benchmark:
        f"{RESULTS}/{{video}}/benchmarks/join_{{which}}.tsv"
    wildcard_constraints:
        video=videos_regex(SEGMENTED),
    conda:
        CONDA_ENV
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime(30),
    params:
        version=VERSION,
    script:
        "../scripts/join_parts.py"


rule reassemble:
    input:
        enhanced=f"{RESULTS}/{{video}}/infer/enhanced.mkv",
        source=source_video,
        meta=rules.probe.output.meta,
        input_video=input_video,
    output:
        deliverable=f"{RESULTS}/{{video}}/enhanced.{EXT}",
        side_by_side=f"{RESULTS}/{{video}}/side_by_side.mp4",
    log:
        f"{RESULTS}/{{video}}/logs/reassemble.log",
    benchmark:
        f"{RESULTS}/{{video}}/benchmarks/reassemble.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(30),
    params:
        mode=video_setting("mode"),
        encode=CFG["encode"],
        version=VERSION,
    script:
        "../scripts/reassemble.py"
