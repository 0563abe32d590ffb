# Models: the shared base model (trained once per scale, or the user's), and per-video fine-tuning.


rule pretrain:
    output:
        model=R.pretrained(CFG["model"]["arch"], "{scale}"),
        history=R.pretrained(CFG["model"]["arch"], "{scale}", "history.csv"),
    log:
        R.pretrained(CFG["model"]["arch"], "{scale}", "log"),
    benchmark:
        R.pretrained(CFG["model"]["arch"], "{scale}", "tsv")
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


rule base_model:
    input:
        checkpoint=get_base_source,
    output:
        model=R.base("{scale}"),
    log:
        R.base_log("{scale}"),
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
        "../scripts/base_model.py"


rule fine_tune:
    input:
        pairs=rules.degrade.output.pairs,
        base=base_model_for,
    output:
        model=V.model,
        history=V.history,
        verdict=V.verdict,
    log:
        V.log("fine_tune"),
    benchmark:
        V.benchmark("fine_tune")
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
