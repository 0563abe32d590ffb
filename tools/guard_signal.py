"""Does the guard's held-out signal predict what fine-tuning does to the real video?

For each clip (ground truth) this runs the pipeline's own chain in benchmark mode
(`pipeline.run_video` up to `fine_tune`: the ×scale BI input, extract, degrade, the base model,
fine_tune) with the guard off (`fine_tune.guard: false`: every round kept, the fine-tuned model
delivered), and scores the base model and *each round's* model on every frame against the ground
truth. The table puts side by side, per round, what the guard sees (the mean per-held-out-frame
gain and its standard error, for both held-out signals of `videnhance.training.guard`) and the
ground-truth gain of the same model; then what each rule would deliver, replayed on those rounds
(`simulate`): the frame-pair rule used before and the configured one. With `--blend 0.5` it also
scores the weights halfway between base and fine-tuned.

    .venv/bin/python tools/guard_signal.py clip.mp4 … --config config/benchmark_x4.yaml cpu_scale.yaml \
        --base base_x4.pt --work guard_x4 --md guard_x4.md

`--config` files merge key by key, later ones winning (as Snakemake merges `--configfile`s).
Rows are appended to `--jsonl` as each clip finishes; `--md` is rewritten from all rows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from videnhance.config import safe_id, validate_config
from videnhance.degrade import DegradeChain, crop_to_multiple, eval_degrade
from videnhance.infer import run_model
from videnhance.io import FrameReader, probe
from videnhance.metrics import psnr, rgb_to_y
from videnhance.models import load_model
from videnhance.pipeline import run_video
from videnhance.samples import load_npz
from videnhance.settings import FineTune, full_video_settings
from videnhance.training.guard import Rule, Signal, held_out_judge


def merged(paths: list[str]) -> dict:
    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    cfg: dict = {}
    for p in paths:
        cfg = merge(cfg, yaml.safe_load(Path(p).read_text()) or {})
    return validate_config(cfg)


def gt_psnr(model, lr: np.ndarray, gt: np.ndarray) -> np.ndarray:
    out = []
    for start in range(0, len(lr), 8):
        outs = run_model(model, lr[start : start + 8], gt.shape[1:3], batch_size=4)
        out += [psnr(rgb_to_y(g), rgb_to_y(o)) for g, o in zip(gt[start : start + 8], outs, strict=True)]
    return np.array(out)


def blended(base, tuned, alpha: float):
    model = load_model(base).module
    a, b = model.state_dict(), load_model(tuned).module.state_dict()
    model.load_state_dict({k: a[k] + alpha * (b[k] - a[k]) if a[k].is_floating_point() else b[k] for k in a})
    return model


def run_clip(path: str, cfg: dict, base: str, work: Path, blends: list[float]) -> dict:
    scale, clip = cfg["scale"], safe_id(path)
    d = work / f"{clip}_x{scale}"
    settings = full_video_settings(cfg, {"id": clip, "mode": "benchmark"})
    settings = settings.replace(fine_tune=settings.fine_tune.replace(guard=False), device="cpu")
    states: dict[int, dict] = {}  # each round's weights, to score every round on the ground truth

    def record(done) -> None:
        states[done.number] = {k: v.detach().clone() for k, v in done.model.state_dict().items()}

    start = time.monotonic()
    result = run_video(path, d / "unused.mkv", settings, d, base_checkpoint=base, until="fine_tune", on_round=record)
    verdict, files = result.verdict, result.files
    gt = crop_to_multiple(np.concatenate(list(FrameReader(path, probe(path), batch_size=16))), scale)
    lr = eval_degrade(gt, scale, cfg["benchmark"]["degradation"])
    base_model = load_model(base).module
    base_gt = gt_psnr(base_model, lr, gt)
    rounds = []
    for report in verdict.round_report:
        model = load_model(base).module
        model.load_state_dict(states[report["round"]])
        gain = gt_psnr(model, lr, gt) - base_gt
        rounds.append({"round": report["round"], "lr": report["lr"], "signals": report["signals"],
                       "gt_gain_db": float(gain.mean()), "gt_gain_min_db": float(gain.min()),
                       "gt_gain_max_db": float(gain.max()), "frames_better": int((gain > 0).sum())})
    last = rounds[-1]
    row = {"clip": clip, "scale": scale, "frames": len(gt), "gt_gain_db": last["gt_gain_db"],
           "gt_gain_min_db": last["gt_gain_min_db"], "gt_gain_max_db": last["gt_gain_max_db"],
           "frames_better": last["frames_better"], "base_gt_psnr": float(base_gt.mean()),
           "signals": verdict.signals, "rounds": rounds, "fine_tune_seconds": result.seconds["fine_tune"],
           "train_frames": verdict.train_frames, "val_frames": verdict.val_frames,
           "total_seconds": round(time.monotonic() - start, 1)}
    if blends:
        pairs = load_npz(files.pairs)
        is_val = pairs["is_val"].astype(bool)
        judge = held_out_judge(base_model, pairs["lr"][is_val], pairs["hr"][is_val], scale, settings.fine_tune,
                               DegradeChain.from_settings(settings.degrade), torch.device("cpu"))
        row["blends"] = {}
        for alpha in blends:
            model = blended(base, files.model, alpha)
            sig = judge.signals(judge.score(model))
            row["blends"][str(alpha)] = {"gt_gain_db": float((gt_psnr(model, lr, gt) - base_gt).mean()),
                                         **{k: v.as_dict() for k, v in sig.items()}}
    return row


def simulate(row: dict, rule: Rule, patience: int) -> dict:
    """What `rule` delivers on this clip, replayed on the guard-off run's rounds: each round is kept
    or undone by `rule.better`, the fine-tune stops after `patience` undone rounds in a row, and
    `rule.decide` judges the best round. Exact while no round runs after an undone one (the run
    would then continue from other weights at a lower rate): else `exact` is False."""
    best, undone, exact = None, 0, True
    for r in row["rounds"]:
        if patience and undone >= patience:
            break
        if undone:
            exact = False
        signals = {k: Signal(**v) for k, v in r["signals"].items()}
        if rule.better(signals, best["signals"] if best else None):
            best, undone = {**r, "signals": signals}, 0
        else:
            undone += 1
    if best is None:
        return {"kept": "base", "gt_gain_db": 0.0, "exact": exact, "why": "every round undone"}
    keep, why = rule.decide(best["signals"])
    return {"kept": f"round {best['round']}" if keep else "base", "gt_gain_db": best["gt_gain_db"] if keep else 0.0,
            "exact": exact, "why": why}


def rules(cfg: dict) -> dict[str, tuple[Rule, int]]:
    """The rule before this change (frame pairs decide rounds and the guard; every round runs) and
    the configured one."""
    ft = FineTune.from_dict(cfg["fine_tune"])
    return {"frame rule (before)": (Rule("frame", ft.min_gain_db, ft.guard_z, None), 0),
            "configured rule (after)": (Rule.from_settings(ft), ft.patience)}


def table(rows: list[dict], cfg: dict) -> str:
    head = ("| clip | × | frames | round | lr | GT gain (min … max) | frames better | held-out frame pairs "
            "| held-out near-scale |")
    lines = ["Each round's model (guard off), its held-out signals (mean per-frame gain ± s.e.) and its gain "
             "on every frame against the ground truth:", "", head, "|" + "---|" * 9]
    for r in rows:
        for x in r["rounds"]:
            f, n = x["signals"]["frame"], x["signals"]["near_scale"]
            lines.append(
                f"| {r['clip']} | {r['scale']} | {r['frames']} | {x['round']} | {x['lr']:g} | {x['gt_gain_db']:+.3f} "
                f"({x['gt_gain_min_db']:+.2f} … {x['gt_gain_max_db']:+.2f}) | {x['frames_better']}/{r['frames']} | "
                f"{f['gain_db']:+.3f} ± {f['stderr_db']:.3f} (n {f['frames']}) | {n['gain_db']:+.3f} ± "
                f"{n['stderr_db']:.3f} |")
    named = rules(cfg)
    lines += ["", "What each rule delivers (GT gain of the delivered model; `*` = replay not exact, see `simulate`):",
              "", "| clip | × | " + " | ".join(named) + " |", "|---|---|" + "---|" * len(named)]
    for r in rows:
        cells = []
        for rule, patience in named.values():
            out = simulate(r, rule, patience)
            cells.append(f"{out['kept']}: {out['gt_gain_db']:+.3f}{'' if out['exact'] else ' *'}")
        lines.append(f"| {r['clip']} | {r['scale']} | " + " | ".join(cells) + " |")
    blends = [(r, a, b) for r in rows for a, b in r.get("blends", {}).items()]
    if blends:
        lines += ["", "| clip | × | blend α | GT gain | held-out frame pairs | held-out near-scale |", "|" + "---|" * 6]
        lines += [f"| {r['clip']} | {r['scale']} | {a} | {b['gt_gain_db']:+.3f} | {b['frame']['gain_db']:+.3f} ± "
                  f"{b['frame']['stderr_db']:.3f} | {b['near_scale']['gain_db']:+.3f} ± "
                  f"{b['near_scale']['stderr_db']:.3f} |"
                  for r, a, b in blends]
    return "\n".join(lines) + "\n"


def scatter(rows: list[dict], path: str | Path) -> None:
    """Held-out gain against ground-truth gain, one point per round and signal, with ±1 s.e."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, name, colour in zip(axes, ("frame", "near_scale"), ("tab:orange", "tab:blue"), strict=True):
        gt = [x["gt_gain_db"] for r in rows for x in r["rounds"]]
        held = [x["signals"][name]["gain_db"] for r in rows for x in r["rounds"]]
        err = [x["signals"][name]["stderr_db"] for r in rows for x in r["rounds"]]
        ax.errorbar(gt, held, yerr=err, fmt="o", color=colour, ms=4, capsize=2)
        ax.axhline(0, color="black", lw=0.8)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("ground-truth gain of the model (dB Y-PSNR, all frames)")
        ax.set_ylabel("held-out gain, mean per frame ± s.e. (dB)")
        ax.set_title(f"held-out {name.replace('_', '-')} pairs", fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{sum(len(r['rounds']) for r in rows)} fine-tuned models (clip × scale × lr × round), guard off",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="+", help="ground-truth videos")
    parser.add_argument("--config", nargs="+", required=True, help="config files, merged in order")
    parser.add_argument("--base", required=True, help="base model (our .pt) at the config's scale")
    parser.add_argument("--work", required=True, help="folder for each clip's files")
    parser.add_argument("--jsonl", help="append one JSON row per clip here (default: <work>/rows.jsonl)")
    parser.add_argument("--md", help="write the table of every row in --jsonl here")
    parser.add_argument("--plot", help="write held-out vs ground-truth gain of every row in --jsonl here (PNG)")
    parser.add_argument("--blend", type=float, nargs="*", default=[], help="also score these base→tuned blends")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = merged(args.config)
    work = Path(args.work)
    jsonl = Path(args.jsonl or work / "rows.jsonl")
    work.mkdir(parents=True, exist_ok=True)
    for clip in args.clips:
        row = run_clip(clip, cfg, args.base, work, args.blend)
        with jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    if args.plot:
        scatter(rows, args.plot)
    if args.md:
        Path(args.md).write_text(table(rows, cfg))
        print(Path(args.md).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
