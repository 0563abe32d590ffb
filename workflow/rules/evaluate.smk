# Scores per frame for bicubic / milestone / fine-tuned, and the run's report.


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        scores=f"{RESULTS}/{{video}}/scores.csv",
        crops=report(
            f"{RESULTS}/{{video}}/crops.png",
            caption="../report/crops.rst",
            category="Crops",
            labels={"video": "{video}"},
        ),
    log:
        f"{RESULTS}/{{video}}/logs/evaluate.log",
    benchmark:
        f"{RESULTS}/{{video}}/benchmarks/evaluate.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(30),
        gpu=get_evaluate_gpus,
    params:
        video=get_video_id,
        mode=lookup(dpath="{video}/mode", within=SETTINGS),
        scale=lookup(dpath="{video}/scale", within=SETTINGS),
        evaluate=CFG["evaluate"],
        version=VERSION,
    script:
        "../scripts/evaluate.py"


rule report:
    input:
        scores=expand(f"{RESULTS}/{{video}}/scores.csv", video=VIDEOS),
        verdicts=expand(f"{RESULTS}/{{video}}/verdict.json", video=VIDEOS),
    output:
        csv=report(
            f"{RESULTS}/report/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "csv"},
        ),
        md=report(
            f"{RESULTS}/report/summary.md",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "markdown"},
        ),
        per_frame=report(
            f"{RESULTS}/report/psnr_per_frame.png",
            caption="../report/per_frame.rst",
            category="Plots",
            labels={"plot": "per-frame Y-PSNR"},
        ),
        gains=report(
            f"{RESULTS}/report/gains.png",
            caption="../report/gains.rst",
            category="Plots",
            labels={"plot": "gain over bicubic"},
        ),
    log:
        f"{RESULTS}/report/logs/report.log",
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
