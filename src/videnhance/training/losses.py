"""The training losses: a weighted sum of L1, MSE, (1 − SSIM) and a VGG feature L1, and the PSNR
the training log shows."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_torch(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean SSIM over channels (11×11 Gaussian σ=1.5, inputs in [0, 1]); differentiable."""
    c = pred.shape[1]
    win = _gaussian_window().to(pred).expand(c, 1, 11, 11)
    pad = 5
    pred, target = F.pad(pred, (pad,) * 4, mode="reflect"), F.pad(target, (pad,) * 4, mode="reflect")
    mu_x, mu_y = F.conv2d(pred, win, groups=c), F.conv2d(target, win, groups=c)
    sxx = F.conv2d(pred * pred, win, groups=c) - mu_x**2
    syy = F.conv2d(target * target, win, groups=c) - mu_y**2
    sxy = F.conv2d(pred * target, win, groups=c) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return ssim.mean()


class VGGFeatures(nn.Module):
    """VGG16 up to relu3_3, frozen, from a state_dict file the user supplies (torchvision's
    layout). The feature loss of the seed (perceptual sharpening); off unless configured."""

    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, weights_path: str | Path):
        super().__init__()
        from torchvision.models import vgg16

        path = Path(weights_path)
        if not path.is_file():
            raise ConfigError(f"loss.vgg_weights: {path} not found. The VGG feature loss needs a VGG16 "
                                    "state_dict you supply (torchvision layout); nothing is downloaded.")
        state = torch.load(path, map_location="cpu", weights_only=True)
        features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        self.net = vgg16(weights=None).features[:16]
        missing = set(self.net.state_dict()) - set(features)
        if missing:
            raise ConfigError(f"loss.vgg_weights: {path} is not a VGG16 state_dict (missing {sorted(missing)[:3]}…)")
        self.net.load_state_dict({k: features[k] for k in self.net.state_dict()})
        self.net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


class MixedLoss(nn.Module):
    """Weighted sum of L1, MSE, (1 − SSIM) and, with user-supplied weights, a VGG feature L1,
    from the config's `loss: {l1: 1.0, ssim: 0.1}` (`vgg: 0.05, vgg_weights: vgg16.pth`)."""

    TERMS = ("l1", "mse", "ssim", "vgg")

    def __init__(self, weights: dict):
        super().__init__()
        weights = dict(weights)
        vgg_path = weights.pop("vgg_weights", None)
        unknown = set(weights) - set(self.TERMS)
        if unknown or not weights:
            raise ValueError(f"loss terms must be among {self.TERMS}, got {sorted(weights)}")
        self.weights = {k: float(v) for k, v in weights.items() if v}
        self.vgg = None
        if "vgg" in self.weights:
            if not vgg_path:
                raise ConfigError("loss term 'vgg' needs loss.vgg_weights: a VGG16 state_dict file you supply "
                                 "(torchvision layout); nothing is downloaded")
            self.vgg = VGGFeatures(vgg_path)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = pred.float(), target.float()
        total = pred.new_zeros(())
        if "l1" in self.weights:
            total = total + self.weights["l1"] * F.l1_loss(pred, target)
        if "mse" in self.weights:
            total = total + self.weights["mse"] * F.mse_loss(pred, target)
        if "ssim" in self.weights:
            total = total + self.weights["ssim"] * (1 - ssim_torch(pred, target))
        if self.vgg is not None:
            self.vgg.to(pred.device)
            total = total + self.weights["vgg"] * F.l1_loss(self.vgg(pred), self.vgg(target))
        return total


def psnr_metric(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """RGB PSNR on [0, 1] tensors, for the training log (the report uses metrics.py)."""
    mse = F.mse_loss(pred.float().clamp(0, 1), target.float())
    return -10 * torch.log10(mse.clamp_min(1e-10))
