# Enhancing every frame (streamed, no file per frame) and putting the video back together.


rule infer:
    input:
        unpack(input_files),
        model=model_for,
    output:
        output=V.infer("{which}"),
    log:
        V.log("infer_{which}"),
    benchmark:
        V.benchmark("infer_{which}")
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
        output=V.infer("{which}", "{part}"),
    log:
        V.log("infer_{which}.part{part}"),
    benchmark:
        V.benchmark("infer_{which}.part{part}")
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
        output=V.infer("{which}"),
    log:
        V.log("join_{which}"),
    benchmark:
        V.benchmark("join_{which}")
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
        enhanced=V.enhanced,
        source=source_video,
        meta=rules.probe.output.meta,
        input_video=input_video,
    output:
        deliverable=V.deliverable(EXT),
        side_by_side=report(
            V.side_by_side,
            caption="../report/side_by_side.rst",
            category="Videos",
            subcategory="{video}",
            labels={"video": "{video}", "figure": "side by side"},
        ),
    log:
        V.log("reassemble"),
    benchmark:
        V.benchmark("reassemble")
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
