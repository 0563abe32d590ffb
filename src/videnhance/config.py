"""Configuration and the video list: validation against the JSON schemas, defaults, per-video settings.

Used by the workflow (workflow/rules/common.smk) and the CLI alike, so both accept exactly the
same configuration. The input dict is never mutated; validated copies are returned.
"""

from __future__ import annotations

import copy
import glob as globlib
import hashlib
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from .archs import ARCHS
from .defaults import AUTO
from .errors import ConfigError

SCHEMA_DIR = resources.files("videnhance") / "schemas"
OVERRIDES = {  # sheet column → (config section, key)
    "scale": (None, "scale"),
    "fine_tune_steps": ("fine_tune", "steps"),
    "fine_tune_lr": ("fine_tune", "lr"),
    "fine_tune_enabled": ("fine_tune", "enabled"),
    "extract_frames": ("extract", "frames"),
}


def load_schema(name: str) -> dict:
    return yaml.safe_load((SCHEMA_DIR / f"{name}.schema.yaml").read_text())


def allowed_values(section: str, key: str) -> tuple:
    """The values the schema allows for `section.key` (its `enum`): the one list of them."""
    return tuple(load_schema("config")["properties"][section]["properties"][key]["enum"])


def schema_default(section: str, key: str) -> Any:
    """The schema's default for `section.key`: the one home of it, for callers outside a config."""
    return load_schema("config")["properties"][section]["properties"][key]["default"]


def _resolve(schema: dict, root: dict) -> dict:
    if "$ref" not in schema:
        return schema
    target = root
    for part in schema["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}


def _fill_defaults(instance: Any, schema: dict, root: dict) -> Any:
    """Fill missing keys from the schema's defaults, recursively (objects default to {})."""
    schema = _resolve(schema, root)
    if isinstance(instance, dict):
        for key, sub in schema.get("properties", {}).items():
            sub = _resolve(sub, root)
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                instance[key] = _fill_defaults(instance[key], sub, root)
    return instance


def _errors(instance: Any, schema: dict, where: str) -> list[str]:
    validator = Draft202012Validator(schema)
    messages = []
    for err in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        messages.append(f"{where}: key '{key}': {err.message}")
    return messages


def validate_config(config: dict) -> dict:
    """Return a validated copy of `config` with every default filled in; raise ConfigError."""
    schema = load_schema("config")
    cfg = _fill_defaults(copy.deepcopy(dict(config)), schema, schema)
    messages = _errors(cfg, schema, "config")
    if cfg.get("model", {}).get("arch") not in ARCHS:
        messages.append(f"config: key 'model.arch': {cfg['model']['arch']!r} is not a registered architecture "
                        f"({', '.join(sorted(ARCHS))})")
    elif ARCHS[cfg["model"]["arch"]].from_weights and cfg.get("checkpoint") in (None, AUTO):
        messages.append(f"config: key 'model.arch': {cfg['model']['arch']!r} is recognised from a checkpoint's "
                        "weights, so `checkpoint` must name one (a .safetensors or .pth file)")
    if messages:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(messages) +
                          "\nSee config/README.md for every key and its allowed values.")
    return cfg


RUNTIME_KEYS = ("device", "memory_mb", "infer")  # where and how fast, not what: changing them reruns nothing


def runtime_settings(config: dict) -> dict:
    """The validated `device` and `infer` settings, for a workflow step to read at run time.

    They are kept out of rule `params` on purpose: moving a run from a workstation to a cluster
    node, or changing the batch size, tiles, `torch.compile` or the transport, changes speed (and
    at most the last bit of a few pixels under bf16, or one or two levels from the YUV ↔ RGB
    rounding of `transport`), so it must not make Snakemake redo every video's fine-tuning and
    inference."""
    cfg = validate_config(config)
    return {key: cfg[key] for key in RUNTIME_KEYS}


def load_config_file(path: str | Path | None, **overrides: Any) -> dict:
    """The validated config of a YAML file (None: the schema's defaults), with top-level
    `overrides` (such as the command line's `scale`) applied before validation."""
    raw = (yaml.safe_load(Path(path).read_text()) if path else None) or {}
    return validate_config({**raw, **overrides})


def safe_id(path: str | Path) -> str:
    """A folder-safe id from a file name: letters, digits, '_', '.', '-'."""
    stem = Path(path).stem
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._-") or "video"
    if not cleaned[0].isalnum():
        cleaned = "v" + cleaned
    return cleaned


def _parse_cell(column: str, value: str) -> Any:
    if column in ("scale", "fine_tune_steps", "extract_frames"):
        return int(value)
    if column == "fine_tune_lr":
        return float(value)
    if column == "fine_tune_enabled":
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(value)
        return value.lower() in ("true", "1", "yes")
    return value


def read_sheet(path: str | Path, base_dir: str | Path = ".") -> list[dict]:
    """Rows of the TSV video sheet, validated; relative paths are taken from `base_dir`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"video sheet {path} not found; set videos.sheet (or null) in the config.")
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return []
    header = [h.strip() for h in lines[0].split("\t")]
    schema = load_schema("videos")
    rows, messages = [], []
    for number, line in enumerate(lines[1:], start=2):
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) > len(header):
            messages.append(f"{path}:{number}: {len(cells)} cells but {len(header)} columns (tabs, not spaces?)")
            continue
        row: dict[str, Any] = {}
        for column, value in zip(header, cells, strict=False):
            if value == "":
                continue
            try:
                row[column] = _parse_cell(column, value)
            except ValueError:
                messages.append(f"{path}:{number}: column '{column}': {value!r} is not a valid value")
        messages += [m.replace("sheet: key", f"{path}:{number}: column") for m in _errors(row, schema, "sheet")]
        if "path" in row and not Path(row["path"]).is_absolute():
            row["path"] = str(Path(base_dir) / row["path"])
        rows.append(row)
    if messages:
        raise ConfigError("invalid video sheet:\n  " + "\n  ".join(messages))
    return rows


def list_videos(cfg: dict, base_dir: str | Path = ".") -> dict[str, dict]:
    """All videos of a run, keyed by id, from the sheet and the glob. Ids must be unique."""
    videos: dict[str, dict] = {}
    sheet = cfg["videos"]["sheet"]
    for row in read_sheet(Path(base_dir) / sheet, base_dir) if sheet else []:
        if row["id"] in videos:
            raise ConfigError(f"video sheet: id '{row['id']}' appears twice; ids must be unique.")
        videos[row["id"]] = row
    pattern = cfg["videos"]["glob"]
    if pattern:
        known = {str(Path(v["path"]).resolve()) for v in videos.values()}
        for found in sorted(globlib.glob(str(Path(base_dir) / pattern), recursive=True)):
            if not Path(found).is_file() or str(Path(found).resolve()) in known:
                continue
            vid = safe_id(found)
            if vid in videos:  # same stem elsewhere: make the id unique but stable
                vid = f"{vid}-{hashlib.sha1(str(Path(found).resolve()).encode()).hexdigest()[:8]}"
            videos[vid] = {"id": vid, "path": found, "mode": cfg["videos"]["glob_mode"]}
    return videos


def video_settings(cfg: dict, row: dict) -> dict:
    """The effective settings of one video: the config with the row's overrides applied.

    These go into rule params, so editing one row reruns only that video's jobs.
    """
    out = {
        "mode": row["mode"],
        "scale": cfg["scale"],
        "extract": copy.deepcopy(cfg["extract"]),
        "degrade": copy.deepcopy(cfg["degrade"]),
        "fine_tune": copy.deepcopy(cfg["fine_tune"]),
    }
    for column, (section, key) in OVERRIDES.items():
        if column in row:
            (out[section] if section else out)[key] = row[column]
    if out["mode"] == "benchmark":
        out["benchmark"] = copy.deepcopy(cfg["benchmark"])
    deg = out["degrade"]
    degrades = (max(deg["blur_sigma"]) > 0 or max(deg["noise_sigma"]) > 0 or deg["jpeg_prob"] > 0
                or deg["codec_prob"] > 0)
    if out["scale"] == 1 and not degrades:
        raise ConfigError(
            f"video '{row['id']}': scale 1 (same-size clean-up) with a degrade chain that changes nothing "
            "(no blur, noise or JPEG) would train the model to copy its input. Set degrade.blur_sigma, "
            "degrade.noise_sigma and/or degrade.jpeg_prob to what your footage suffers from "
            "(e.g. blur_sigma: [0.5, 1.5], which also matches benchmark mode's σ=1 blur at scale 1).")
    return out
