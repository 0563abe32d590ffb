"""Community checkpoints (spandrel) as bases: each allow-listed architecture trains a step and
round-trips through our model file, unsafe files are refused, size requirements pad and crop
exactly, and a community base runs the whole chain (load → fine-tune → infer → reassemble)."""

import pickle

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from videnhance import pipeline
from videnhance.community import TRAINABLE, Padded
from videnhance.config import validate_config
from videnhance.errors import ConfigError, ModelFileError
from videnhance.io import probe
from videnhance.models import load_model
from videnhance.settings import full_video_settings


def _small(arch: str) -> nn.Module:
    """A small random-weight network of each allow-listed architecture, at ×2."""
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.PLKSR import RealPLKSR
    from spandrel.architectures.RCAN import RCAN
    from spandrel.architectures.SPAN import SPAN
    from spandrel.architectures.SwinIR import SwinIR

    return {
        "ESRGAN": lambda: ESRGAN(num_filters=8, num_blocks=1, scale=2),
        "Compact": lambda: Compact(num_feat=8, num_conv=2, upscale=2),
        "SPAN": lambda: SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2),
        "SwinIR": lambda: SwinIR(upscale=2, embed_dim=12, depths=[1], num_heads=[2], window_size=4,
                                 upsampler="pixelshuffledirect"),
        "RCAN": lambda: RCAN(scale=2, n_resgroups=1, n_resblocks=1, n_feats=16),
        "PLKSR": lambda: RealPLKSR(upscaling_factor=2, dim=8, n_blocks=1),
    }[arch]()


def _safetensors(net: nn.Module, path):
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize("arch", TRAINABLE)
def test_each_allow_listed_architecture_trains_a_step_and_round_trips(tmp_path, arch):
    torch.manual_seed(0)
    net = _small(arch).eval()
    loaded = load_model(_safetensors(net, tmp_path / "w.safetensors"), arch="srresnet", scale=2)
    assert loaded.arch.name == "spandrel" and loaded.kwargs["spandrel_arch"] == arch and loaded.scale == 2
    x = torch.rand(1, 3, 16, 16)  # meets every size requirement (SwinIR's minimum is 16): no padding
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), net(x))  # the file's weights, untouched

    module = loaded.module.train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    opt = torch.optim.Adam(module.parameters(), 1e-3)
    lr, hr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 32, 32)
    loss = F.l1_loss(module(lr), hr)
    loss.backward()
    assert torch.isfinite(loss)
    grads = {n: p.grad for n, p in module.named_parameters()}
    # SPAN re-derives its eval_conv from the trained branches in eval mode: no gradient of its own
    assert all(g is not None for n, g in grads.items() if "eval_conv" not in n)
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    opt.step()
    changed = [k for k, v in module.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed, "one optimiser step changed no weight"
    with torch.no_grad():
        assert not torch.equal(module.eval()(x), net(x))  # what is delivered (eval mode) changed too

    loaded.save(tmp_path / "tuned.pt", {"stage": "test"}, module.eval())
    again = load_model(tmp_path / "tuned.pt")
    assert again.arch.name == "spandrel" and again.kwargs == loaded.kwargs
    with torch.no_grad():
        torch.testing.assert_close(again.module(x), module(x))


def test_a_pth_with_params_ema_and_prefixes_is_unwrapped(tmp_path):
    net = _small("Compact")
    torch.save({"params_ema": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "w.pth")
    loaded = load_model(tmp_path / "w.pth", arch="srresnet", scale=2)
    assert loaded.kwargs["name"] == "RealESRGAN Compact" and loaded.kwargs["parameters"] > 0


def test_unsafe_files_are_refused_with_what_to_do(tmp_path):
    net = _small("Compact")
    torch.save(net.state_dict(), tmp_path / "w.pt")  # not ours: spandrel would try torch.jit.load
    with pytest.raises(ModelFileError, match=r"w\.pt: a \.pt file that is not a videnhance model.*\.safetensors"):
        load_model(tmp_path / "w.pt", arch="srresnet", scale=2)
    (tmp_path / "code.pth").write_bytes(pickle.dumps(Padded(net, 2)))  # a pickled module: code, not weights
    with pytest.raises(ModelFileError, match=r"code\.pth: not a loadable weights file.*pickled code is refused"):
        load_model(tmp_path / "code.pth", arch="srresnet", scale=2)
    torch.save({"conv.weight": torch.zeros(3, 3, 1, 1)}, tmp_path / "other.pth")
    with pytest.raises(ModelFileError, match="spandrel does not recognise them either"):
        load_model(tmp_path / "other.pth", arch="srresnet", scale=2, kwargs={"channels": 8, "blocks": 1})


def test_scale_mismatch_names_both_scales(tmp_path):
    path = _safetensors(_small("Compact"), tmp_path / "w.safetensors")
    with pytest.raises(ModelFileError, match=r"×2 RealESRGAN Compact model, this video needs ×4"):
        load_model(path, arch="srresnet", scale=4)


class Pointwise(nn.Module):
    """A network that refuses sizes that are not multiples of 8 and computes each output pixel
    from its own input pixel only, so padding must leave the cropped output unchanged."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        assert x.shape[-2] % 8 == 0 and x.shape[-1] % 8 == 0, x.shape
        return F.interpolate(self.conv(x), scale_factor=2, mode="nearest")


@pytest.mark.parametrize("size", [(13, 17), (8, 8), (3, 5), (16, 9)])
def test_size_requirements_pad_and_crop_exactly(size):
    net = Pointwise()
    x = torch.rand(1, 3, *size)
    padded = Padded(net, 2, multiple_of=8, minimum=8)
    y = padded(x)
    assert y.shape[-2:] == (size[0] * 2, size[1] * 2)
    expected = F.interpolate(net.conv(x), scale_factor=2, mode="nearest")
    torch.testing.assert_close(y, expected)
    assert Padded(net, 2, multiple_of=8, square=True).padded_size(*size) == (max(8, -(-max(size) // 8) * 8),) * 2


def test_an_architecture_not_verified_to_train_is_for_inference_only(tmp_path):
    from spandrel.architectures.SAFMN import SAFMN

    from .helpers import make_clip

    path = _safetensors(SAFMN(dim=8, n_blocks=1, upscaling_factor=2), tmp_path / "safmn.safetensors")
    assert "SAFMN" not in TRAINABLE
    source = make_clip(tmp_path / "in.mkv", size=(32, 24), frames=6)

    def run(**fine_tune):
        tune = {"steps": 2, "steps_per_epoch": 1, "batch_size": 2, "patch": 8, **fine_tune}
        cfg = validate_config({"checkpoint": str(path), "scale": 2, "extract": {"frames": 6}, "fine_tune": tune})
        settings = full_video_settings(cfg, {"id": "in", "mode": "enhance"}).replace(device="cpu")
        return pipeline.run_video(source, tmp_path / "out.mkv", settings, tmp_path / f"work{len(fine_tune)}")

    refused = rf"{path}: SAFMN is not among the architectures verified to fine-tune.*fine_tune\.enabled: false"
    with pytest.raises(ModelFileError, match=refused):  # raised by the fine_tune step, whatever ran before
        run()
    result = run(enabled=False)
    assert load_model(result.files.model).kwargs["spandrel_arch"] == "SAFMN"
    assert result.verdict.kept == "base" and probe(tmp_path / "out.mkv").width == 64


def test_arch_spandrel_needs_a_checkpoint():
    with pytest.raises(ConfigError, match="`checkpoint` must name one"):
        validate_config({"model": {"arch": "spandrel"}})


def test_a_community_base_runs_the_whole_chain_with_audio(tmp_path):
    from .helpers import make_clip

    torch.manual_seed(0)
    path = _safetensors(_small("Compact"), tmp_path / "compact_x2.safetensors")
    cfg = validate_config({
        "checkpoint": str(path), "scale": 2, "extract": {"frames": 6},
        "fine_tune": {"steps": 4, "steps_per_epoch": 2, "batch_size": 2, "patch": 16, "patience": 0, "guard": False,
                      "lr": 1e-4},
    })
    source = make_clip(tmp_path / "in.mkv", size=(40, 32), frames=8, audio=True)
    settings = full_video_settings(cfg, {"id": "in", "mode": "enhance"}).replace(device="cpu")
    result = pipeline.run_video(source, tmp_path / "out.mkv", settings, tmp_path / "work")
    delivered = load_model(result.files.model)
    assert delivered.arch.name == "spandrel" and delivered.kwargs["spandrel_arch"] == "Compact"
    assert result.verdict.kept == "fine_tuned" and result.verdict.steps == 4
    assert delivered.provenance["stage"] != "base_model"  # the video's own weights, not the base's
    out = probe(tmp_path / "out.mkv")
    assert (out.width, out.height, out.frames) == (80, 64, 8) and len(out.audio) == 1
    from videnhance.report import _bases_html, base_rows, bases_table

    rows = base_rows([result.files.base])  # the report's "Base models" section, in summary.md and .html
    table = bases_table(rows)
    assert f"| ×2 | {path} | RealESRGAN Compact (8nf, 2nc) | " in table and "| the file's authors |" in table
    assert "<td class=\"t\">RealESRGAN Compact (8nf, 2nc)</td>" in _bases_html(rows)
