"""Degradations: the evaluation downscale ("BI"/"BD") and the seeded training-pair chain.

Resizing is `torch.nn.functional.interpolate(mode="bicubic", antialias=True)` (close to, not the
same as, MATLAB's imresize; the report says so). JPEG goes through Pillow, as in fastai's crappify.
All functions take and return uint8 RGB arrays shaped (H, W, 3) or batches (n, H, W, 3).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .settings import Degrade
from .tensors import frames_to_tensor, tensor_to_frames


def resize(frames: np.ndarray, size: tuple[int, int], mode: str = "bicubic") -> np.ndarray:
    """Resize a uint8 batch (n, H, W, 3) to size=(h, w); antialiased when shrinking."""
    return tensor_to_frames(resize_tensor(frames_to_tensor(frames), size, mode))


def resize_tensor(images: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    if mode not in ("bicubic", "bilinear", "area", "nearest"):
        raise ValueError(f"unknown resize mode {mode!r}")
    if mode in ("area", "nearest"):
        return F.interpolate(images, size=size, mode=mode)
    shrink = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=size, mode=mode, align_corners=False, antialias=shrink)


def gaussian_kernel(sigma: float, radius: int | None = None) -> torch.Tensor:
    radius = radius if radius is not None else max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def gaussian_blur_tensor(images: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return images
    k = gaussian_kernel(sigma).to(images)
    r = (len(k) - 1) // 2
    c = images.shape[1]
    x = F.pad(images, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def eval_degrade(frames: np.ndarray, scale: int, kind: str = "BI") -> np.ndarray:
    """The benchmark input made from ground truth: "BI" = bicubic ×1/scale with antialiasing,
    "BD" = Gaussian blur σ=1.6 then subsampling. At scale 1 both blur (σ=1) so there is
    something to restore."""
    n, h, w, _ = frames.shape
    if h % scale or w % scale:
        raise ValueError(f"frame size {w}x{h} is not divisible by scale {scale}")
    x = frames_to_tensor(frames)
    if scale == 1:
        return tensor_to_frames(gaussian_blur_tensor(x, 1.0))
    if kind == "BI":
        return tensor_to_frames(resize_tensor(x, (h // scale, w // scale), "bicubic"))
    if kind == "BD":
        return tensor_to_frames(gaussian_blur_tensor(x, 1.6)[..., scale // 2 :: scale, scale // 2 :: scale])
    raise ValueError(f"unknown benchmark degradation {kind!r} (use BI or BD)")


def crop_to_multiple(frames: np.ndarray, multiple: int) -> np.ndarray:
    """Trim the bottom/right so both sides are multiples of `multiple` (top-left kept)."""
    h, w = frames.shape[-3:-1]
    return frames[..., : h - h % multiple, : w - w % multiple, :]


def centre(image: np.ndarray) -> np.ndarray:
    """The centre frame of a window (T, H, W, 3); an image (H, W, 3) as it is."""
    return image[len(image) // 2] if image.ndim == 4 else image


@dataclass(frozen=True)
class DegradeChain:
    """The training-pair degradation (config key `degrade`), applied per image with its own RNG.

    Order: Gaussian blur (σ drawn from `blur_sigma`), downscale by the model's scale with a kernel
    drawn from `downscale`, noise, then (with chance `codec_prob`) a video codec from `codec` at a
    CRF drawn from `codec_crf`, then JPEG at a quality drawn from `jpeg_quality` (fastai's crappify
    does downscale + JPEG). `jpeg_prob` is the chance a pair gets JPEG at all. It reads the
    validated `degrade` settings (`settings.Degrade`) as they are.
    """

    settings: Degrade

    @classmethod
    def from_settings(cls, degrade: Degrade) -> DegradeChain:
        return cls(degrade)

    @classmethod
    def defaults(cls, **overrides) -> DegradeChain:
        """The chain of the schema's `degrade` defaults (bicubic only) with `overrides`."""
        return cls(Degrade.defaults(**overrides))

    def apply_window(self, frames: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        """Degrade a window of frames (T, H, W, 3) as one camera would: the same drawn blur,
        kernel, noise level and JPEG quality on every frame, and the video codec over the window
        as one clip (its first frame intra-coded, the others predicted from it). A single image
        (H, W, 3) is `apply`."""
        if frames.ndim == 3:
            return self.apply(frames, scale, rng)
        seed = int(rng.integers(2**31))
        out = np.stack([self.apply(frame, scale, np.random.default_rng(seed), codec=False) for frame in frames])
        drawn = self._draw_codec(np.random.default_rng(seed + 1))
        return codec_roundtrip(out, *drawn) if drawn else out

    def _draw_codec(self, rng: np.random.Generator) -> tuple[str, int] | None:
        """Whether this pair goes through the video codec, and which codec and CRF (no draw at all
        when `codec_prob` is 0, so chains without a codec keep their random streams)."""
        cfg = self.settings
        if cfg.codec_prob > 0 and rng.random() < cfg.codec_prob:
            return str(rng.choice(cfg.codec)), int(rng.integers(cfg.codec_crf[0], cfg.codec_crf[1] + 1))
        return None

    def apply(self, image: np.ndarray, scale: int, rng: np.random.Generator, codec: bool = True) -> np.ndarray:
        """Degrade one uint8 (H, W, 3) image whose sides are multiples of `scale`. With the codec,
        the image is the second frame of a two-frame clip whose first frame is it shifted by a
        pixel or two: inter-coded, as most frames of a real video are (`codec=False`: left to
        `apply_window`)."""
        h, w, _ = image.shape
        x = frames_to_tensor(image[None])
        sigma = float(rng.uniform(*self.settings.blur_sigma))
        x = gaussian_blur_tensor(x, sigma)
        mode = str(rng.choice(self.settings.downscale))
        if scale > 1:
            x = resize_tensor(x, (h // scale, w // scale), mode)
        noise = float(rng.uniform(*self.settings.noise_sigma))
        if noise > 0:
            gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
            x = x + torch.randn(x.shape, generator=gen) * (noise / 255)
        out = tensor_to_frames(x)[0]
        drawn = self._draw_codec(rng) if codec else None
        if drawn:
            dy, dx = (int(v) for v in rng.integers(-2, 3, size=2))
            out = codec_roundtrip(np.stack([shift(out, dy, dx), out]), *drawn)[-1]
        if self.settings.jpeg_prob > 0 and rng.random() < self.settings.jpeg_prob:
            out = jpeg(out, int(rng.integers(self.settings.jpeg_quality[0], self.settings.jpeg_quality[1] + 1)))
        return out


def shrink_and_crop(image: np.ndarray, factor: float, scale: int, crop: int, rng: np.random.Generator) -> np.ndarray:
    """`image` resized by `factor` (sides rounded down to multiples of `scale`), then a crop of at
    most `crop` px a side (multiples of `scale`) at a place drawn from `rng`: a near-scale target.
    A window of frames (T, H, W, 3) is shrunk and cut the same way, frame by frame."""
    h, w = image.shape[-3:-1]
    th, tw = max(scale, int(h * factor) // scale * scale), max(scale, int(w * factor) // scale * scale)
    batch = image if image.ndim == 4 else image[None]
    target = resize(batch, (th, tw)) if (th, tw) != (h, w) else batch
    ch, cw = min(crop, th) // scale * scale, min(crop, tw) // scale * scale
    y, x = int(rng.integers(0, th - ch + 1)), int(rng.integers(0, tw - cw + 1))
    target = np.ascontiguousarray(target[:, y : y + ch, x : x + cw])
    return target if image.ndim == 4 else target[0]


def shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`image` moved by (dy, dx) pixels, the edge pixels repeated into the uncovered border."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((abs(dy),) * 2, (abs(dx),) * 2, (0, 0)), mode="edge")
    y, x = abs(dy) - dy, abs(dx) - dx
    return np.ascontiguousarray(padded[y : y + h, x : x + w])


DECODERS = {"libx264": "h264", "libx265": "hevc"}


def codec_roundtrip(frames: np.ndarray, codec: str, crf: int) -> np.ndarray:
    """`frames` (T, H, W, 3) encoded as one clip with `codec` at `crf` (yuv420p, preset veryfast)
    and decoded again, in memory through the FFmpeg libraries PyAV bundles: no process, no file.
    Odd sides are padded (edge) for 4:2:0 and cropped back."""
    import av

    t, h, w, _ = frames.shape
    ph, pw = max(16, h + h % 2), max(16, w + w % 2)
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    encoder = av.CodecContext.create(codec, "w")
    encoder.width, encoder.height, encoder.pix_fmt = pw, ph, "yuv420p"
    encoder.time_base = Fraction(1, 25)
    encoder.thread_count = 1  # small clips; one thread also keeps the result the same everywhere
    options = {"crf": str(crf), "preset": "veryfast"}
    if codec == "libx265":
        options["x265-params"] = "log-level=none:frame-threads=1:pools=none"
    encoder.options = options
    packets = []
    for i, frame in enumerate(frames):
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24").reformat(format="yuv420p")
        picture.pts = i
        packets += encoder.encode(picture)
    packets += encoder.encode(None)
    decoder = av.CodecContext.create(DECODERS[codec], "r")
    decoded = [f for packet in packets for f in decoder.decode(packet)] + list(decoder.decode(None))
    if len(decoded) != t:
        raise RuntimeError(f"{codec} round trip returned {len(decoded)} frames for {t}")
    return np.stack([f.to_ndarray(format="rgb24") for f in decoded])[:, :h, :w]


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.array(Image.open(buf).convert("RGB"))  # a writable copy: torch.from_numpy warns on read-only arrays


def make_pairs(hr_images: list[np.ndarray], scale: int, chain: DegradeChain, seed: int,
               copies: int = 1) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Training pairs (lr, hr): each HR image trimmed to a multiple of `scale`, degraded
    `copies` times with a seeded RNG. Returns parallel lists (images may differ in size)."""
    rng = np.random.default_rng(seed)
    lrs, hrs = [], []
    for image in hr_images:
        hr = crop_to_multiple(image, scale)
        for _ in range(copies):
            lrs.append(chain.apply(hr, scale, rng))
            hrs.append(hr)
    return lrs, hrs
