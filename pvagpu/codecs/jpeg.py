"""``jpeg``: a complete JFIF file (libjpeg in NDPluginCodec), 8-bit data only.

Encoding takes a mono ``(ny, nx)`` or pixel-interleaved RGB ``(ny, nx, 3)``
array of uint8 or int8 (int8 bytes are coded as they are). Decoding yields
the bytes of a mono or pixel-interleaved RGB image: for a frame published
as RGB2/RGB3 the decoded bytes are in RGB1 order, as NDPluginCodec's own
decoder produces them.

Mono images are decoded straight into the result: the Pillow image's
memory is mapped onto the output array before loading (Pillow's own
``frombuffer`` mechanism), which saves Pillow's ``tobytes`` and a copy,
about a third of the decode time at 4096x4096. Should a Pillow version not
decode into the mapped memory, that is noticed and the pixels are copied;
``decode(..., in_place=False)`` always copies them.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..errors import CodecError, CorruptPayloadError
from . import register
from ._framing import library_error

NAME = "jpeg"
_MODES = {"L": 1, "RGB": 3}
_EOI = b"\xff\xd9"


def _check_8bit(dtype: np.dtype, action: str) -> None:
    if dtype.itemsize != 1 or dtype.kind not in "ui":
        raise CodecError(f"{NAME}: cannot {action} {dtype.name} data; JPEG holds uint8/int8 only")


class JpegCodec:
    name = NAME
    #: colour is always pixel-interleaved in the payload, whatever ColorMode
    #: says; pvagpu.ntnda keeps the mode's dims and interleaves around the codec
    interleaves_color = True

    def encode(self, data: np.ndarray, quality: int = 90) -> np.ndarray:
        arr = np.ascontiguousarray(data)
        _check_8bit(arr.dtype, "encode")
        if not 1 <= int(quality) <= 100:
            raise CodecError(f"{NAME}: quality must be 1..100, got {quality}")
        if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)) or arr.size == 0:
            raise CodecError(
                f"{NAME}: need a non-empty (ny, nx) or (ny, nx, 3) array, got shape {arr.shape}")
        image = Image.fromarray(arr.view(np.uint8))
        buf = io.BytesIO()
        try:
            image.save(buf, format="JPEG", quality=int(quality))
        except (OSError, ValueError) as exc:
            raise CodecError(f"{NAME}: Pillow cannot encode: {exc}") from exc
        return np.frombuffer(buf.getvalue(), dtype=np.uint8)

    def decode(self, payload: np.ndarray, dtype: np.dtype, uncompressed_size: int, *,
               in_place: bool = True) -> np.ndarray:
        """``in_place=False``: copy the pixels out of Pillow even for a mono
        image (the result is the same)."""
        _check_8bit(dtype, "decode to")
        # Pillow may be configured process-wide to accept truncated files;
        # a JPEG that does not end with its EOI marker is rejected here.
        if payload.size < 4 or payload[-2:].tobytes() != _EOI:
            raise CorruptPayloadError(
                f"{NAME}: payload of {payload.size} bytes does not end with the JPEG EOI marker "
                f"(truncated)")
        try:
            image = Image.open(io.BytesIO(payload), formats=("JPEG",))
            bands = _MODES.get(image.mode)
            if bands is None:
                raise CodecError(f"{NAME}: unsupported JPEG mode {image.mode!r} (need L or RGB)")
            nx, ny = image.size
            if nx * ny * bands != uncompressed_size:
                raise CorruptPayloadError(
                    f"{NAME}: image is {ny}x{nx}x{bands} = {nx * ny * bands} bytes, "
                    f"uncompressedSize is {uncompressed_size}")
            out = np.empty(uncompressed_size, dtype=np.uint8)
            if not (in_place and bands == 1 and _load_into(image, out)):
                image.load()                      # (a no-op if _load_into loaded it)
                out[:] = np.asarray(image).reshape(-1)
        except CodecError:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            # UnidentifiedImageError is an OSError
            raise library_error(NAME, exc) from exc
        return out.view(dtype)


def _load_into(image, out: np.ndarray) -> bool:
    """Load a mono ``image`` with its pixel memory mapped onto ``out``;
    whether the pixels did land in ``out`` (else the caller copies them)."""
    try:
        mapped = Image.core.map_buffer(out, image.size, "raw", 0, ("L", 0, 1))
    except (AttributeError, TypeError, ValueError):
        return False
    image.im = mapped              # ImageFile.load decodes into an existing image memory
    image.load()
    return image.im is mapped


CODEC = JpegCodec()
register(CODEC)
