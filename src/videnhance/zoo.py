"""The networks of the weight families `ncnn_import` converts, as trainable torch modules:
waifu2x's upconv_7, SPAN in its deployed form, and SRMD with its degradation maps.

Each is an `NcnnGraph`: `forward(x) = finish(graph(prepare(x)))`, where `graph` computes exactly
what the family's ncnn `.param` graph computes, and `prepare`/`finish` are what the family's own
tool does around it (padding, the degradation maps, the crop). Input and output are RGB in
[0, 1], (n, 3, h, w) → (n, 3, h·scale, w·scale), as for every network of ours; `ncnn_import`
checks `graph` against ncnn itself on `prepare(x)`. Parameters are created in the order the ncnn
file stores their weights, so a conversion assigns the file's arrays in order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NcnnGraph(nn.Module):
    """A network whose `graph` is an ncnn graph, with what its tool does before and after."""

    scale: int

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The input the ncnn graph takes, from an RGB frame batch (n, 3, h, w) in [0, 1]."""
        return x

    def graph(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        """The output frame batch from the graph's output."""
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(self.graph(self.prepare(x)))

    def from_ncnn(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The state dict of this module from the ncnn file's weights (named as this module names
        them): the same unless the module parameterises a layer differently (SPAN)."""
        return state


class UpConv7(NcnnGraph):
    """waifu2x's upconv_7 at ×2: six unpadded 3×3 convolutions with leaky ReLU (0.1) and a 4×4
    stride-2 transposed convolution. It trims 7 pixels a side, so the input is padded by 7
    (replicate, as waifu2x does) and the output is exactly twice the input."""

    PAD = 7

    def __init__(self, scale: int = 2):
        super().__init__()
        if scale != 2:
            raise ValueError(f"upconv_7 is a ×2 network, not ×{scale}")
        self.scale = 2
        widths = (3, 16, 32, 64, 128, 128, 256)
        self.body = nn.Sequential(*[m for a, b in zip(widths, widths[1:], strict=False)
                                    for m in (nn.Conv2d(a, b, 3), nn.LeakyReLU(0.1))])
        self.up = nn.ConvTranspose2d(256, 3, 4, stride=2, padding=3)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (self.PAD,) * 4, mode="replicate")

    def graph(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.body(x))


class SPABlock(nn.Module):
    """SPAN's attention block, deployed: three 3×3 convolutions with SiLU between them; the
    output is (conv3 + input) · (sigmoid(conv3) − ½). Also returns the first activation, which
    the last block hands to the concatenation."""

    def __init__(self, channels: int):
        super().__init__()
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c3 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a1 = F.silu(self.c1(x))
        out = self.c3(F.silu(self.c2(a1)))
        return (out + x) * (torch.sigmoid(out) - 0.5), a1


class SPAN(NcnnGraph):
    """SPAN (Swift Parameter-free Attention Network, Wan et al., NTIRE 2024 efficient SR) in the
    deployed form its ncnn files hold: every Conv3XC re-parameterised into one 3×3 convolution,
    so it fine-tunes as plain convolutions. Input is shifted by `mean` and scaled by `img_range`
    (255 for the authors' models); six blocks; a 1×1 convolution over four taps; pixel shuffle.
    No residual over bicubic: the network renders the whole image.

    The features run at `img_range` times the pixel scale, so the first convolution's weights
    and the upsampler's are about 1/255 of the others', and Adam, which moves every weight by
    about the rate, moved them 30–100 times more relative to their size: fine-tuning collapsed
    at 6e-4. Here the range is held in those two layers' weights instead (`from_ncnn`): the first
    convolution takes (x − mean) with its weights × `img_range`, and the upsampler takes its input
    ÷ `img_range` with its weights × `img_range`. The same function, with every weight of the
    usual size."""

    BLOCKS = 6

    def __init__(self, scale: int = 4, channels: int = 48, img_range: float = 255.0,
                 mean: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)):
        super().__init__()
        if scale not in (1, 2, 3, 4):
            raise ValueError(f"SPAN is built for ×1–×4, not ×{scale}")
        self.scale, self.img_range = scale, float(img_range)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.conv_1 = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.ModuleList(SPABlock(channels) for _ in range(self.BLOCKS))
        self.conv_2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_cat = nn.Conv2d(4 * channels, channels, 1)
        self.upsampler = nn.Sequential(nn.Conv2d(channels, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    RANGED = ("conv_1.weight", "upsampler.0.weight")  # hold `img_range` (see above)

    def graph(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_1(x - self.mean)
        out, taps = feat, []
        for block in self.blocks:
            out, first_act = block(out)
            taps.append(out)
        cat = torch.cat([feat, self.conv_2(out), taps[0], first_act], 1)
        return self.upsampler(self.conv_cat(cat) / self.img_range)

    def from_ncnn(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v * self.img_range if k in self.RANGED else v for k, v in state.items()}


# The 15 numbers srmd-ncnn-vulkan feeds SRMD as its blur-kernel maps, at every scale (the PCA
# projection of the kernel of its bicubic setting; `srmd_preproc.comp`, nihui/srmd-ncnn-vulkan).
SRMD_KERNEL_PCA = (-1.12360956e-08, -1.36899159e-08, 1.85637958e-02, 2.86066886e-08, 3.35292965e-02,
                   8.37272935e-08, -2.54424009e-07, -3.16234976e-02, -1.35169253e-02, -1.10466090e-08,
                   3.84753793e-02, 3.79465739e-08, -2.44916752e-01, -8.02213490e-01, -5.40549755e-01)


class SRMD(NcnnGraph):
    """SRMD (Zhang et al., CVPR 2018): twelve 3×3 convolutions (ReLU between them) on the frame
    stacked with constant degradation maps, then pixel shuffle. The maps are built as
    srmd-ncnn-vulkan builds them: its 15 blur-kernel PCA values, and for the noise-aware nets a
    noise-level map of `noise`/255; SRMDNF nets (`noise` None) take no noise map. The frame is
    padded by 12 (replicate) and the output cropped back, as that tool does."""

    PAD = 12

    def __init__(self, scale: int = 4, channels: int = 128, layers: int = 12, noise: int | None = 3):
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"SRMD is a ×2, ×3 or ×4 network, not ×{scale}")
        self.scale, self.noise = scale, noise
        maps = list(SRMD_KERNEL_PCA) + ([] if noise is None else [noise / 255.0])
        self.register_buffer("maps", torch.tensor(maps, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        widths = [3 + len(maps)] + [channels] * (layers - 1)
        body: list[nn.Module] = []
        for a, b in zip(widths, widths[1:], strict=False):
            body += [nn.Conv2d(a, b, 3, padding=1), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*body, nn.Conv2d(channels, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.PAD,) * 4, mode="replicate")
        n, _, h, w = x.shape
        return torch.cat([x, self.maps.to(x.dtype).expand(n, -1, h, w)], 1)

    def graph(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        crop = self.PAD * self.scale
        return y[..., crop:-crop, crop:-crop]
