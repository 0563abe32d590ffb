"""Benchmark rows: what a measurement found, printed as a table and appended to a CSV."""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("benchmark", "measure", "size", "scale", "device", "frames", "seconds", "fps", "ratio",
           "peak_rss_mb", "peak_gpu_mb")


@dataclass
class Row:
    benchmark: str
    measure: str
    size: str
    scale: int
    device: str
    frames: int
    seconds: float
    fps: float
    ratio: float | None = None
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None
    reference: str = ""  # what `ratio` divides by (table only, not a CSV column)
    cpu_seconds: float | None = None  # CPU time of every process involved (table only)
    note: str = ""  # e.g. the RSS split between Python and ffmpeg (table only)

    def csv_values(self) -> list:
        out = []
        for name in COLUMNS:
            value = getattr(self, name)
            if value is None:
                out.append("")
            elif isinstance(value, float):
                out.append(f"{value:.4g}" if name in ("ratio",) else f"{value:.3f}".rstrip("0").rstrip("."))
            else:
                out.append(value)
        return out


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1280x720, not {text!r}") from None
    if w < 2 or h < 2:
        raise argparse.ArgumentTypeError(f"size {text!r} is too small")
    return w, h


def size_text(w: int, h: int) -> str:
    return f"{w}x{h}"


def fps_of(frames: int, seconds: float) -> float:
    return frames / seconds if seconds > 0 else float("nan")


def print_table(rows: list[Row], out=None, title: str = "") -> None:
    out = out or sys.stdout
    header = ["measure", "size", "×", "device", "frames", "seconds", "fps", "ratio", "vs", "rss MB", "gpu MB",
              "cpu ms/frame", "note"]
    body = [[r.measure, r.size, str(r.scale), r.device, str(r.frames), f"{r.seconds:.2f}",
             f"{r.fps:.2f}" if r.fps >= 1 else f"{r.fps:.3g}",
             "" if r.ratio is None else f"{r.ratio:.3f}", r.reference,
             "" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f}",
             "" if r.peak_gpu_mb is None else f"{r.peak_gpu_mb:.0f}",
             "" if r.cpu_seconds is None else f"{1000 * r.cpu_seconds / max(r.frames, 1):.1f}", r.note] for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    if title:
        print(f"\n{title}", file=out)
    for line in [header, *body]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip(), file=out)


def write_csv(rows: list[Row], path: str | Path) -> None:
    """Append rows; write the header only into a new or empty file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(row.csv_values())


def machine_line() -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"machine: {platform.node()}, {os.cpu_count()} CPU cores, load average {load}, "
            f"python {platform.python_version()}")


