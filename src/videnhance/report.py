"""The report: one table per run (summary.csv / .md / .html) and plots, from every video's scores.

It accounts for every input: after a failed run (`runs.outcomes`) the videos that finished are
scored as usual and the others are listed with the step that failed and its one-line error. It
reads at 1000 videos: the HTML table sorts and filters, the run's plot shows distributions (gains,
gain against frame size and motion), and each video's own plots are made by `evaluate`
(`plot_per_frame`), not one giant figure here."""

from __future__ import annotations

import html
import json
import logging
import os
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from .files import atomic_output, atomic_write_text
from .layout import Results, VideoFiles
from .runs import Outcome, failed_jobs, outcomes
from .scores import ALL_METHODS, METRICS, methods_in, summarize
from .verdict import Verdict

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


VERDICT_COLUMNS = {  # summary column: (`Verdict` attribute, value when it has none)
    "kept": ("kept", ""), "guard_signal": ("signal", ""), "guard_gain_db": ("gain_db", float("nan")),
    "guard_stderr_db": ("gain_stderr_db", float("nan")), "guard_reason": ("reason", ""),
    "fine_tune_seconds": ("seconds", float("nan")), "fine_tune_it_per_s": ("it_per_s", float("nan")),
    "fine_tune_device": ("device", ""),
}


def _verdict_value(verdict: Verdict | None, key: str, missing):
    value = getattr(verdict, key) if verdict is not None else None
    return missing if value is None else value


def _read_scores(score_files: list[str | Path]) -> pd.DataFrame:
    return pd.concat([pd.read_csv(f) for f in score_files], ignore_index=True)


def read_verdicts(verdict_files: list[str | Path]) -> dict[str, Verdict]:
    """Each video's verdict, by video (the name of the folder its verdict.json is in)."""
    return {Path(f).parent.name: Verdict.read(f) for f in verdict_files}


def build_summary(score_files: list[str | Path], verdicts: dict[str, Verdict], scales: dict[str, int],
                  metas: dict[str, str | Path] | None = None, outcomes: list[Outcome] | None = None) -> pd.DataFrame:
    """One row per scored video and protocol, one 'overall' row per protocol (the mean over the
    clips), and with `outcomes` one row for each video that did not finish (status, failed step,
    error, log). `verdicts`: `read_verdicts`; `metas`: each video's meta.json, for its frame size."""
    scores = _read_scores(score_files)
    methods = methods_in(scores)
    means = summarize(scores)
    wide = means.pivot_table(index=["video", "protocol"], columns="method", values=list(METRICS))
    wide.columns = [f"{method}_{metric}" for metric, method in wide.columns]
    wide = wide.reindex(columns=[f"{m}_{k}" for k in METRICS for m in methods]).reset_index()  # flicker may be all NaN
    sizes = {v: json.loads(Path(p).read_text()) for v, p in (metas or {}).items() if Path(p).is_file()}
    wide["status"] = "done"
    wide["scale"] = wide.video.map(scales)
    wide["frames"] = wide.video.map(scores.groupby("video").frame.nunique())
    wide["width"] = wide.video.map(lambda v: sizes.get(v, {}).get("width", float("nan")))
    wide["height"] = wide.video.map(lambda v: sizes.get(v, {}).get("height", float("nan")))
    wide["motion_px"] = wide.video.map(means.groupby("video").motion.mean())
    wide["d_milestone_vs_bicubic_db"] = wide.milestone_psnr_y - wide.bicubic_psnr_y
    wide["d_fine_tuned_vs_bicubic_db"] = wide.fine_tuned_psnr_y - wide.bicubic_psnr_y
    wide["d_fine_tuned_vs_milestone_db"] = wide.fine_tuned_psnr_y - wide.milestone_psnr_y
    deltas = ["d_milestone_vs_bicubic_db", "d_fine_tuned_vs_bicubic_db", "d_fine_tuned_vs_milestone_db"]
    if "single_frame" in methods:  # what the neighbouring frames add to the base
        wide["d_milestone_vs_single_frame_db"] = wide.milestone_psnr_y - wide.single_frame_psnr_y
        deltas.append("d_milestone_vs_single_frame_db")
    for column, (key, missing) in VERDICT_COLUMNS.items():  # a verdict without fine-tuning has no guard fields
        wide[column] = wide.video.map(lambda v, key=key, missing=missing: _verdict_value(verdicts.get(v), key, missing))
    order = ["video", "status", "protocol", "scale", "frames", "width", "height", "motion_px"]
    order += [f"{m}_{k}" for k in METRICS for m in methods]
    order += [*deltas, *VERDICT_COLUMNS, *FAILURE_COLUMNS]
    wide = wide.reindex(columns=order)
    total = len(outcomes) if outcomes else wide.video.nunique()
    numeric = wide.select_dtypes("number").columns
    overall_rows = []
    for protocol, group in wide.groupby("protocol", sort=False):
        overall = group[numeric].mean().to_dict()
        kept = f"{(group.kept == 'fine_tuned').sum()}/{len(group)} fine-tuned"
        overall.update(video="overall", status=f"{len(group)} of {total} videos", protocol=protocol, guard_signal="",
                       guard_reason="", kept=kept, scale=float("nan"), frames=group.frames.sum(),
                       width=float("nan"), height=float("nan"))
        overall_rows.append(overall)
    failed = [{"video": o.video, "status": o.status, "protocol": "", "failed_step": o.step, "error": o.error,
               "log": o.log} for o in outcomes or () if o.status != "done"]
    return pd.concat([wide, pd.DataFrame(overall_rows, columns=order), pd.DataFrame(failed, columns=order)],
                     ignore_index=True)


FAILURE_COLUMNS = ("failed_step", "error", "log")
LABELS = {"bicubic": "bicubic", "single_frame": "single-frame milestone", "milestone": "milestone",
          "fine_tuned": "fine-tuned"}


def _scored(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary.status == "done"]


def _not_done(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[(summary.status != "done") & (summary.video != "overall")]


def markdown_table(summary: pd.DataFrame) -> str:
    """The scored videos and the overall rows; then, when some did not finish, their own table."""
    methods = [m for m in ALL_METHODS if f"{m}_psnr_y" in summary]
    single = "single_frame" in methods
    heads = ["video", "protocol", "×", "frames", *(f"{LABELS[m]} Y-PSNR / SSIM" for m in methods), "Δ vs bicubic",
             "Δ vs milestone", *(["Δ milestone vs single-frame"] if single else []),
             f"flicker: {' / '.join(LABELS[m] for m in methods)}", "kept (held-out gain ± s.e., signal)", "fine-tune s"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in summary[(summary.status == "done") | (summary.video == "overall")].to_dict("records"):
        secs = "" if pd.isna(r["fine_tune_seconds"]) else f"{r['fine_tune_seconds']:.0f}"
        kept = r["kept"] if pd.isna(r["guard_gain_db"]) or not r["guard_signal"] else (
            f"{r['kept']} ({r['guard_gain_db']:+.3f} ± {r['guard_stderr_db']:.3f}, {r['guard_signal']})")
        name = r["video"] if r["video"] != "overall" else f"overall ({r['status']})"
        scale = "" if pd.isna(r["scale"]) else f"{int(r['scale'])}"
        cells = [_md_cell(name), r["protocol"], scale, f"{int(r['frames'])}"]
        cells += ["–" if pd.isna(r[f"{m}_psnr_y"]) else f"{r[f'{m}_psnr_y']:.2f} / {r[f'{m}_ssim_y']:.4f}"
                  for m in methods]
        deltas = ["d_fine_tuned_vs_bicubic_db", "d_fine_tuned_vs_milestone_db"]
        cells += ["–" if pd.isna(r[d]) else f"{r[d]:+.2f} dB"
                  for d in deltas + (["d_milestone_vs_single_frame_db"] if single else [])]
        cells.append(" / ".join("–" if pd.isna(r[f"{m}_flicker"]) else f"{r[f'{m}_flicker']:.2f}" for m in methods))
        cells += [kept, secs]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    missing = _not_done(summary)
    if len(missing):
        total = len(summary[summary.video != "overall"].video.unique())
        text += (f"\n## Videos that did not finish ({len(missing)} of {total})\n\n"
                 "| video | status | step | error | log |\n|---|---|---|---|---|\n")
        text += "".join(f"| {_md_cell(r.video)} | {r.status} | {r.failed_step or '–'} | {_md_cell(r.error)} | "
                        f"{_md_cell(r.log) if r.log else '–'} |\n" for r in missing.itertuples())
    return text


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def plot_per_frame(scores: pd.DataFrame, out_png: str | Path) -> None:
    """One video's Y-PSNR per scored frame, every method (made by `evaluate`, one file per video)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    for method in methods_in(scores):
        part = scores[scores.method == method].sort_values("frame")
        ax.plot(part.frame, part.psnr_y, label=LABELS[method], marker="." if len(part) < 40 else None)
    ax.set_title(f"{scores.video.iloc[0]} ({scores.protocol.iloc[0]})", fontsize=10)
    ax.set_xlabel("frame")
    ax.set_ylabel("Y-PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


BARS_UP_TO = 30  # per-video bars up to this many videos; distributions above


def plot_gains(summary: pd.DataFrame, out_png: str | Path) -> None:
    """The run at a glance, for 3 videos or 3000: the gains over bicubic (a bar per video up to
    `BARS_UP_TO` videos, else their histograms), and the fine-tuned gain against the frame size
    and against the ground truth's motion (benchmark videos)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _scored(summary)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    series = {"milestone − bicubic": rows.d_milestone_vs_bicubic_db,
              "fine-tuned − bicubic": rows.d_fine_tuned_vs_bicubic_db}
    if len(rows) <= BARS_UP_TO:
        x = range(len(rows))
        for k, (label, values) in enumerate(series.items()):
            ax.bar([i - 0.2 + 0.4 * k for i in x], values, 0.4, label=label)
        ax.set_xticks(list(x), rows.video, rotation=20, ha="right", fontsize=7)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel("Y-PSNR gain (dB)")
    else:
        for label, values in series.items():
            ax.hist(values.dropna(), bins=min(60, max(10, len(rows) // 10)), alpha=0.6, label=label)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("Y-PSNR gain (dB)")
        ax.set_ylabel("videos")
    ax.set_title(f"gain over bicubic, {len(rows)} videos", fontsize=10)
    ax.legend(fontsize=8)
    pixels = rows.width * rows.height
    for ax, x, label in ((axes[1], pixels, "source frame size (pixels)"),
                         (axes[2], rows.motion_px, "ground-truth motion (px per frame)")):
        for protocol, part in rows.groupby("protocol", sort=False):
            ax.scatter(x[part.index], part.d_fine_tuned_vs_bicubic_db, s=12, alpha=0.7, label=protocol)
        if x.notna().any() and (x > 0).all() and x.max() > 10 * x.min():
            ax.set_xscale("log")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlabel(label)
        ax.set_ylabel("fine-tuned − bicubic (dB)")
        ax.legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


HTML_SCRIPT = """
const sortable = Array.from(document.querySelectorAll('table.sortable'));
document.getElementById('filter').addEventListener('input', e => {
  const words = e.target.value.toLowerCase().split(/\\s+/).filter(Boolean);
  for (const table of sortable) for (const r of table.tBodies[0].rows)
    r.hidden = !words.every(w => r.textContent.toLowerCase().includes(w));
});
for (const table of sortable) {
  const rows = () => Array.from(table.tBodies[0].rows);
  Array.from(table.tHead.rows[0].cells).forEach((th, col) => th.addEventListener('click', () => {
    const up = th.dataset.order !== 'up';
    for (const other of table.tHead.rows[0].cells) delete other.dataset.order;
    th.dataset.order = up ? 'up' : 'down';
    const key = r => { const v = r.cells[col].dataset.v; return v === undefined ? r.cells[col].textContent : +v; };
    const sorted = rows().sort((a, b) => { const x = key(a), y = key(b);
      const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      return up ? c : -c; });
    for (const r of sorted) table.tBodies[0].appendChild(r);
  }));
}
const openTarget = () => { const d = document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (d && d.tagName === 'DETAILS') d.open = true; };
window.addEventListener('hashchange', openTarget);
openTarget();
"""
HTML_STYLE = ("body{font:13px sans-serif;margin:1em;max-width:100em}table{border-collapse:collapse;margin:0.5em 0}"
              "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}"
              "td:first-child,td.t{text-align:left}td.why,td:first-child{white-space:normal;max-width:40em}"
              "td:first-child{max-width:20em;overflow-wrap:anywhere}th{white-space:normal;cursor:pointer;"
              "background:#eee;position:sticky;top:0}th[data-order=up]:after{content:' ▲'}"
              "th[data-order=down]:after{content:' ▼'}tr.failed{background:#fdd}tr.overall{font-weight:bold}"
              "#filter{width:30em;margin:0.5em 0}p.headline{font-size:15px;margin:0.3em 0}"
              "details{margin:1em 0}details table{font-size:12px}details.video img,details.video video{max-width:100%;"
              "display:block;margin:0.3em 0}details.video>summary{font-size:14px;font-weight:bold}")

# the compact table: (heading, summary column, decimals: None for text)
COMPACT = [
    ("video", "video", None), ("×", "scale", 0), ("frames", "frames", 0),
    ("bicubic Y-PSNR (dB)", "bicubic_psnr_y", 2), ("base Y-PSNR (dB)", "milestone_psnr_y", 2),
    ("delivered Y-PSNR (dB)", "fine_tuned_psnr_y", 2), ("Δ vs base (dB)", "d_fine_tuned_vs_milestone_db", 2),
    ("Δ vs bicubic (dB)", "d_fine_tuned_vs_bicubic_db", 2), ("delivered SSIM", "fine_tuned_ssim_y", 4),
    ("flicker (levels of 255)", "fine_tuned_flicker", 2), ("kept", "kept", None), ("status", "status", None),
]
OPEN_UP_TO = 10  # videos whose sections open with the page; above that they open when their row's link is followed


def headline(summary: pd.DataFrame) -> list[str]:
    """One sentence per protocol: how many clips, and by how much what was delivered beat the base
    model and bicubic on average (Y-PSNR); then one for the videos that did not finish."""
    lines = []
    scored = _scored(summary)
    total = len(summary[summary.video != "overall"].video.unique())
    protocols = sorted(scored.protocol.unique(), key=lambda p: p != "ground truth")  # the unbiased measure first
    for protocol in protocols:
        group = scored[scored.protocol == protocol]
        n, fine = len(group), int((group.kept == "fine_tuned").sum())
        noun = "ground-truth clip" if protocol == "ground truth" else "self-validated clip"
        kept = f"{fine} of {n} fine-tuned" + ("" if fine == n else f", {n - fine} kept the base model")
        over_base, over_bicubic = group.d_fine_tuned_vs_milestone_db.mean(), group.d_fine_tuned_vs_bicubic_db.mean()
        lines.append(f"{n} {noun}{'s' if n != 1 else ''}: delivered {over_base:+.2f} dB over the base model and "
                     f"{over_bicubic:+.2f} dB over bicubic (mean Y-PSNR; {kept}).")
    missing = _not_done(summary)
    if len(missing):
        lines.append(f"{len(missing)} of {total} videos did not finish: below, with the step and the error.")
    return lines


def _cell(value, decimals: int | None = None, signed: bool = False, cls: str = "t") -> str:
    """A table cell: empty for a missing value; a number with `decimals` (and `data-v`, the value
    it sorts by, to 7 digits so the page stays small); else escaped text."""
    if value is None or value == "" or isinstance(value, float) and pd.isna(value):
        return "<td></td>"
    if decimals is not None and isinstance(value, int | float) and not isinstance(value, bool):
        return f'<td data-v="{value:.7g}">{value:{"+" if signed else ""}.{decimals}f}</td>'
    return f'<td class="{cls}">{html.escape(str(value))}</td>'


def _href(path: str | Path, page_dir: Path) -> str:
    """`path` relative to the page, URL-quoted and escaped for an attribute: the report folder
    can be copied with the results or served as it is."""
    return html.escape(quote(Path(os.path.relpath(Path(path).resolve(), page_dir.resolve())).as_posix()), quote=True)


def _anchors(summary: pd.DataFrame) -> dict[str, str]:
    """The id of each scored video's section, which its row in the compact table links to."""
    return {video: f"video-{i}" for i, video in enumerate(_scored(summary).video)}


def _compact_html(summary: pd.DataFrame, anchors: dict[str, str]) -> str:
    columns = [(h, c, d) for h, c, d in COMPACT if c in summary and summary[c].notna().any()]
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _c, _d in columns)
    body = []
    for r in summary[(summary.status == "done") | (summary.video == "overall")].to_dict("records"):
        overall = r["video"] == "overall"
        if overall:  # which protocol's mean
            first = _cell(f"overall, {r['protocol']}")
        elif r["video"] in anchors:  # the name links to the video's section below
            first = f'<td class="t"><a href="#{anchors[r["video"]]}">{html.escape(str(r["video"]))}</a></td>'
        else:
            first = _cell(r["video"])
        cells = "".join(_cell(r[c], d, signed=h.startswith("Δ")) for h, c, d in columns[1:])
        body.append(f'<tr class="{"overall" if overall else ""}">{first}{cells}</tr>')
    return (f"<table id='summary' class='sortable'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _failed_html(summary: pd.DataFrame, page_dir: Path) -> str:
    missing = _not_done(summary)
    if not len(missing):
        return ""
    rows = []
    for r in missing.itertuples():
        link = "<td>–</td>"
        if isinstance(r.log, str) and r.log:
            link = f'<td class="t"><a href="{_href(r.log, page_dir)}">{html.escape(Path(r.log).name)}</a></td>'
        rows.append(f'<tr class="failed">{_cell(r.video)}{_cell(r.status)}{_cell(r.failed_step or "–")}'
                    f'{_cell(r.error, cls="t why")}{link}</tr>')
    return ("<h2>Videos that did not finish</h2><table id='failed' class='sortable'><thead><tr><th>video</th>"
            "<th>status</th><th>step</th><th>error</th><th>log</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _full_html(summary: pd.DataFrame) -> str:
    """Every column of the CSV, as named there: floats to 4 decimals below 10, else 2."""
    columns = [c for c in summary.columns if summary[c].notna().any() and (summary[c].astype(str) != "").any()]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in summary.to_dict("records"):
        kind = "overall" if r["video"] == "overall" else ("failed" if r["status"] != "done" else "")
        cells = "".join(_cell(v, (4 if abs(v) < 10 else 2) if isinstance(v, float) else 0) for v in map(r.get, columns))
        body.append(f'<tr class="{kind}">{cells}</tr>')
    return (f"<table id='full' class='sortable'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _gain(signal: dict | None) -> str:
    if not signal:
        return "–"
    return f"{signal['gain_db']:+.3f} ± {signal['stderr_db']:.3f}"


def _rounds_html(verdict: Verdict) -> str:
    """The guard's rounds: the rate, both held-out signals, kept or undone, and why."""
    if not verdict.round_report:
        return f"<p>{html.escape(verdict.reason or 'no fine-tuning rounds')}</p>"
    rows = []
    for r in verdict.round_report:
        signals = r.get("signals", {})
        rows.append(f"<tr>{_cell(r.get('round'), 0)}<td>{r.get('lr', '–'):.2g}</td>"
                    f"<td>{_gain(signals.get('near_scale'))}</td><td>{_gain(signals.get('frame'))}</td>"
                    f"{_cell('kept' if r.get('kept') else 'undone')}{_cell(r.get('guard', ''), cls='t why')}</tr>")
    return ("<table class='rounds'><thead><tr><th>round</th><th>rate</th><th>near-scale gain (dB ± s.e.)</th>"
            "<th>frame-pair gain (dB ± s.e.)</th><th>guard</th><th>reason</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table><p>{html.escape(verdict.reason)}</p>")


def _videos_html(summary: pd.DataFrame, anchors: dict[str, str], videos: dict[str, VideoFiles],
                 verdicts: dict[str, Verdict], page_dir: Path) -> str:
    """One section per scored video: its crops, its per-frame plot, the side-by-side video playing
    in the page (and the file beside it), and the guard's rounds. Only files that exist are shown
    (a video that failed after scoring has no side-by-side). Images load lazily and videos only
    when played, so the page opens as fast at 1000 videos as at 3."""
    scored = _scored(summary)
    opened = " open" if len(scored) <= OPEN_UP_TO else ""
    sections = []
    for r in scored.to_dict("records"):
        files, name = videos.get(r["video"]), html.escape(str(r["video"]))
        if files is None:
            continue
        parts = []
        if Path(files.crops).is_file():
            parts.append(f"<img src='{_href(files.crops, page_dir)}' loading='lazy' alt='crops of {name}: ground "
                         "truth or input, bicubic, base model, fine-tuned'>")
        if Path(files.per_frame).is_file():
            parts.append(f"<img src='{_href(files.per_frame, page_dir)}' loading='lazy' "
                         f"alt='per-frame Y-PSNR of {name}'>")
        if Path(files.side_by_side).is_file():
            href = _href(files.side_by_side, page_dir)
            parts.append(f"<div><video controls preload='none' src='{href}'></video><br>"
                         f"<a href='{href}'>side_by_side.mp4</a> (input upscaled by bicubic | enhanced)</div>")
        if r["video"] in verdicts:
            parts.append(_rounds_html(verdicts[r["video"]]))
        delta = r.get("d_fine_tuned_vs_milestone_db")
        title = f"{name}: {html.escape(str(r['kept']))}" + ("" if pd.isna(delta) else f", {delta:+.2f} dB vs base")
        sections.append(f"<details class='video' id='{anchors[r['video']]}'{opened}><summary>{title}</summary>"
                        f"{''.join(parts)}</details>")
    return "<h2>Videos</h2>" + "".join(sections) if sections else ""


def write_html(summary: pd.DataFrame, out_html: str | Path, notes: str, bases: list[dict] | None = None,
               csv_name: str = "summary.csv", videos: dict[str, VideoFiles] | None = None,
               verdicts: dict[str, Verdict] | None = None) -> None:
    """The summary as one self-contained page (no downloads): a sentence per protocol, a compact
    table (what was delivered against the base model and bicubic, with units), the videos that did
    not finish with a link to each one's log, and every column of `csv_name` behind a toggle. Click
    a heading to sort by it; type in the box to keep the rows holding every word. `bases`
    (`base_rows`): the base models, as a table under it. `videos`: each scored video's folder, and
    `verdicts` (`read_verdicts`), for its section (crops, per-frame plot, side-by-side video, the
    guard's rounds)."""
    page_dir = Path(out_html).parent
    anchors = _anchors(summary) if videos else {}
    sentences = "".join(f"<p class='headline'>{html.escape(line)}</p>" for line in headline(summary))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>videnhance report</title>"
            f"<style>{HTML_STYLE}</style></head><body><h1>videnhance report</h1>{sentences}"
            f"<input id='filter' placeholder='filter: words every shown row must contain'>"
            f"{_compact_html(summary, anchors)}{_failed_html(summary, page_dir)}"
            f"<details><summary>Every column (as in <a href='{html.escape(csv_name)}'>{html.escape(csv_name)}</a>)"
            f"</summary>{_full_html(summary)}</details>"
            f"{_videos_html(summary, anchors, videos or {}, verdicts or {}, page_dir)}"
            f"{_bases_html(bases or [])}<p>{html.escape(notes)}</p><script>{HTML_SCRIPT}</script></body></html>\n")
    atomic_write_text(out_html, page)


BASE_COLUMNS = ("scale", "base model", "network", "parameters", "trained by", "licence")


def base_rows(bases: list[str | Path]) -> list[dict]:
    """Which base model each scale started from: file, network, size, who trained it, licence."""
    from .models import describe_base

    rows = []
    for path in bases:
        b = describe_base(path)
        rows.append(dict(zip(BASE_COLUMNS, (f"×{b['scale']}", b["source"], b["network"], f"{b['parameters']:,}",
                                            b["trained_by"], b["licence"] or "not recorded in the file"), strict=True)))
    return rows


def bases_table(rows: list[dict]) -> str:
    """The base models (`base_rows`) as a markdown section."""
    lines = ["| " + " | ".join(BASE_COLUMNS) + " |", "|" + "---|" * len(BASE_COLUMNS)]
    lines += ["| " + " | ".join(_md_cell(str(r[c])) for c in BASE_COLUMNS) + " |" for r in rows]
    return "## Base models\n\n" + "\n".join(lines) + "\n"


def _bases_html(rows: list[dict]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in BASE_COLUMNS)
    body = "".join("<tr>" + "".join(f'<td class="t">{html.escape(str(r[c]))}</td>' for c in BASE_COLUMNS) + "</tr>"
                   for r in rows)
    return f"<h2>Base models</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(score_files: list[str | Path], verdict_files: list[str | Path], *, scales: dict[str, int],
                 out_csv: str | Path, out_md: str | Path, out_html: str | Path, out_gains_png: str | Path,
                 out_run: str | Path, border: int = 0, degradation: str = "BI",
                 metas: dict[str, str | Path] | None = None, outcomes: list[Outcome] | None = None,
                 bases: list[str | Path] | None = None) -> pd.DataFrame:
    """Write the summary (csv, md, html), the run's plot and `out_run`: run.json, a record that the
    run was complete. With `outcomes` where some video did not finish, run.json is removed instead,
    so the workflow's `report` rule runs again once every video has its scores."""
    verdicts = read_verdicts(verdict_files)
    summary = build_summary(score_files, verdicts, scales, metas, outcomes)
    with atomic_output(out_csv) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.4f")
    protocol = PROTOCOL.format(border=border, degradation=degradation, kernel=KERNELS[degradation])
    guard = ("'kept' is the guard's verdict: the fine-tuned model is delivered only if it beat the base model "
             "on pairs made from the video's held-out frames: its mean Y-PSNR gain per held-out frame ± standard "
             "error, on the signal that decided (near_scale: the base model's output for held-out frames, shrunk "
             "slightly, → that degraded: pairs at the scale of use; frame: held-out frame degraded ×scale → frame). "
             "Each video's verdict.json has both signals, every round, and the reason.")
    notes = protocol + "\n\n" + guard
    if "single_frame_psnr_y" in summary:
        notes += ("\n\nThe base is a multi-frame model. 'single-frame milestone' is the single-frame network it is "
                  "built around, run on each frame alone (the guard's third choice): 'Δ milestone vs single-frame' is "
                  "what the neighbouring frames add before any fine-tuning.")
    missing = _not_done(summary)
    rows = base_rows(bases or [])
    table = markdown_table(summary)
    base_md = "\n" + bases_table(rows) if rows else ""
    atomic_write_text(out_md, "# videnhance report\n\n" + table + base_md + "\n" + notes + "\n")
    videos = {Path(f).parent.name: VideoFiles(str(Path(f).parent)) for f in verdict_files}
    write_html(summary, out_html, notes, rows, Path(out_csv).name, videos, verdicts)
    plot_gains(summary, out_gains_png)
    done = int((summary.status == "done").sum())
    if len(missing):
        Path(out_run).unlink(missing_ok=True)
    else:
        atomic_write_text(out_run, json.dumps({"complete": True, "videos": done}, indent=2) + "\n")
    log.info("\n%s", table)
    return summary


def report_after_failure(videos: list[str], results: str, snakemake_logs: str | Path | list, pending: set[str] | None,
                         scales: dict[str, int], border: int = 0, degradation: str = "BI") -> str:
    """The workflow's `onerror`: the report of the videos that finished, listing the others with
    the step that failed and its error, under results/report/ where the full report goes. Returns
    the line to print. Without any finished video there is nothing to score, and no report."""
    logs = [snakemake_logs] if isinstance(snakemake_logs, str | Path) else list(snakemake_logs or [])
    failed = [job for path in logs if Path(path).is_file() for job in failed_jobs(path)]
    layout = Results(results)
    files = {v: layout.video(v) for v in videos}
    finished = {v for v, f in files.items() if Path(f.scores()).is_file() and Path(f.verdict).is_file()}
    result = outcomes(videos, results, failed, pending, finished)
    done = [o.video for o in result if o.status == "done"]
    if not done:
        return f"videnhance: no video finished, so there is no report ({len(videos)} failed or not run)"
    Path(layout.report("")).mkdir(parents=True, exist_ok=True)
    write_report([files[v].scores() for v in done], [files[v].verdict for v in done],
                 scales={v: scales[v] for v in done}, out_csv=layout.report("summary.csv"),
                 out_md=layout.report("summary.md"), out_html=layout.report("summary.html"),
                 out_gains_png=layout.report("gains.png"), out_run=layout.report("run.json"),
                 border=border, degradation=degradation,
                 metas={v: files[v].meta for v in done}, outcomes=result,
                 bases=[p for p in sorted({layout.base(scales[v]) for v in done}) if Path(p).is_file()])
    counts = {s: sum(o.status == s for o in result) for s in ("failed", "not run")}
    return (f"videnhance: report of {len(done)} of {len(videos)} videos ({counts['failed']} failed, "
            f"{counts['not run']} not run): {layout.report('summary.md')}")
