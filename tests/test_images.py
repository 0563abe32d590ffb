"""The single-image check (videnhance.images) on tiny synthetic sets and, when present, Set5."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from videnhance.cli import main
from videnhance.degrade import eval_degrade
from videnhance.images import (
    ImageSetError,
    evaluate_image_set,
    markdown_table,
    register,
    resolve_set,
    summarize,
    write_markdown,
)
from videnhance.infer import run_model
from videnhance.metrics import score_frame
from videnhance.models import ModelFileError

from .helpers import photo, shared_data, tiny_model

# name → (photo, top, left, height, width); camera is grayscale and is stored as a one-channel PNG
CROPS = {"astro": ("astronaut", 100, 150, 64, 48), "coffee": ("coffee", 120, 200, 48, 64),
         "camera": ("camera", 200, 200, 40, 40)}


def make_set(root: Path, scale: int = 4, with_lr: bool = True) -> Path:
    """root/HR/*.png and, with_lr, root/LR_bicubic_x<scale>/*.png (HR = scale × LR)."""
    (root / "HR").mkdir(parents=True)
    if with_lr:
        (root / f"LR_bicubic_x{scale}").mkdir()
    for name, (source, top, left, h, w) in CROPS.items():
        hr = photo(source)[top : top + h, left : left + w]
        Image.fromarray(hr).save(root / "HR" / f"{name}.png")
        if with_lr:
            rgb = np.repeat(hr[..., None], 3, axis=2) if hr.ndim == 2 else hr
            lr = eval_degrade(rgb[None], scale, "BI")[0]
            Image.fromarray(lr[..., 0] if hr.ndim == 2 else lr).save(root / f"LR_bicubic_x{scale}" / f"{name}.png")
    return root


def model_file(path: Path, scale: int = 4) -> Path:
    """An untrained SRResNet: its tail starts at zero, so it is exactly bicubic."""
    tiny_model(scale, path=path)
    return path


@pytest.fixture
def image_set(tmp_path: Path) -> Path:
    return make_set(tmp_path / "Tiny")


@pytest.fixture
def untrained(tmp_path: Path) -> Path:
    return model_file(tmp_path / "untrained_x4.pt")


def test_one_row_per_image_and_method_with_finite_scores(image_set, untrained):
    table = evaluate_image_set(untrained, image_set / "HR")
    assert len(table) == len(CROPS) * 2
    assert table.groupby("image").method.apply(sorted).to_dict() == {n: ["bicubic", "model"] for n in CROPS}
    assert set(table["set"]) == {"Tiny"}  # HR/'s parent names the set
    assert set(table.lr_source) == {"given"} and set(table.scale) == {4}
    assert np.isfinite(table[["psnr_y", "ssim_y", "psnr_rgb"]].to_numpy()).all()
    assert table.ssim_y.between(0, 1).all()


def test_untrained_srresnet_scores_as_bicubic(image_set, untrained):
    wide = evaluate_image_set(untrained, image_set / "HR").pivot(index="image", columns="method", values="psnr_y")
    assert (wide.model - wide.bicubic).abs().max() < 0.01


def test_border_defaults_to_the_scale_and_is_what_gets_cropped(image_set):
    default = evaluate_image_set(None, image_set / "HR")
    no_border = evaluate_image_set(None, image_set / "HR", border=0)
    assert set(default.border) == {4} and set(no_border.border) == {0}
    hr = np.array(Image.open(image_set / "HR" / "coffee.png"))
    lr = np.array(Image.open(image_set / "LR_bicubic_x4" / "coffee.png"))
    bicubic = run_model(None, lr[None], hr.shape[:2])[0]
    for table, border in ((default, 4), (no_border, 0)):
        row = table.set_index("image").loc["coffee"]
        assert row.psnr_y == pytest.approx(score_frame(hr, bicubic, border)["psnr_y"], abs=1e-9)
    # bicubic is worst at the edges, so ignoring them scores higher
    assert (default.psnr_y.to_numpy() > no_border.psnr_y.to_numpy()).all()


def test_grayscale_images_are_scored_as_rgb(image_set):
    assert Image.open(image_set / "HR" / "camera.png").mode == "L"
    row = evaluate_image_set(None, image_set / "HR").set_index("image").loc["camera"]
    assert np.isfinite(row.psnr_y) and np.isfinite(row.psnr_rgb)


def test_without_lr_images_they_are_made_with_torch_bicubic(tmp_path):
    hr_dir = make_set(tmp_path / "NoLR", scale=2, with_lr=False) / "HR"
    Image.fromarray(photo("astronaut")[:61, :47]).save(hr_dir / "odd.png")  # trimmed to 60×46
    table = evaluate_image_set(None, hr_dir, scale=2)
    assert set(table.lr_source) == {"torch-BI"} and set(table.border) == {2}
    assert len(table) == len(CROPS) + 1


def test_lr_must_match_hr(image_set, untrained):
    (image_set / "LR_bicubic_x4" / "astro.png").unlink()
    with pytest.raises(ImageSetError, match="no LR image"):
        evaluate_image_set(untrained, image_set / "HR")
    big = np.zeros((40, 40, 3), np.uint8)  # ×4 would be 160×160, larger than the HR image
    Image.fromarray(big).save(image_set / "LR_bicubic_x4" / "astro.png")
    with pytest.raises(ImageSetError, match="smaller than"):
        evaluate_image_set(untrained, image_set / "HR")


def test_a_model_of_another_scale_is_refused(image_set, tmp_path):
    with pytest.raises(ModelFileError, match="×2 model"):
        evaluate_image_set(model_file(tmp_path / "x2.pt", scale=2), image_set / "HR", scale=4)


def test_resolve_set_accepts_the_set_or_its_hr_folder(image_set, tmp_path):
    lr = image_set / "LR_bicubic_x4"
    assert resolve_set(image_set) == (image_set / "HR", lr)
    assert resolve_set(image_set / "HR") == (image_set / "HR", lr)
    assert resolve_set(image_set, scale=2) == (image_set / "HR", None)
    with pytest.raises(ImageSetError):
        resolve_set(tmp_path / "missing")


def test_summary_and_markdown(image_set, untrained, tmp_path):
    table = pd.concat([evaluate_image_set(untrained, image_set / "HR"),
                       evaluate_image_set(untrained, image_set / "HR", set_name="Again")])
    summary = summarize(table)
    assert len(summary) == 4 and set(summary.images) == {len(CROPS)}
    bicubic = summary.set_index(["set", "method"]).loc[("Tiny", "bicubic")]
    assert bicubic.psnr_y == pytest.approx(table[(table["set"] == "Tiny") & (table.method == "bicubic")].psnr_y.mean())
    text = markdown_table(summary)
    assert text.count("\n") == 4 and "| Tiny | 3 | 4 | 4 | given |" in text and "+0.00 dB" in text
    written = write_markdown(table, tmp_path / "out.md", untrained)
    assert (tmp_path / "out.md").read_text() == written
    assert "## Per image" in written and "| Again | camera |" in written


def test_sr_images_command_writes_csv_and_markdown(image_set, untrained, tmp_path, capsys):
    csv, md = tmp_path / "scores.csv", tmp_path / "scores.md"
    assert main(["sr-images", str(untrained), "--set", str(image_set), "--set", str(image_set / "HR"), "--border",
                 "0", "--device", "cpu", "--csv", str(csv), "--md", str(md)]) == 0
    scores = pd.read_csv(csv)
    assert len(scores) == 2 * len(CROPS) * 2 and set(scores.border) == {0}
    assert "| Tiny |" in capsys.readouterr().out and md.is_file()
    assert main(["sr-images", str(untrained), "--set", str(tmp_path / "missing")]) == 1  # one line, no traceback
    assert "videnhance error:" in capsys.readouterr().err


def test_register_adds_the_subcommand(image_set, untrained):
    parser = argparse.ArgumentParser(prog="videnhance")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sr-images", str(untrained), "--set", str(image_set), "--scale", "4"])
    assert args.sets == [str(image_set)] and args.border is None and args.csv is None
    assert args.func(args) == 0


def test_set5_bicubic_and_an_untrained_model(tmp_path):
    set5 = shared_data("images", "Set5")
    table = evaluate_image_set(model_file(tmp_path / "x4.pt"), set5 / "HR")
    assert len(table) == 10 and set(table.lr_source) == {"given"}
    means = table.groupby("method").psnr_y.mean()
    # published ×4 bicubic (MATLAB imresize upscaling) is 28.42 dB; torch's bicubic kernel
    # (a = -0.75, MATLAB uses -0.5) is a little sharper and scores 28.63 dB here
    assert 28.3 < means.bicubic < 28.9
    assert abs(means.model - means.bicubic) < 0.01
