"""``lz4``: the whole frame as one raw LZ4 block (NDPluginCodec's
LZ4_compress_default): no frame magic, no size prefix, no checksum; the
decoder takes the size from the NTNDArray's uncompressedSize.

pvapy's sim server (``-hcm``) also sends HDF5 LZ4-filter chunks under the
name "lz4"; such a payload starts with its size as a big-endian uint64 and
is handed to the ``lz4hdf5`` codec (see :func:`is_hdf5_chunk`).
"""
from __future__ import annotations

import numpy as np

from ..errors import CorruptPayloadError
from . import get, register
from ._framing import be64, byte_view, lz4_compress_block, lz4_decompress_block

NAME = "lz4"


def is_hdf5_chunk(payload: np.ndarray, uncompressed_size: int) -> bool:
    """Whether ``payload`` is an HDF5 LZ4-filter chunk rather than a raw block.

    The chunk header is the uncompressed size as a big-endian uint64, so for
    any frame under 2**56 bytes it starts with a zero byte. A raw LZ4 block
    of a non-empty frame never does: its first byte is a token whose high
    nibble counts the leading literals; zero literals means the first
    sequence is a match, whose offset would point before the start of the
    output, which is invalid (the only valid block starting with 0x00 is the
    one-byte block of an empty frame). So the test cannot misfire on a
    valid raw block.
    """
    return payload.size >= 12 and be64(payload, 0) == uncompressed_size


class Lz4Codec:
    name = NAME

    def encode(self, data: np.ndarray) -> np.ndarray:
        return np.frombuffer(lz4_compress_block(NAME, byte_view(NAME, data)), dtype=np.uint8)

    def decode(self, payload: np.ndarray, dtype: np.dtype, uncompressed_size: int) -> np.ndarray:
        if is_hdf5_chunk(payload, uncompressed_size):
            try:
                return get("lz4hdf5").decode(payload, dtype, uncompressed_size)
            except CorruptPayloadError as exc:
                raise CorruptPayloadError(f"lz4 (an HDF5 LZ4-filter chunk): {exc}") from exc
        out = lz4_decompress_block(NAME, payload, uncompressed_size)
        return np.frombuffer(out, dtype=dtype)


CODEC = Lz4Codec()
register(CODEC)
