"""Colour: which YUV ↔ RGB matrix and range a video uses, how ffmpeg is told, and the conversion
on the model's device for the yuv420p transport.

The model works in RGB; videos are YUV. Both ways, the conversion follows the source:
- a tagged source is read with its own matrix and range (ffmpeg does this by itself), and the
  output is tagged and converted with the same ones;
- an untagged source is read the way players show it: BT.709 from 1280 wide or 577 high up
  (as coded, before rotation), BT.601 (smpte170m) below, limited range unless the pixel format
  is a full-range `yuvj` one.
  ffmpeg alone would read every untagged source as BT.601, which shifts the colours of HD video
  and leaves an untagged ×4 output that players then show as BT.709.

`yuv420_to_rgb` and `rgb_to_yuv420` move frames as planar 4:2:0 between ffmpeg and the model's
device: 8-bit (`yuv420p`, half the bytes of rgb24) or 10-bit (`yuv420p10le`, which keeps a
10-bit source's precision all the way to a 10-bit output), with no conversion in either ffmpeg
process. Chroma is
repeated 2×2 on the way in, as swscale's default yuv420p → rgb24 path does, and averaged over
2×2 on the way out, where the code values are rounded to nearest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where frames are converted: reading config and tags needs none
    import torch

# libavutil's enum values (what PyAV reports) → ffmpeg's option names
MATRICES = {1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020nc", 10: "bt2020c"}
PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020"}
# (gamma 2.2 and 2.8 by the names that both -color_trc and the setparams filter accept)
TRANSFERS = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "linear",
             13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 18: "arib-std-b67"}
RANGES = {1: "tv", 2: "pc"}

# luma weights (Kr, Kb) of the matrices with a linear YUV ↔ RGB relation
KR_KB = {"bt709": (0.2126, 0.0722), "smpte170m": (0.299, 0.114), "bt470bg": (0.299, 0.114),
         "smpte240m": (0.212, 0.087), "fcc": (0.30, 0.11), "bt2020nc": (0.2627, 0.0593)}
# the scale filter's names for `in_color_matrix`
SCALE_NAMES = {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470", "smpte240m": "smpte240m",
               "fcc": "fcc", "bt2020nc": "bt2020"}

RGB_PREFIXES = ("rgb", "bgr", "gbr", "argb", "abgr", "0rgb", "0bgr", "x2rgb", "x2bgr", "gray", "ya", "pal", "mono")


def is_yuv(pix_fmt: str) -> bool:
    """A pixel format with luma and chroma (the matrix applies), as opposed to RGB or grey."""
    return bool(pix_fmt) and not pix_fmt.startswith(RGB_PREFIXES)


def bit_depth(pix_fmt: str) -> int:
    """Bits per sample of an ffmpeg pixel format name (yuv420p10le → 10, rgb48le → 16, else 8)."""
    match = re.match(r"p[024](1[026])(le|be)$", pix_fmt)  # semi-planar p010le, p210be, p416le: 4:2:0/2:2/4:4:4
    match = match or re.search(r"(\d+)(le|be)$", pix_fmt)  # others with a high depth end in it: yuv420p10le, gray16be
    if not match:
        return 8
    bits = int(match.group(1))
    return 16 if bits in (48, 64) else bits if bits <= 16 else 8  # rgb48le/rgba64le: 16 a sample; rgb565le: packed


HDR_TRANSFERS = {"smpte2084": "PQ", "arib-std-b67": "HLG"}


def guess_matrix(width: int, height: int) -> str:
    """What players assume for an untagged stream (mpv, VLC and browsers use this size rule)."""
    return "bt709" if width >= 1280 or height > 576 else "smpte170m"


@dataclass(frozen=True)
class Colour:
    """A video's colour description, with every field known (`guessed` says what was not tagged)."""

    matrix: str = "smpte170m"
    range: str = "tv"
    primaries: str = "smpte170m"
    transfer: str = "smpte170m"
    guessed: tuple[str, ...] = ()

    @classmethod
    def of(cls, width: int, height: int, pix_fmt: str = "", matrix: str = "", range: str = "",
           primaries: str = "", transfer: str = "") -> Colour:
        """Fill in what the source does not tag (see the module docstring)."""
        guessed = []
        if not matrix:
            matrix = guess_matrix(width, height)
            guessed.append("matrix")
        if not range:
            range = "pc" if pix_fmt.startswith("yuvj") else "tv"
            guessed.append("range")
        families = {"bt709": "bt709", "bt2020nc": "bt2020", "bt2020c": "bt2020", "bt470bg": "bt470bg"}
        family = families.get(matrix, "smpte170m")
        if not primaries:
            primaries = family
            guessed.append("primaries")
        if not transfer:
            transfer = {"bt2020": "bt709"}.get(family, family)
            guessed.append("transfer")
        return cls(matrix, range, primaries, transfer, tuple(guessed))

    @property
    def linear(self) -> bool:
        """Whether `yuv420_to_rgb` / `rgb_to_yuv420` can convert this matrix (not bt2020c)."""
        return self.matrix in KR_KB

    def decode_filter(self, pix_fmt: str) -> list[str]:
        """ffmpeg args that make the decoder's YUV → RGB conversion use this matrix and range
        where the source does not say (tagged sources are already read with their tags)."""
        if not is_yuv(pix_fmt) or not ({"matrix", "range"} & set(self.guessed)) or self.matrix not in SCALE_NAMES:
            return []
        return ["-vf", f"scale={self.scale_input()}"]

    def scale_input(self) -> str:
        """The scale filter's options that read YUV frames with this matrix and range."""
        return f"in_color_matrix={SCALE_NAMES.get(self.matrix, 'auto')}:in_range={self.range}"

    def tag_filter(self) -> str:
        """A filter that tags frames with the primaries and transfer (RGB frames carry those too)."""
        return f"setparams=color_primaries={self.primaries}:color_trc={self.transfer}"

    def encode_args(self) -> list[str]:
        """Output options: the RGB → YUV conversion uses this matrix and range, and the stream is
        tagged with them (primaries and transfer come from `tag_filter` or the raw input's options).
        swscale has no constant-luminance BT.2020 (bt2020c): such sources are written as bt2020nc."""
        matrix = "bt2020nc" if self.matrix == "bt2020c" else self.matrix
        return ["-colorspace", matrix, "-color_range", self.range]

    def yuv_input_args(self) -> list[str]:
        """Input options for raw YUV frames that already are in this colour (no conversion)."""
        return ["-colorspace", self.matrix, "-color_range", self.range,
                "-color_primaries", self.primaries, "-color_trc", self.transfer]


PLANAR = {"yuv420p": 8, "yuv420p10le": 10}  # the planar 4:2:0 formats of the transport, and their bits


def _levels(colour: Colour, bits: int = 8) -> tuple[float, float, float, float]:
    """(luma offset, luma span, chroma centre, chroma span) in `bits`-bit code values (BT.2100's
    limited and full range quantisation)."""
    if colour.range == "tv":
        f = float(1 << (bits - 8))
        return 16.0 * f, 219.0 * f, 128.0 * f, 224.0 * f
    top = float((1 << bits) - 1)
    return 0.0, top, float(1 << (bits - 1)), top


def yuv420_frame_bytes(height: int, width: int) -> int:
    """Samples of one 4:2:0 frame (bytes at 8 bits; twice that at 10)."""
    return height * width * 3 // 2


def yuv420_to_rgb(buf: torch.Tensor, height: int, width: int, colour: Colour, bits: int = 8) -> torch.Tensor:
    """(n, h·w·3/2) planar 4:2:0 frames, uint8 at 8 bits or int16 at 10 (Y plane, then U, then V)
    → float RGB (n, 3, h, w) in [0, 1], channels_last, on `buf`'s device."""
    import torch

    if height % 2 or width % 2:
        raise ValueError(f"4:2:0 needs even sizes, got {width}x{height}")
    n, area = buf.shape[0], height * width
    kr, kb = KR_KB[colour.matrix]
    y_off, y_span, c_mid, c_span = _levels(colour, bits)
    y = buf[:, :area].view(n, height, width).float().sub_(y_off).div_(y_span)
    chroma = buf[:, area:].view(n, 2, height // 2, width // 2).float().sub_(c_mid).div_(c_span)
    chroma = chroma.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # as swscale does
    u, v = chroma[:, 0], chroma[:, 1]
    kg = 1.0 - kr - kb
    rgb = torch.empty((n, height, width, 3), dtype=torch.float32, device=buf.device)
    torch.add(y, v, alpha=2 * (1 - kr), out=rgb[..., 0])
    torch.add(y, u, alpha=-2 * kb * (1 - kb) / kg, out=rgb[..., 1]).add_(v, alpha=-2 * kr * (1 - kr) / kg)
    torch.add(y, u, alpha=2 * (1 - kb), out=rgb[..., 2])
    return rgb.clamp_(0, 1).permute(0, 3, 1, 2)


def rgb_to_yuv420(rgb: torch.Tensor, colour: Colour, bits: int = 8) -> torch.Tensor:
    """float RGB (n, 3, h, w) in [0, 1] → (n, h·w·3/2) planar 4:2:0 frames, uint8 at 8 bits or
    int16 at 10, on the same device. Chroma is the 2×2 mean."""
    import torch
    import torch.nn.functional as F

    n, _, height, width = rgb.shape
    if height % 2 or width % 2:
        raise ValueError(f"4:2:0 needs even sizes, got {width}x{height}")
    kr, kb = KR_KB[colour.matrix]
    kg = 1.0 - kr - kb
    y_off, y_span, c_mid, c_span = _levels(colour, bits)
    rgb = rgb.clamp(0, 1)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    luma = (r * kr + g * kg + b * kb).mul_(y_span).add_(y_off)
    small = F.avg_pool2d(rgb, 2)  # chroma is linear in RGB: averaging first is the same, 4× less work
    sr, sg, sb = small[:, 0], small[:, 1], small[:, 2]
    small_y = sr * kr + sg * kg + sb * kb
    u = (sb - small_y).mul_(c_span / (2 * (1 - kb))).add_(c_mid)
    v = (sr - small_y).mul_(c_span / (2 * (1 - kr))).add_(c_mid)
    top = (1 << bits) - 1
    out = torch.empty((n, height * width * 3 // 2), dtype=torch.uint8 if bits == 8 else torch.int16, device=rgb.device)
    area, quarter = height * width, height * width // 4
    out[:, :area] = luma.round_().clamp_(0, top).reshape(n, area)
    out[:, area : area + quarter] = u.round_().clamp_(0, top).reshape(n, quarter)
    out[:, area + quarter :] = v.round_().clamp_(0, top).reshape(n, quarter)
    return out
