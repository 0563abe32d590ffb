# Reading videos: metadata, the benchmark input, the training sample and its degraded pairs.


rule probe:
    input:
        source=source_video,
    output:
        meta=V.meta,
    log:
        V.log("probe"),
    conda:
        CONDA_ENV
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(30),
    params:
        scale=video_setting("scale"),
        mode=video_setting("mode"),
        version=VERSION,
    script:
        "../scripts/probe.py"


# Benchmark mode only: the ground truth feeds this rule and `evaluate`, nothing else.
rule degrade_gt:
    input:
        ground_truth=source_video,
        meta=rules.probe.output.meta,
    output:
        input_video=V.input_video,
    log:
        V.log("degrade_gt"),
    benchmark:
        V.benchmark("degrade_gt")
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(30),
    params:
        scale=video_setting("scale"),
        benchmark=video_setting("benchmark"),
        version=VERSION,
    script:
        "../scripts/degrade_gt.py"


rule extract:
    input:
        unpack(input_files),
    output:
        frames=V.frames,
    log:
        V.log("extract"),
    benchmark:
        V.benchmark("extract")
    conda:
        CONDA_ENV
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(30),
    params:
        extract=video_setting("extract"),
        model=CFG["model"],  # a multi-frame model's samples are windows
        version=VERSION,
    script:
        "../scripts/extract.py"


rule degrade:
    input:
        frames=rules.extract.output.frames,
    output:
        pairs=V.pairs,
    log:
        V.log("degrade"),
    conda:
        CONDA_ENV
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(30),
    params:
        scale=video_setting("scale"),
        degrade=video_setting("degrade"),
        version=VERSION,
    script:
        "../scripts/degrade.py"
