import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from videnhance.models import (
    ModelFileError,
    SRResNet,
    build_model,
    load_model,
    save_model,
)

from .helpers import tiny_model


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_srresnet_output_size(scale):
    model = SRResNet(scale=scale, channels=8, blocks=2)
    assert model(torch.rand(2, 3, 12, 10)).shape == (2, 3, 12 * scale, 10 * scale)


def test_untrained_srresnet_is_bicubic():
    x = torch.rand(1, 3, 16, 16)
    expected = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(SRResNet(scale=2, channels=8, blocks=1)(x), expected)


def test_save_load_round_trip(tmp_path):
    model = SRResNet(scale=2, channels=8, blocks=2)
    torch.nn.init.normal_(model.tail.weight)
    save_model(model, tmp_path / "m.pt", "srresnet", 2, {"channels": 8, "blocks": 2}, {"stage": "test"})
    loaded = load_model(tmp_path / "m.pt", arch="srresnet", scale=2)
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(loaded.module(x), model(x))
    assert loaded.kwargs == {"channels": 8, "blocks": 2} and loaded.arch.name == "srresnet"
    assert loaded.scale == 2 and loaded.provenance == {"stage": "test"}


def test_scale_and_arch_mismatch_are_explained(tmp_path):
    tiny_model(path=tmp_path / "m.pt")
    with pytest.raises(ModelFileError, match="×2 model, this video needs ×4"):
        load_model(tmp_path / "m.pt", scale=4)
    with pytest.raises(ModelFileError, match="config asks for 'unet'"):
        load_model(tmp_path / "m.pt", arch="unet")


def test_bare_state_dict_and_safetensors_load_with_config_kwargs(tmp_path):
    model = SRResNet(scale=2, channels=8, blocks=1)
    torch.save(model.state_dict(), tmp_path / "sd.pth")
    loaded = load_model(tmp_path / "sd.pth", arch="srresnet", scale=2, kwargs={"channels": 8, "blocks": 1})
    assert isinstance(loaded.module, SRResNet)
    torch.nn.init.normal_(model.tail.weight)  # not the zero init: the weights must really come from the file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    kwargs = {"channels": 8, "blocks": 1}
    from_file = load_model(tmp_path / "w.safetensors", arch="srresnet", scale=2, kwargs=kwargs).module
    assert all(torch.equal(from_file.state_dict()[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model(tmp_path / "sd.pth", arch="srresnet", scale=2, kwargs={"channels": 16, "blocks": 1})


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    with pytest.raises(ModelFileError, match="pickled code is refused"):
        load_model(path, arch="srresnet", scale=2)


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(ModelFileError, match="nope.pt: checkpoint file not found"):
        load_model(tmp_path / "nope.pt")


def test_unet_option_builds_and_runs():
    model = build_model("unet", 2, encoder="resnet18", img_size=64)
    out = model(torch.rand(1, 3, 32, 32))
    assert out.shape == (1, 3, 64, 64) and np.isfinite(out.detach().numpy()).all()
