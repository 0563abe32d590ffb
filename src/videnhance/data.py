"""What the models eat: patch batches cut from pairs (the pair files themselves: `samples`).

Training data is held in memory as uint8 (on the training device when it fits); random crops and
flips are cut per batch from those tensors, so there are no DataLoader workers to stall.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError
from .tensors import to_float


def random_flips(lr: torch.Tensor, hr: torch.Tensor, coin) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random horizontal flip, vertical flip and transpose of inputs and targets (any
    leading dimensions), each done when `coin()` says so, drawn in that order."""
    if coin():
        lr, hr = lr.flip(-1), hr.flip(-1)
    if coin():
        lr, hr = lr.flip(-2), hr.flip(-2)
    if coin():
        lr, hr = lr.transpose(-1, -2), hr.transpose(-1, -2)
    return lr, hr


class PatchBatches:
    """An iterable of (lr, hr) float batches cut at random from in-memory uint8 pairs.

    `lr_images[i]` and `hr_images[i]` are (h, w, 3) and (h·scale, w·scale, 3) uint8 arrays; for a
    multi-frame model `lr_images[i]` is a window (T, h, w, 3) around the frame `hr_images[i]`
    shows, and every frame of the window is cut at the same place.
    Each epoch yields `steps` batches of `batch_size` random patches with random flips and
    90° rotations; the generator is seeded so runs repeat exactly on CPU.
    """

    def __init__(self, lr_images: list[np.ndarray], hr_images: list[np.ndarray], scale: int, patch: int,
                 batch_size: int, steps: int, seed: int = 0, device: str | torch.device = "cpu",
                 augment: bool = True):
        if not lr_images:
            raise ValueError("no training pairs")
        self.scale, self.batch_size, self.steps, self.augment = scale, batch_size, steps, augment
        self.device = torch.device(device)
        smallest = min(min(im.shape[-3:-1]) for im in lr_images)
        self.patch = min(patch, smallest)
        self.lr = [torch.from_numpy(np.ascontiguousarray(im)).to(self.device) for im in lr_images]  # HWC uint8
        self.hr = [torch.from_numpy(np.ascontiguousarray(im)).to(self.device) for im in hr_images]
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.steps

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.gen))

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        p, s = self.patch, self.scale
        lrs, hrs = [], []
        for _ in range(self.batch_size):
            i = self._randint(len(self.lr))
            lr, hr = self.lr[i], self.hr[i]
            y, x = self._randint(lr.shape[-3] - p + 1), self._randint(lr.shape[-2] - p + 1)
            lrs.append(lr[..., y : y + p, x : x + p, :])
            hrs.append(hr[y * s : (y + p) * s, x * s : (x + p) * s])
        lr_b, hr_b = to_float(torch.stack(lrs)), to_float(torch.stack(hrs))
        if self.augment:
            lr_b, hr_b = random_flips(lr_b, hr_b, lambda: bool(self._randint(2)))
        return lr_b.contiguous(), hr_b.contiguous()

    def __iter__(self):
        for _ in range(self.steps):
            yield self.batch()


class FixedBatches:
    """Whole validation pairs, a few at a time (same-size frames stack into batches)."""

    def __init__(self, lr_images: list[np.ndarray], hr_images: list[np.ndarray], batch_size: int = 4,
                 device: str | torch.device = "cpu"):
        self.lr_images, self.hr_images = lr_images, hr_images
        self.batch_size = batch_size
        self.device = torch.device(device)

    def __len__(self) -> int:
        return (len(self.lr_images) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        for start in range(0, len(self.lr_images), self.batch_size):
            lr = np.stack(self.lr_images[start : start + self.batch_size])
            hr = np.stack(self.hr_images[start : start + self.batch_size])
            yield to_float(torch.from_numpy(lr).to(self.device)), to_float(torch.from_numpy(hr).to(self.device))


# Photos bundled with scikit-image. The demo clips are made from DEMO_PHOTOS, so pretraining on
# "skimage" leaves those out: the base model must not have seen the demo's ground truth.
SKIMAGE_PHOTOS = ("chelsea", "hubble_deep_field", "immunohistochemistry", "retina", "stereo_motorcycle",
                  "brick", "camera", "grass", "gravel", "moon", "coins", "clock", "page", "text")
DEMO_PHOTOS = ("coffee", "astronaut", "rocket")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def load_image_sources(sources: list[str], max_images: int = 1000, min_side: int = 32) -> list[np.ndarray]:
    """uint8 RGB images from "skimage" and/or folders (searched recursively, sorted)."""
    from PIL import Image

    images: list[np.ndarray] = []
    for source in sources:
        if source == "skimage":
            import skimage.data

            for name in SKIMAGE_PHOTOS:
                image = getattr(skimage.data, name)()
                if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
                    image = image[0]
                images.append(_as_rgb(np.asarray(image)))
            continue
        folder = Path(source)
        if not folder.is_dir():
            raise ConfigError(f"pretrain.images: folder {folder} not found; fix pretrain.images in the config.")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"pretrain.images: folder {folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                              "add photos or fix pretrain.images in the config.")
        for file in files:
            with Image.open(file) as im:
                images.append(np.asarray(im.convert("RGB")))
    images = [im for im in images if min(im.shape[:2]) >= min_side]
    return images[:max_images]


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))
