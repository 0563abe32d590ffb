import pytest

from videnhance.config import (
    ConfigError,
    list_videos,
    load_config_file,
    load_schema,
    validate_config,
    video_settings,
)

from .helpers import REPO


def test_defaults_fill_in_and_input_is_not_mutated():
    raw = {"fine_tune": {"lr": 0.001}}
    cfg = validate_config(raw)
    assert raw == {"fine_tune": {"lr": 0.001}}
    assert cfg["fine_tune"]["lr"] == 0.001 and cfg["fine_tune"]["steps"] > 0
    assert cfg["fine_tune"]["loss"] == {"l1": 1.0} and cfg["scale"] == 2


def test_unknown_key_and_wrong_type_name_the_key():
    with pytest.raises(ConfigError, match=r"key 'fine_tune'.*'stpes' was unexpected"):
        validate_config({"fine_tune": {"stpes": 3}})
    with pytest.raises(ConfigError, match=r"key 'pretrain.steps': 'many' is not of type 'integer'"):
        validate_config({"pretrain": {"steps": "many"}})
    with pytest.raises(ConfigError, match=r"key 'scale': 5 is not one of"):
        validate_config({"scale": 5})


def test_the_scales_are_written_once():
    """The schemas' scale enums, the command line's choices and the registry's SCALES are one list."""
    from videnhance.archs import SCALES
    from videnhance.cli import build_parser
    from videnhance.config import load_schema

    assert load_schema("config")["properties"]["scale"]["enum"] == list(SCALES)
    assert load_schema("videos")["properties"]["scale"]["enum"] == list(SCALES)
    enhance = build_parser()._subparsers._group_actions[0].choices["enhance"]
    assert next(a for a in enhance._actions if a.dest == "scale").choices == SCALES


def test_shipped_config_is_valid():
    cfg = load_config_file(REPO / "config" / "config.yaml")
    assert cfg["videos"]["sheet"] == "config/videos.tsv"


def test_sheet_rows_overrides_and_errors(tmp_path):
    (tmp_path / "v.tsv").write_text("id\tpath\tmode\tscale\tfine_tune_steps\n"
                                    "a\ta.mp4\tenhance\t\t\n"
                                    "b\tsub/b.mp4\tbenchmark\t4\t7\n")
    cfg = validate_config({"videos": {"sheet": "v.tsv"}})
    videos = list_videos(cfg, tmp_path)
    assert list(videos) == ["a", "b"] and videos["b"]["path"] == str(tmp_path / "sub/b.mp4")
    a, b = video_settings(cfg, videos["a"]), video_settings(cfg, videos["b"])
    assert a["scale"] == 2 and b["scale"] == 4 and b["fine_tune"]["steps"] == 7
    assert "benchmark" in b and "benchmark" not in a
    (tmp_path / "bad.tsv").write_text("id\tpath\tmode\n../x\tx.mp4\tenhance\ny\ty.mp4\tsharpen\n")
    with pytest.raises(ConfigError) as err:
        list_videos(validate_config({"videos": {"sheet": "bad.tsv"}}), tmp_path)
    assert "bad.tsv:2: column 'id'" in str(err.value) and "bad.tsv:3: column 'mode'" in str(err.value)


def test_scale_1_needs_a_degradation_to_learn_from():
    row = {"id": "clip", "path": "clip.mp4", "mode": "enhance", "scale": 1}
    with pytest.raises(ConfigError, match=r"video 'clip': scale 1 .* copy its input.*blur_sigma"):
        video_settings(validate_config({}), row)
    blurred = validate_config({"degrade": {"blur_sigma": [0.5, 1.5]}})
    assert video_settings(blurred, row)["scale"] == 1
    assert video_settings(validate_config({}), {**row, "scale": 2})["scale"] == 2


def test_glob_ids_are_safe_and_unique(tmp_path):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "my clip (1).mp4").write_bytes(b"x")
    cfg = validate_config({"videos": {"sheet": None, "glob": "*/*.mp4"}})
    ids = list(list_videos(cfg, tmp_path))
    assert len(ids) == 2 and ids[0] == "my_clip_1" and ids[1].startswith("my_clip_1-")


def test_every_schema_key_is_in_the_config_reference():
    """config/README.md is the reference: each key of the schema is named there, as `section.key`
    or as `.key` on a line that names the section."""
    import yaml

    schema = yaml.safe_load((REPO / "src/videnhance/schemas/config.schema.yaml").read_text())
    text = (REPO / "config/README.md").read_text()
    lines = text.splitlines()
    missing = []
    for section, spec in schema["properties"].items():
        for key in spec.get("properties") or [None]:
            name = f"{section}.{key}" if key else section
            if f"`{name}`" in text or (key and any(f"`{section}." in line and f"`.{key}`" in line for line in lines)):
                continue
            missing.append(name)
        for key, sub in (spec.get("properties") or {}).items():  # one level deeper: pretrain.motion.shift
            nested = [f"{section}.{key}.{k}" for k in sub.get("properties") or []]
            missing += [name for name in nested if f"`{name}`" not in text]
    assert not missing, f"keys missing from config/README.md: {missing}"


def test_the_shipped_config_is_the_schemas_defaults():
    """`videnhance enhance` without -c and `snakemake` (config/config.yaml) run with the same
    settings: the schema is the one home of defaults, and config.yaml writes them out."""
    import yaml

    shipped = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert validate_config(shipped) == validate_config({})


def test_typed_settings_have_exactly_the_schemas_keys_and_no_defaults_of_their_own():
    """Each section class names the schema's keys, no more, no fewer, and none has a default: a
    key added to the schema without its field (or the reverse) fails here, not in a user's run."""
    import dataclasses

    from videnhance.settings import PLAIN_KEYS, SECTIONS, Settings

    schema = load_schema("config")["properties"]
    assert set(SECTIONS) | set(PLAIN_KEYS) == set(schema)
    for name, cls in SECTIONS.items():
        declared = {f.name for f in dataclasses.fields(cls)}
        assert declared == set(schema[name]["properties"]), name
        assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   for f in dataclasses.fields(cls)), name
    settings = Settings.from_dict(validate_config({}))
    # a round trip loses nothing but top-level None (`checkpoint: null` reads as "not given": the same to a step)
    assert settings.as_dict() == {k: v for k, v in validate_config({}).items() if v is not None}
    assert settings.degrade.jpeg_quality == tuple(schema["degrade"]["properties"]["jpeg_quality"]["default"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.fine_tune.lr = 1.0  # type: ignore[misc]
    with pytest.raises(ConfigError, match="fine_tune.*lr"):
        settings.fine_tune.replace(lr=-1)  # a changed copy is validated like a config file
    with pytest.raises(ValueError, match="differ from the schema"):
        SECTIONS["fine_tune"].from_dict({"lr": 0.1})  # only whole, validated sections


def test_every_shipped_config_validates_alone_and_the_overlays_on_their_base():
    import yaml

    def read(name):
        return yaml.safe_load((REPO / "config" / name).read_text())

    for path in sorted((REPO / "config").glob("*.yaml")):
        validate_config(read(path.name))
    for scale in (2, 4):
        base, overlay = read(f"benchmark_x{scale}.yaml"), read(f"benchmark_temporal_x{scale}.yaml")
        merged = {k: {**base.get(k, {}), **v} if isinstance(v, dict) else v for k, v in overlay.items()}
        cfg = validate_config({**base, **merged})
        assert (cfg["scale"], cfg["model"]["arch"], cfg["model"]["channels"]) == (scale, "temporal", 64)
        assert cfg["results"] != base["results"]
        # the benchmark runs the default base; its overlay runs our own pretrain beside it
        ours = validate_config({**base, **read(f"benchmark_x{scale}_ours.yaml")})
        assert base["checkpoint"] == "auto" and ours["checkpoint"] is None and ours["results"] != base["results"]


def test_checkpoint_auto_picks_the_base_per_scale_and_a_mapping_overrides_it():
    from videnhance.defaults import AUTO_LR, base_for, fine_tune_lr
    from videnhance.settings import Settings
    from videnhance.weights import packaged_models

    cfg = validate_config({})
    assert cfg["checkpoint"] == "auto" and cfg["fine_tune"]["lr"] == "auto"
    # the strongest base measured at each scale (docs/quality.md, "the bases"); ×1: our pretrain
    auto = {scale: base_for("auto", scale) for scale in (1, 2, 3, 4)}
    assert auto == {1: None, 2: "package:spanx2_ch48", 3: "package:srmdnf_x3", 4: "package:spanx4_ch48"}
    installed = packaged_models()  # `make setup` installs every wheel `auto` names
    assert all(source.removeprefix("package:") in installed for source in auto.values() if source)
    assert base_for("auto", 2, "temporal") is None  # another arch asked for is pretrained as asked
    assert base_for(None, 2) is None and base_for("mine.safetensors", 4) == "mine.safetensors"
    mapping = validate_config({"checkpoint": {4: "mine_x4.safetensors", 2: None}})["checkpoint"]
    assert base_for(mapping, 4) == "mine_x4.safetensors" and base_for(mapping, 2) is None
    assert base_for({4: "mine_x4.pth"}, 2) == "package:spanx2_ch48"  # a scale not listed is auto
    assert base_for({"4": "mine_x4.pth"}, 4) == "mine_x4.pth"  # keys as strings (--config, JSON) too
    settings = Settings.from_dict({k: cfg[k] for k in ("scale", "checkpoint", "model")})
    assert settings.base_source() == "package:spanx2_ch48"
    assert settings.replace(scale=1).base_source() is None
    # lr: auto is the rate measured for the base's architecture, else by its kind
    assert fine_tune_lr("auto", "span", residual=False) == AUTO_LR["span"]
    assert fine_tune_lr("auto", "srmd", residual=False) == AUTO_LR["srmd"]
    assert fine_tune_lr("auto", "srresnet", residual=True) == 2e-3
    assert fine_tune_lr("auto", "spandrel", residual=False) == 2e-4
    assert fine_tune_lr(5e-4, "span", residual=False) == 5e-4
    with pytest.raises(ConfigError, match="key 'checkpoint'"):
        validate_config({"checkpoint": {"x4": "mine.pth"}})
    with pytest.raises(ConfigError, match="key 'fine_tune.lr'"):
        validate_config({"fine_tune": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="`checkpoint` must name one"):
        validate_config({"model": {"arch": "spandrel"}})
