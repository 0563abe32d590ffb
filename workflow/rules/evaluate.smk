# Scores per frame for bicubic / milestone / fine-tuned, and the run's report.


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        scores=V.scores(),
        crops=report(
            V.crops,
            caption="../report/crops.rst",
            category="Videos",
            subcategory="{video}",
            labels={"video": "{video}", "figure": "crops"},
        ),
        per_frame=report(
            V.per_frame,
            caption="../report/per_frame.rst",
            category="Videos",
            subcategory="{video}",
            labels={"video": "{video}", "figure": "per-frame Y-PSNR"},
        ),
    log:
        V.log("evaluate"),
    benchmark:
        V.benchmark("evaluate")
    wildcard_constraints:
        video=videos_regex(sorted(set(VIDEOS) - set(SEGMENTED_BENCHMARK))),
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(30),
        gpu=get_evaluate_gpus,
    params:
        video=get_video_id,
        mode=video_setting("mode"),
        scale=video_setting("scale"),
        evaluate=CFG["evaluate"],
        version=VERSION,
    script:
        "../scripts/evaluate.py"


# A long benchmark video (infer.segment_seconds): scored in the same parts as its infer, joined.
use rule evaluate as evaluate_part with:
    output:
        scores=V.scores("{part}"),
    log:
        V.log("evaluate.part{part}"),
    benchmark:
        V.benchmark("evaluate.part{part}")
    wildcard_constraints:
        video=videos_regex(SEGMENTED_BENCHMARK),
    params:
        video=get_video_id,
        mode=video_setting("mode"),
        scale=video_setting("scale"),
        evaluate=CFG["evaluate"],
        part=part_of,
        version=VERSION,


rule join_scores:
    input:
        unpack(evaluate_inputs),
        parts=score_parts_of,
    output:
        scores=V.scores(),
        crops=report(
            V.crops,
            caption="../report/crops.rst",
            category="Videos",
            subcategory="{video}",
            labels={"video": "{video}", "figure": "crops"},
        ),
        per_frame=report(
            V.per_frame,
            caption="../report/per_frame.rst",
            category="Videos",
            subcategory="{video}",
            labels={"video": "{video}", "figure": "per-frame Y-PSNR"},
        ),
    log:
        V.log("join_scores"),
    benchmark:
        V.benchmark("join_scores")
    wildcard_constraints:
        video=videos_regex(SEGMENTED_BENCHMARK),
    conda:
        CONDA_ENV
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(30),
    params:
        video=get_video_id,
        mode=video_setting("mode"),
        scale=video_setting("scale"),
        evaluate=CFG["evaluate"],
        version=VERSION,
    script:
        "../scripts/join_scores.py"


rule report:
    input:
        scores=expand(V.scores(), video=VIDEOS),
        verdicts=expand(V.verdict, video=VIDEOS),
        metas=expand(V.meta, video=VIDEOS),
        bases=sorted({R.base(s["scale"]) for s in SETTINGS.values()}),
        # shown in summary.html's section of each video
        crops=expand(V.crops, video=VIDEOS),
        per_frame=expand(V.per_frame, video=VIDEOS),
        side_by_side=expand(V.side_by_side, video=VIDEOS),
    output:
        csv=report(
            R.report("summary.csv"),
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "csv"},
        ),
        md=report(
            R.report("summary.md"),
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "markdown"},
        ),
        html=report(
            R.report("summary.html"),
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "sortable"},
        ),
        gains=report(
            R.report("gains.png"),
            caption="../report/gains.rst",
            category="Summary",
            labels={"table": "plots"},
        ),
        # written only when every video has its scores: after a failed run the partial report
        # (`onerror`, common.smk) removes it, so this rule runs again once the videos are fixed
        run=R.report("run.json"),
    log:
        R.report("logs/report.log"),
    conda:
        CONDA_ENV
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(30),
    params:
        scales={vid: s["scale"] for vid, s in SETTINGS.items()},
        evaluate=CFG["evaluate"],
        benchmark=CFG["benchmark"],
        version=VERSION,
    script:
        "../scripts/report.py"


onerror:
    from videnhance.report import report_after_failure

    try:
        message = report_after_failure(
            list(VIDEOS),
            R.root,
            log,
            pending_videos(),
            {vid: s["scale"] for vid, s in SETTINGS.items()},
            CFG["evaluate"]["crop_border"],
            CFG["benchmark"]["degradation"],
        )
    # the run's own error is what matters; say why there is no report
    except Exception as err:
        message = f"videnhance: could not write the report of the videos that finished: {err!r}"
    print(message, file=sys.stderr)
