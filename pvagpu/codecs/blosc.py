"""``blosc``: a standard blosc1 buffer (c-blosc, as NDPluginCodec writes it).

The 16-byte header (little-endian): [0] format version (2), [1] codec
format version, [2] flags, [3] typesize, [4:8] uncompressed bytes, [8:12]
block size, [12:16] total compressed bytes including the header; then,
unless the data is stored raw (flag 0x02), one int32 start offset per
block. The stream is self-describing (compressor, shuffle and level are
not sent on PVA).

c-blosc is given neither the payload length nor the output size: it takes
both from the header. Since 1.21 (bundled by python-blosc >= 1.11) it
bounds-checks the block offsets, split lengths, block size and typesize
against the header's compressed size, so checking the header's two sizes
here, against the real payload length and uncompressedSize, is what makes
decoding a hostile payload safe.
"""
from __future__ import annotations

import struct

import blosc as _blosc
import numpy as np
from blosc import blosc_extension as _blosc_extension

from ..errors import CodecError, CorruptPayloadError
from . import register
from ._framing import address_of, byte_view, library_error, need

NAME = "blosc"
HEADER_BYTES = 16
#: the blosc1 header format version that c-blosc 1.x writes and reads
FORMAT_VERSION = 2
SHUFFLES = {0: "no shuffle", 1: "byte shuffle", 2: "bit shuffle"}
_HEADER = struct.Struct("<B3xI4xI")     # version, nbytes, ctbytes


class BloscCodec:
    name = NAME

    def encode(self, data: np.ndarray, clevel: int = 5, shuffle: int = 1,
               cname: str = "lz4") -> np.ndarray:
        """``shuffle``: 0 none, 1 byte (blosc.SHUFFLE), 2 bit (blosc.BITSHUFFLE);
        ``cname``: one of ``blosc.compressor_list()`` (blosclz, lz4, lz4hc,
        zlib, zstd; snappy when the library has it)."""
        arr = np.ascontiguousarray(data)
        raw = byte_view(NAME, arr)
        if not 0 <= int(clevel) <= 9:
            raise CodecError(f"{NAME}: clevel must be 0..9, got {clevel}")
        if int(shuffle) not in SHUFFLES:
            raise CodecError(f"{NAME}: shuffle must be 0, 1 or 2, got {shuffle}")
        if cname not in _blosc.compressor_list():
            raise CodecError(
                f"{NAME}: compressor {cname!r} not available; have "
                f"{', '.join(_blosc.compressor_list())}")
        if raw.size > _blosc.MAX_BUFFERSIZE:
            raise CodecError(f"{NAME}: blosc holds at most {_blosc.MAX_BUFFERSIZE} bytes")
        typesize = arr.dtype.itemsize if arr.dtype.itemsize <= _blosc.MAX_TYPESIZE else 1
        packed = _blosc.compress(raw, typesize=typesize, clevel=int(clevel),
                                 shuffle=int(shuffle), cname=cname)
        return np.frombuffer(packed, dtype=np.uint8)

    def decode(self, payload: np.ndarray, dtype: np.dtype, uncompressed_size: int) -> np.ndarray:
        self.check_header(payload, uncompressed_size)
        out = np.empty(uncompressed_size // dtype.itemsize, dtype=dtype)
        try:
            written = _blosc.decompress_ptr(payload, address_of(out))
        except (_blosc_extension.error, RuntimeError, ValueError) as exc:
            raise library_error(NAME, exc) from exc
        if written != uncompressed_size:
            raise CorruptPayloadError(
                f"{NAME}: decoded {written} bytes, expected {uncompressed_size}")
        return out

    @staticmethod
    def check_header(payload: np.ndarray, uncompressed_size: int) -> None:
        """Raise CorruptPayloadError unless the header's format version and
        sizes agree with the payload length and ``uncompressed_size``."""
        need(NAME, payload, HEADER_BYTES, "the 16-byte header")
        version, nbytes, ctbytes = _HEADER.unpack_from(payload)
        if version != FORMAT_VERSION:
            raise CorruptPayloadError(
                f"{NAME}: header format version {version}, expected {FORMAT_VERSION}")
        if nbytes != uncompressed_size:
            raise CorruptPayloadError(
                f"{NAME}: header says {nbytes} uncompressed bytes, uncompressedSize is "
                f"{uncompressed_size}")
        if ctbytes != payload.size:
            raise CorruptPayloadError(
                f"{NAME}: header says {ctbytes} compressed bytes, payload is {payload.size} bytes")


CODEC = BloscCodec()
register(CODEC)
