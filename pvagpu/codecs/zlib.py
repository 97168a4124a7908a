"""``zlib``: one zlib stream (compress2: 2-byte header, deflate data,
adler32), as NDPluginCodec writes it (ADCore master, 2026).

Decoding goes straight into the result array through zlib's own
``uncompress2`` (via ctypes, the same libz that Python's zlib module uses)
where that library can be found: the stdlib module can only return a
bytes object, and copying that into a writable array costs 10-15 % of the
decode time. Elsewhere, or with ``decode(..., use_libz=False)``, the stdlib
module is used, with that copy.
"""
from __future__ import annotations

import ctypes
import sys
import zlib as _zlib

import numpy as np

from ..errors import CodecError, CorruptPayloadError
from . import register
from ._framing import address_of, byte_view, library_error

NAME = "zlib"

_Z_OK, _Z_MEM_ERROR, _Z_BUF_ERROR = 0, -4, -5

_uncompress2 = None


def _find_uncompress2():
    """zlib's ``uncompress2`` from the shared libz, or None."""
    names = ["libz.so.1", "libz.dylib"] if sys.platform != "win32" else []
    for name in names:
        try:
            fn = ctypes.CDLL(name).uncompress2
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_ulong),
                       ctypes.c_void_p, ctypes.POINTER(ctypes.c_ulong)]
        fn.restype = ctypes.c_int
        return fn
    return None


def _libz():
    """zlib's ``uncompress2`` (looked up once), or False where there is none."""
    global _uncompress2
    if _uncompress2 is None:
        _uncompress2 = _find_uncompress2() or False
    return _uncompress2


class ZlibCodec:
    name = NAME

    def encode(self, data: np.ndarray, level: int = 6) -> np.ndarray:
        if not -1 <= int(level) <= 9:
            raise CodecError(f"{NAME}: level must be 0..9 (or -1 for the default), got {level}")
        return np.frombuffer(_zlib.compress(byte_view(NAME, data), int(level)), dtype=np.uint8)

    def decode(self, payload: np.ndarray, dtype: np.dtype, uncompressed_size: int, *,
               use_libz: bool = True) -> np.ndarray:
        """``use_libz=False``: the stdlib module even where libz's
        ``uncompress2`` is there (both paths give the same result)."""
        uncompress2 = _libz() if use_libz else False
        if uncompress2:
            return self._decode_libz(uncompress2, payload, dtype, uncompressed_size)
        return self._decode_stdlib(payload, dtype, uncompressed_size)

    @staticmethod
    def _decode_libz(uncompress2, payload, dtype, uncompressed_size):
        out = np.empty(uncompressed_size // dtype.itemsize, dtype=dtype)
        dest_len = ctypes.c_ulong(uncompressed_size)
        source_len = ctypes.c_ulong(payload.size)
        rc = uncompress2(address_of(out), ctypes.byref(dest_len),
                         payload.ctypes.data, ctypes.byref(source_len))
        if rc == _Z_BUF_ERROR:   # the output filled up before the stream ended
            raise CorruptPayloadError(
                f"{NAME}: stream decodes to more than uncompressedSize {uncompressed_size} bytes")
        if rc == _Z_MEM_ERROR:
            raise MemoryError(f"{NAME}: zlib ran out of memory")
        if rc != _Z_OK:          # Z_DATA_ERROR: corrupt, truncated, or a preset dictionary
            raise CorruptPayloadError(
                f"{NAME}: corrupt or truncated stream (zlib error {rc}) after "
                f"{source_len.value} of {payload.size} bytes")
        _check_lengths(dest_len.value, uncompressed_size, source_len.value, payload.size)
        return out

    @staticmethod
    def _decode_stdlib(payload, dtype, uncompressed_size):
        inflater = _zlib.decompressobj()
        try:
            # one byte more than expected, so that a longer stream shows
            data = inflater.decompress(payload, uncompressed_size + 1)
        except _zlib.error as exc:
            raise library_error(NAME, exc) from exc
        if len(data) > uncompressed_size:
            raise CorruptPayloadError(
                f"{NAME}: stream decodes to more than uncompressedSize {uncompressed_size} bytes")
        if not inflater.eof:
            raise CorruptPayloadError(
                f"{NAME}: stream truncated: ends after {len(data)} of {uncompressed_size} bytes")
        used = payload.size - len(inflater.unused_data)
        _check_lengths(len(data), uncompressed_size, used, payload.size)
        out = np.empty(uncompressed_size // dtype.itemsize, dtype=dtype)
        out.view(np.uint8)[:] = np.frombuffer(data, dtype=np.uint8)
        return out


def _check_lengths(produced, expected, consumed, payload_size):
    if produced != expected:
        raise CorruptPayloadError(
            f"{NAME}: stream decodes to {produced} bytes, expected {expected}")
    if consumed != payload_size:
        raise CorruptPayloadError(
            f"{NAME}: stream ends at byte {consumed}, payload is {payload_size} bytes "
            f"(trailing data)")


CODEC = ZlibCodec()
register(CODEC)
