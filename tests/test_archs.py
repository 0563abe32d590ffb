"""The architecture registry: adding a network is one module plus one `register(...)` line, and it
then goes through the whole chain (pretrain → load → fine-tune → infer → reassemble) unchanged."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videnhance import pipeline
from videnhance.archs import ARCHS, Arch, register, unregister
from videnhance.config import ConfigError, validate_config
from videnhance.io import probe
from videnhance.models import SRResNet, load_model
from videnhance.settings import Model, full_video_settings

from .helpers import make_clip


class TinySR(nn.Module):
    """A one-hidden-layer residual over bicubic: about the smallest network the pipeline can train."""

    def __init__(self, scale: int = 2, channels: int = 4):
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(channels, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))
        nn.init.zeros_(self.body[2].weight)  # untrained = bicubic, like the built-in ones
        nn.init.zeros_(self.body[2].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False) + self.body(x)


@pytest.fixture
def tiny_arch():
    arch = register(Arch("tiny_test", TinySR, ("channels",), scales=(2,), description="a test network"))
    yield arch
    unregister("tiny_test")


@pytest.mark.slow
def test_an_extra_architecture_runs_the_whole_chain(tmp_path, tiny_arch):
    cfg = validate_config({
        "model": {"arch": "tiny_test", "channels": 4},
        "pretrain": {"steps": 2, "steps_per_epoch": 2, "batch_size": 4, "patch": 16, "copies": 1},
        "extract": {"frames": 8},
        "fine_tune": {"steps": 4, "steps_per_epoch": 2, "batch_size": 4, "patch": 16, "patience": 0, "guard": False},
    })
    source = make_clip(tmp_path / "in.mkv", size=(48, 32), frames=10)
    settings = full_video_settings(cfg, {"id": "in", "mode": "enhance"}).replace(device="cpu")
    pipeline.pretrain(model=tmp_path / "base.pt", history=tmp_path / "base.csv", settings=settings)
    result = pipeline.run_video(source, tmp_path / "out.mkv", settings, tmp_path / "work",
                                base_checkpoint=tmp_path / "base.pt")
    delivered = load_model(result.files.model)
    assert delivered.arch is tiny_arch and isinstance(delivered.module, TinySR) and delivered.kwargs == {"channels": 4}
    assert result.verdict.steps == 4 and result.verdict.kept == "fine_tuned"
    out = probe(tmp_path / "out.mkv")
    assert (out.width, out.height, out.frames) == (96, 64, 10)


def test_the_registry_refuses_duplicates_and_the_config_names_the_choices(tiny_arch):
    with pytest.raises(ValueError, match="already registered"):
        register(Arch("tiny_test", TinySR, ("channels",), scales=(2,)))
    assert validate_config({"model": {"arch": "tiny_test"}})["model"]["arch"] == "tiny_test"
    unregister("tiny_test")
    choices = "span, spandrel, srmd, srresnet, temporal, unet, upconv7"
    with pytest.raises(ConfigError, match=f"'tiny_test' is not a registered architecture.*{choices}"):
        validate_config({"model": {"arch": "tiny_test"}})


def test_descriptors_of_the_built_in_architectures():
    srresnet = ARCHS["srresnet"]
    assert srresnet.kwargs_from(Model.defaults(channels=8, blocks=2)) == {"channels": 8, "blocks": 2}
    net = srresnet.build(4, channels=8, blocks=1)
    assert isinstance(net, SRResNet) and net.scale == 4 and srresnet.residual and srresnet.frames_in == 1
    x = torch.rand(1, 3, 8, 8)  # residual over bicubic with a zero tail: untrained = bicubic
    torch.testing.assert_close(net(x), F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False))
    from videnhance.errors import ModelFileError

    with pytest.raises(ModelFileError, match="supports scales"):
        srresnet.build(5)
