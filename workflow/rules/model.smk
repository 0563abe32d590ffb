# Models: the shared base model (trained once per scale, or the user's), and per-video fine-tuning.


rule pretrain:
    output:
        model=f"{RESULTS}/pretrained/{CFG['model']['arch']}_x{{scale}}.pt",
        history=f"{RESULTS}/pretrained/{CFG['model']['arch']}_x{{scale}}.history.csv",
    log:
        f"{RESULTS}/pretrained/logs/{CFG['model']['arch']}_x{{scale}}.log",
    benchmark:
        f"{RESULTS}/pretrained/benchmarks/{CFG['model']['arch']}_x{{scale}}.tsv"
    conda:
        CONDA_ENV
    threads: 8
    resources:
        mem_mb=mem_mb(16000),
        runtime=runtime(240),
        gpu=1,
    params:
        scale=get_scale,
        model=CFG["model"],
        pretrain=CFG["pretrain"],
        degrade=CFG["degrade"],
        version=VERSION,
    script:
        "../scripts/pretrain.py"


rule pretrain_load:
    input:
        checkpoint=get_base_source,
    output:
        model=f"{RESULTS}/base/x{{scale}}.pt",
    log:
        f"{RESULTS}/base/logs/x{{scale}}.log",
    conda:
        CONDA_ENV
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(30),
    params:
        scale=get_scale,
        model=CFG["model"],
        checkpoint=base_source,
        version=VERSION,
    script:
        "../scripts/pretrain_load.py"


rule fine_tune:
    input:
        pairs=rules.degrade.output.pairs,
        base=base_model_for,
    output:
        model=f"{RESULTS}/{{video}}/model.pt",
        history=f"{RESULTS}/{{video}}/fine_tune.history.csv",
        verdict=f"{RESULTS}/{{video}}/verdict.json",
    log:
        f"{RESULTS}/{{video}}/logs/fine_tune.log",
    benchmark:
        f"{RESULTS}/{{video}}/benchmarks/fine_tune.tsv"
    conda:
        CONDA_ENV
    threads: 8
    resources:
        mem_mb=mem_mb(16000),
        runtime=runtime(60),
        gpu=1,
    params:
        fine_tune=video_setting("fine_tune"),
        degrade=video_setting("degrade"),
        version=VERSION,
    script:
        "../scripts/fine_tune.py"
