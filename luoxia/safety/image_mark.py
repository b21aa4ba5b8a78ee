"""Invisible, keyed watermark for generated images, with a detector and a p-value.

The mark is the ``dwtDct`` method of the pinned ``invisible-watermark`` package: the image's U
(blue-difference) channel goes through a Haar wavelet, and in each 4×4 DCT block of the low band
the largest coefficient is quantised so that it encodes one payload bit; the payload repeats over
every block, and the decoder takes a majority over the repeats. The payload is 48 bits derived from
a secret key (`watermark_bits`), so only a key holder can mark or test for the mark.

Detection counts how many of the decoded bits equal the key's bits. On an image without this mark
(or with another key's mark) each bit matches with probability about 1/2, so the count is compared
with Bin(n, 1/2): ``p_value = P[X ≥ matched]``. The default threshold of 1e-6 needs 41 of 48 bits.

Constraints, all enforced here: the library works on images of at least 256×256, and the mark lives
in colour (U), so a marked image must stay RGB — converting it to greyscale erases it. Luoxia's
digits are small greyscale images, so `prepare_for_watermark` upscales and converts them first.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from luoxia.errors import LuoxiaError

METHOD = "dwtDct"
MIN_SIZE = 256
DEFAULT_BITS = 48
DEFAULT_THRESHOLD = 1e-6
_CONTEXT = b"luoxia-image-watermark"


@dataclass(frozen=True)
class ImageWatermarkResult:
    """What the detector found: matching payload bits, their binomial p-value and the verdict."""

    bits_matched: int
    bits_total: int
    p_value: float
    watermarked: bool

    def to_json(self) -> dict:
        return asdict(self)


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise LuoxiaError("the image watermark key must be non-empty bytes")
    return bytes(key)


def watermark_bits(key: bytes, n_bits: int = DEFAULT_BITS) -> list[int]:
    """The payload: the first ``n_bits`` bits (most significant first) of
    HMAC-SHA256(key, b"luoxia-image-watermark")."""
    key = _check_key(key)
    if not 1 <= n_bits <= 256:
        raise LuoxiaError(f"the image watermark needs 1 to 256 payload bits, not {n_bits}")
    digest = hmac.new(key, _CONTEXT, hashlib.sha256).digest()
    return [int(bit) for bit in np.unpackbits(np.frombuffer(digest, dtype=np.uint8))[:n_bits]]


def prepare_for_watermark(image: Image.Image, min_size: int = MIN_SIZE) -> Image.Image:
    """``image`` as RGB with its short side at least ``min_size``, keeping the aspect ratio.

    Upscaling is bicubic, not nearest. Both look fine for a digit, but nearest turns every pixel into
    a hard 0↔255 step; the mark then shifts U on saturated (black or white) pixels, where the RGB
    result clips and the shift is lost. Measured on random black/white 16×16 and 28×28 images, nearest
    kept only 32–48 of 48 bits (often below the detection threshold) while bicubic kept 47–48, because
    its smooth ramps leave the coefficients the mark uses away from the clipped extremes.
    """
    if min(image.size) < 1:
        raise LuoxiaError(f"cannot watermark an empty image ({image.width}×{image.height})")
    short = min(image.size)
    if short < min_size:
        scale = min_size / short
        size = (max(min_size, math.ceil(image.width * scale)), max(min_size, math.ceil(image.height * scale)))
        # Resize in L or RGB(A): bicubic on a palette image would blend palette indices.
        if image.mode not in ("L", "RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
        image = image.resize(size, Image.Resampling.BICUBIC)
    return image.convert("RGB") if image.mode != "RGB" else image.copy()


def _bgr(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8)[:, :, ::-1])


def embed_image_watermark(image: Image.Image, key: bytes, *, n_bits: int = DEFAULT_BITS) -> Image.Image:
    """A copy of ``image`` carrying the key's watermark: RGB, short side ≥ 256 (upscaled by
    `prepare_for_watermark` when smaller). Keep it RGB and lossless (PNG) for the mark to survive."""
    from imwatermark import WatermarkEncoder

    bits = watermark_bits(key, n_bits)
    rgb = prepare_for_watermark(image)
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", bits)
    marked = encoder.encode(_bgr(rgb), METHOD)
    return Image.fromarray(np.ascontiguousarray(marked[:, :, ::-1]).astype(np.uint8), "RGB")


def detect_image_watermark(
    image: Image.Image, key: bytes, *, threshold: float = DEFAULT_THRESHOLD, n_bits: int = DEFAULT_BITS
) -> ImageWatermarkResult:
    """Test ``image`` for the key's watermark. Images under 256×256 raise `LuoxiaError`: the
    detector does not upscale, since a marked image is never smaller than that."""
    from imwatermark import WatermarkDecoder
    from scipy.stats import binom

    bits = watermark_bits(key, n_bits)
    if min(image.size) < MIN_SIZE:
        raise LuoxiaError(
            f"image is {image.width}×{image.height}; the watermark detector needs at least "
            f"{MIN_SIZE}×{MIN_SIZE} pixels (marked images are upscaled to that size)"
        )
    decoded = WatermarkDecoder("bits", n_bits).decode(_bgr(image), METHOD)
    matched = int(sum(int(bool(got)) == want for got, want in zip(decoded, bits, strict=True)))
    p_value = float(binom.sf(matched - 1, n_bits, 0.5))
    return ImageWatermarkResult(matched, n_bits, p_value, p_value < threshold)
