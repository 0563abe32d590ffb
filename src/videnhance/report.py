"""The report: one table per run (summary.csv / summary.md) and plots, from every video's scores."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from .evaluate import METHODS, summarize
from .files import atomic_output, atomic_write_text

log = logging.getLogger(__name__)

PROTOCOL = (
    "Scores: per-frame PSNR (peak 255) and SSIM (11×11 Gaussian, σ=1.5) on Y of BT.601 "
    "(Y = 16 + 65.481R + 128.553G + 24.966B), float64, after rounding outputs to 8 bits; also RGB PSNR. "
    "Averaged per frame, then per clip; 'overall' averages the clips. Border crop: {border} px. "
    "Benchmark mode: the input is the ground truth downscaled ({degradation}: {kernel}) and scored "
    "against it. Enhance mode has no ground truth: scores are on the video's own held-out frames "
    "(self-validation), degraded with the training chain. These are the frames the guard chose the "
    "model on, so a self-validation gain reads a little high; benchmark rows are the unbiased measure. "
    "Flicker (benchmark mode): the mean absolute Y difference, in levels of 255, between each output frame "
    "and the next one warped back by the ground truth's own motion (OpenCV DIS flow), over the pixels where "
    "that warp explains the ground truth itself to within 4 levels; lower is steadier. Enhance mode scores "
    "sampled frames that are not consecutive, so it has none (–)."
)
KERNELS = {
    "BI": "torch bicubic with antialiasing, close to but not identical to MATLAB imresize",
    "BD": "Gaussian blur σ=1.6, then every scale-th pixel",
}


VERDICT_COLUMNS = {  # summary column: (verdict.json key, value when absent)
    "kept": ("kept", ""), "guard_signal": ("signal", ""), "guard_gain_db": ("gain_db", float("nan")),
    "guard_stderr_db": ("gain_stderr_db", float("nan")), "guard_reason": ("reason", ""),
    "fine_tune_seconds": ("seconds", float("nan")), "fine_tune_it_per_s": ("it_per_s", float("nan")),
    "fine_tune_device": ("device", ""),
}


def build_summary(score_files: list[str | Path], verdict_files: list[str | Path],
                  scales: dict[str, int]) -> pd.DataFrame:
    scores = pd.concat([pd.read_csv(f) for f in score_files], ignore_index=True)
    means = summarize(scores)
    metrics = ("psnr_y", "ssim_y", "psnr_rgb", "flicker")
    wide = means.pivot_table(index=["video", "protocol"], columns="method", values=list(metrics))
    wide.columns = [f"{method}_{metric}" for metric, method in wide.columns]
    wide = wide.reindex(columns=[f"{m}_{k}" for k in metrics for m in METHODS]).reset_index()  # flicker may be all NaN
    verdicts = {}
    for f in verdict_files:
        verdicts[Path(f).parent.name] = json.loads(Path(f).read_text())
    wide["scale"] = wide.video.map(scales)
    wide["frames"] = wide.video.map(scores.groupby("video").frame.nunique())
    wide["d_milestone_vs_bicubic_db"] = wide.milestone_psnr_y - wide.bicubic_psnr_y
    wide["d_fine_tuned_vs_bicubic_db"] = wide.fine_tuned_psnr_y - wide.bicubic_psnr_y
    wide["d_fine_tuned_vs_milestone_db"] = wide.fine_tuned_psnr_y - wide.milestone_psnr_y
    for column, (key, missing) in VERDICT_COLUMNS.items():  # a verdict without fine-tuning has no guard fields
        wide[column] = wide.video.map(lambda v, key=key, missing=missing: verdicts.get(v, {}).get(key, missing))
    order = ["video", "protocol", "scale", "frames"]
    order += [f"{m}_{k}" for k in metrics for m in METHODS]
    order += ["d_milestone_vs_bicubic_db", "d_fine_tuned_vs_bicubic_db", "d_fine_tuned_vs_milestone_db",
              *VERDICT_COLUMNS]
    wide = wide[order]
    numeric = wide.select_dtypes("number").columns
    for protocol, group in wide.groupby("protocol", sort=False):
        overall = group[numeric].mean().to_dict()
        kept = f"{(group.kept == 'fine_tuned').sum()}/{len(group)} fine-tuned"
        overall.update(video="overall", protocol=protocol, guard_signal="", guard_reason="", kept=kept,
                       scale=float("nan"), frames=group.frames.sum())
        wide = pd.concat([wide, pd.DataFrame([overall])], ignore_index=True)
    return wide


def markdown_table(summary: pd.DataFrame) -> str:
    header = ("| video | protocol | × | frames | bicubic Y-PSNR / SSIM | milestone | fine-tuned | Δ vs bicubic | "
              "Δ vs milestone | flicker: bicubic / milestone / fine-tuned | kept (held-out gain ± s.e., signal) | "
              "fine-tune s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in summary.itertuples():
        scale = "" if pd.isna(r.scale) else f"{int(r.scale)}"
        secs = "" if pd.isna(r.fine_tune_seconds) else f"{r.fine_tune_seconds:.0f}"
        kept = r.kept if pd.isna(r.guard_gain_db) or not r.guard_signal else (
            f"{r.kept} ({r.guard_gain_db:+.3f} ± {r.guard_stderr_db:.3f}, {r.guard_signal})")
        flicker = " / ".join("–" if pd.isna(v) else f"{v:.2f}"
                             for v in (r.bicubic_flicker, r.milestone_flicker, r.fine_tuned_flicker))
        lines.append(
            f"| {r.video} | {r.protocol} | {scale} | {int(r.frames)} | "
            f"{r.bicubic_psnr_y:.2f} / {r.bicubic_ssim_y:.4f} | {r.milestone_psnr_y:.2f} / {r.milestone_ssim_y:.4f} | "
            f"{r.fine_tuned_psnr_y:.2f} / {r.fine_tuned_ssim_y:.4f} | "
            f"{r.d_fine_tuned_vs_bicubic_db:+.2f} dB | {r.d_fine_tuned_vs_milestone_db:+.2f} dB | {flicker} | {kept} | "
            f"{secs} |"
        )
    return header + "\n".join(lines) + "\n"


def plot_per_frame(score_files: list[str | Path], out_png: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = [pd.read_csv(f) for f in score_files]
    fig, axes = plt.subplots(len(tables), 1, figsize=(9, 2.6 * len(tables)), squeeze=False)
    for ax, table in zip(axes[:, 0], tables, strict=True):
        for method in METHODS:
            part = table[table.method == method].sort_values("frame")
            ax.plot(part.frame, part.psnr_y, label=method, marker="." if len(part) < 40 else None)
        ax.set_title(f"{table.video.iloc[0]} ({table.protocol.iloc[0]})", fontsize=10)
        ax.set_ylabel("Y-PSNR (dB)")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("frame")
    axes[0, 0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_gains(summary: pd.DataFrame, out_png: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary[summary.video != "overall"]
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(rows) + 2), 3.5))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], rows.d_milestone_vs_bicubic_db, 0.4, label="milestone − bicubic")
    ax.bar([i + 0.2 for i in x], rows.d_fine_tuned_vs_bicubic_db, 0.4, label="fine-tuned − bicubic")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(list(x), rows.video, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("Y-PSNR gain (dB)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_report(score_files: list[str | Path], verdict_files: list[str | Path], scales: dict[str, int],
                 out_csv: str | Path, out_md: str | Path, out_frames_png: str | Path, out_gains_png: str | Path,
                 border: int = 0, degradation: str = "BI") -> pd.DataFrame:
    summary = build_summary(score_files, verdict_files, scales)
    with atomic_output(out_csv) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.4f")
    protocol = PROTOCOL.format(border=border, degradation=degradation, kernel=KERNELS[degradation])
    text = ("# videnhance report\n\n" + markdown_table(summary) + "\n" + protocol
            + "\n\n'kept' is the guard's verdict: the fine-tuned model is delivered only if it beat the base model "
            "on pairs made from the video's held-out frames: its mean Y-PSNR gain per held-out frame ± standard error, "
            "on the signal that decided (near_scale: the base model's output for held-out frames, shrunk slightly, → "
            "that degraded: pairs at the scale of use; frame: held-out frame degraded ×scale → frame). "
            "Each video's verdict.json has both signals, every round, and the reason.\n")
    atomic_write_text(out_md, text)
    plot_per_frame(score_files, out_frames_png)
    plot_gains(summary, out_gains_png)
    log.info("\n%s", markdown_table(summary))
    return summary
