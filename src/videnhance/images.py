"""Single-image check of a base model on super-resolution test sets (Set5, Set14, BSD100, …).

Before a base model is fine-tuned on videos, it should beat bicubic on the images every SR paper
reports. For each HR image of a set this scores two upscales of its LR image against it:
`bicubic` (torch bicubic, `infer.run_model(None, …)`) and `model` (the checkpoint, `infer.run_model`).

Protocol (docs/quality.md): PSNR/SSIM on Y of BT.601 (`metrics.score_frame`), plus RGB PSNR, after
rounding to 8 bits; border crop = scale by default, the usual convention for images (video
benchmarks use 0). The LR images are the set's own (`LR_bicubic_x<scale>/`, same file names,
HR = scale × LR, most likely MATLAB imresize); where a set has none, they are made from HR with
`degrade.eval_degrade` (torch bicubic with antialiasing, "BI"), and `lr_source` says which.

    videnhance sr-images results/base/x4.pt --set ../shared/data/images/Set5 --md set5.md
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import ImageSetError
from .files import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

# torch and pandas are imported where they are used: `register` runs whenever the `videnhance`
# CLI builds its parser, and `videnhance --help` should not wait for torch.
log = logging.getLogger(__name__)
METHODS = ("bicubic", "model")
COLUMNS = ["set", "image", "method", "scale", "border", "lr_source", "psnr_y", "ssim_y", "psnr_rgb"]
SCORES = ["psnr_y", "ssim_y", "psnr_rgb"]


def read_rgb(path: str | Path) -> np.ndarray:
    """uint8 RGB (H, W, 3); grayscale and palette images are expanded to three equal channels."""
    from PIL import Image

    with Image.open(path) as image:
        return np.array(image.convert("RGB"))  # a writable copy: torch.from_numpy warns on read-only


def resolve_set(folder: str | Path, scale: int = 4) -> tuple[Path, Path | None]:
    """(hr_dir, lr_dir) of a set given as its folder (`Set5/` holding `HR/` and
    `LR_bicubic_x<scale>/`) or as its HR folder. lr_dir is None where the set has no LR images."""
    folder = Path(folder)
    hr_dir = folder / "HR" if (folder / "HR").is_dir() else folder
    if not hr_dir.is_dir():
        raise ImageSetError(f"{folder}: no such image folder (give a set folder holding HR/, or an HR folder)")
    lr_dir = hr_dir.parent / f"LR_bicubic_x{scale}"  # the layout of Set5/Set14/BSD100 here
    return hr_dir, lr_dir if hr_dir.name == "HR" and lr_dir.is_dir() else None


def _set_name(hr_dir: Path) -> str:
    return hr_dir.parent.name if hr_dir.name == "HR" else hr_dir.name


def load_pair(hr_path: Path, lr_dir: Path | None, scale: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(hr, lr, lr_source) for one image. HR is trimmed bottom/right to scale × LR (sets ship it
    already trimmed); without an LR folder, LR is made from HR with torch bicubic ("BI")."""
    from .degrade import crop_to_multiple, eval_degrade

    hr = read_rgb(hr_path)
    if lr_dir is None:
        hr = crop_to_multiple(hr, scale)
        return hr, eval_degrade(hr[None], scale, "BI")[0], "torch-BI"
    lr_path = lr_dir / hr_path.name
    if not lr_path.is_file():
        raise ImageSetError(f"{hr_path}: no LR image {lr_path} (LR images must have the HR file names)")
    lr = read_rgb(lr_path)
    want_h, want_w = lr.shape[0] * scale, lr.shape[1] * scale
    if hr.shape[0] < want_h or hr.shape[1] < want_w:
        raise ImageSetError(f"{hr_path}: HR {hr.shape[1]}x{hr.shape[0]} is smaller than ×{scale} its LR "
                            f"{lr.shape[1]}x{lr.shape[0]}; is --scale right?")
    return hr[:want_h, :want_w], lr, "given"


def evaluate_image_set(model_path: str | Path | None, hr_dir: str | Path, lr_dir: str | Path | None = None,
                       scale: int = 4, border: int | None = None, device: str = "cpu",
                       set_name: str | None = None, tile: int = 0, noise: int | None = None) -> pd.DataFrame:
    """Score bicubic and the model on every image of one set; one row per image and method.

    `lr_dir=None` takes `LR_bicubic_x<scale>/` next to an `HR/` folder where it exists, else makes
    the LR images with torch bicubic. `border` (default: `scale`) pixels are ignored on each side.
    `model_path=None` scores bicubic alone. `tile` > 0 runs the model on tiles (input pixels).
    `noise`: the noise level a noise-aware SRMD base is told (`model.noise`).
    """
    import pandas as pd

    from .bases import load_base
    from .data import IMAGE_SUFFIXES
    from .infer import pick_device, run_model
    from .metrics import score_frame

    hr_dir = Path(hr_dir)
    if not hr_dir.is_dir():
        raise ImageSetError(f"{hr_dir}: no such HR folder")
    if lr_dir is None:
        lr_dir = resolve_set(hr_dir, scale)[1]
    elif not Path(lr_dir).is_dir():
        raise ImageSetError(f"{lr_dir}: no such LR folder")
    lr_dir = Path(lr_dir) if lr_dir is not None else None
    border = scale if border is None else int(border)
    name = set_name or _set_name(hr_dir)
    files = sorted(p for p in hr_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageSetError(f"{hr_dir}: no images ({sorted(IMAGE_SUFFIXES)})")
    loaded = load_base(model_path, scale=scale, noise=noise) if model_path is not None else None
    model = loaded.module if loaded is not None else None
    frames_in = loaded.frames_in if loaded is not None else 1  # a multi-frame model sees a still scene
    device = pick_device(device)

    rows = []
    for path in files:
        hr, lr, lr_source = load_pair(path, lr_dir, scale)
        outputs = {"bicubic": run_model(None, lr[None], hr.shape[:2])[0]}
        if model is not None:
            frames = lr[None] if frames_in == 1 else np.repeat(lr[None, None], frames_in, axis=1)
            outputs["model"] = run_model(model, frames, device=device, batch_size=1, tile=tile)[0]
        for method, output in outputs.items():
            rows.append({"set": name, "image": path.stem, "method": method, "scale": scale, "border": border,
                         "lr_source": lr_source, **score_frame(hr, output, border)})
        log.info("%s/%s: %s", name, path.stem,
                 ", ".join(f"{r['method']} {r['psnr_y']:.2f} dB" for r in rows[-len(outputs):]))
    return pd.DataFrame(rows, columns=COLUMNS)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per set and method: the mean of the per-image scores (the literature's per-set figure)."""
    keys = ["set", "method", "scale", "border", "lr_source"]
    grouped = table.groupby(keys, sort=False)
    return grouped[SCORES].mean().join(grouped.image.count().rename("images")).reset_index()


def markdown_table(summary: pd.DataFrame) -> str:
    """One line per set: bicubic and model Y-PSNR / SSIM and the model's gain over bicubic."""
    lines = ["| set | images | × | border | LR | bicubic Y-PSNR / SSIM | model Y-PSNR / SSIM | Δ Y-PSNR |",
             "|---|---|---|---|---|---|---|---|"]
    for (name, scale, border, lr_source), part in summary.groupby(["set", "scale", "border", "lr_source"], sort=False):
        by_method = part.set_index("method")
        cells = []
        for method in METHODS:
            row = by_method.loc[method] if method in by_method.index else None
            cells.append(f"{row.psnr_y:.2f} / {row.ssim_y:.4f}" if row is not None else "–")
        gain = (f"{by_method.loc['model', 'psnr_y'] - by_method.loc['bicubic', 'psnr_y']:+.2f} dB"
                if set(METHODS) <= set(by_method.index) else "–")
        lines.append(f"| {name} | {int(part.images.iloc[0])} | {scale} | {border} | {lr_source} | "
                     f"{cells[0]} | {cells[1]} | {gain} |")
    return "\n".join(lines) + "\n"


def per_image_markdown(table: pd.DataFrame) -> str:
    wide = table.pivot_table(index=["set", "image"], columns="method", values="psnr_y", sort=False)
    lines = ["| set | image | bicubic Y-PSNR | model Y-PSNR | Δ |", "|---|---|---|---|---|"]
    for (name, image), row in wide.iterrows():
        model = row.get("model", np.nan)
        lines.append(f"| {name} | {image} | {row['bicubic']:.2f} | {model:.2f} | {model - row['bicubic']:+.2f} |")
    return "\n".join(lines) + "\n"


def write_markdown(table: pd.DataFrame, path: str | Path, model_path: str | Path | None = None) -> str:
    """The per-set table, the per-image table and the protocol, as one markdown file."""
    text = "\n".join([
        "# Single-image check" + (f": `{model_path}`" if model_path else ""),
        "",
        markdown_table(summarize(table)),
        "Y of BT.601 (Y = 16 + 65.481R + 128.553G + 24.966B), PSNR peak 255, SSIM 11×11 Gaussian σ=1.5, "
        "float64, outputs rounded to 8 bits; `border` pixels ignored on each side. Bicubic = torch "
        "`interpolate(mode='bicubic')` of the LR image. LR `given` = the set's own LR images (HR = × LR); "
        "`torch-BI` = made from HR with torch bicubic + antialiasing.",
        "",
        "## Per image (Y-PSNR, dB)",
        "",
        per_image_markdown(table),
    ])
    atomic_write_text(path, text)
    return text


# ---------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("model", help="the model to check: a model file (e.g. results/base/x4.pt) or package:NAME "
                                      "(videnhance import-weights --list)")
    parser.add_argument("--set", dest="sets", action="append", required=True, metavar="DIR",
                        help="a test set: its folder (holding HR/ and LR_bicubic_x<scale>/) or its HR "
                             "folder; repeat for more sets")
    parser.add_argument("--scale", type=int, default=4, choices=(2, 3, 4, 8))
    parser.add_argument("--border", type=int, default=None,
                        help="pixels ignored at each border when scoring (default: the scale)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--tile", type=int, default=0, help="run the model on tiles of this many input pixels")
    parser.add_argument("--noise", type=int, default=None, choices=range(11), metavar="0-10",
                        help="a noise-aware SRMD base (package:srmd_x*): the noise level its map says (model.noise)")
    parser.add_argument("--csv", help="write the per-image scores here")
    parser.add_argument("--md", help="write the markdown tables here")
    parser.set_defaults(func=_cmd_sr_images)
    return parser


def register(subparsers) -> argparse.ArgumentParser:
    """Add `sr-images` to a CLI's subparsers (`videnhance sr-images MODEL --set DIR …`)."""
    parser = subparsers.add_parser(
        "sr-images", help="score a base model against bicubic on SR test images (Set5, Set14, …)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_arguments(parser)


def _cmd_sr_images(args: argparse.Namespace) -> int:
    import pandas as pd

    tables = []  # an ImageSetError ends the command with its one-line message (cli.main)
    for folder in args.sets:
        hr_dir, lr_dir = resolve_set(folder, args.scale)
        tables.append(evaluate_image_set(args.model, hr_dir, lr_dir, args.scale, args.border, args.device,
                                         tile=args.tile, noise=args.noise))
    table = pd.concat(tables, ignore_index=True)
    if args.csv:
        atomic_write_text(args.csv, table.to_csv(index=False))
    if args.md:
        write_markdown(table, args.md, args.model)
    print(markdown_table(summarize(table)), end="")
    return 0
