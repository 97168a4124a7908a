"""Helpers shared by the codec modules: big-endian readers and writers,
size checks, translation of library exceptions, and the raw LZ4 block
calls that both ``lz4`` and ``lz4hdf5`` use. Nothing here is a codec."""
from __future__ import annotations

import ctypes
import struct

import lz4.block as _lz4block
import numpy as np

from ..errors import CodecError, CorruptPayloadError

#: LZ4's largest input (LZ4_MAX_INPUT_SIZE): no LZ4 block holds more.
LZ4_MAX_INPUT_SIZE = 0x7E000000

_BE32 = struct.Struct(">I")
_BE64 = struct.Struct(">Q")


def be32(buf, pos: int) -> int:
    """Unsigned big-endian 32-bit integer at ``buf[pos:pos+4]`` (caller checks the length)."""
    return _BE32.unpack_from(buf, pos)[0]


def be64(buf, pos: int) -> int:
    """Unsigned big-endian 64-bit integer at ``buf[pos:pos+8]`` (caller checks the length)."""
    return _BE64.unpack_from(buf, pos)[0]


def be32_bytes(value: int) -> bytes:
    return _BE32.pack(value)


def be64_bytes(value: int) -> bytes:
    return _BE64.pack(value)


def address_of(arr: np.ndarray) -> int:
    """Address of a writable contiguous array's data, for C calls that take
    a pointer; about 0.2 us where ``arr.ctypes.data`` takes 1.3-2 us."""
    if arr.nbytes:
        return ctypes.addressof(ctypes.c_char.from_buffer(arr))
    return arr.ctypes.data


def need(codec: str, payload: np.ndarray, end: int, what: str) -> None:
    """Raise CorruptPayloadError unless ``payload`` holds at least ``end`` bytes."""
    if payload.size < end:
        raise CorruptPayloadError(
            f"{codec}: payload truncated: {what} needs {end} bytes, payload has {payload.size}")


def library_error(codec: str, exc: BaseException) -> CorruptPayloadError:
    """The CorruptPayloadError for an exception that a compression library
    raised on bad input; raise it ``from exc`` so that the cause stays chained.
    (Call sites use plain try/except: a context manager costs ~1.5 us a call.)"""
    return CorruptPayloadError(f"{codec}: corrupt payload: {exc}")


def byte_view(codec: str, data: np.ndarray) -> np.ndarray:
    """The raw bytes of a C-contiguous array as a 1-D uint8 view (for encoders)."""
    data = np.ascontiguousarray(data)
    if data.dtype.hasobject:
        raise CodecError(f"{codec}: cannot encode an array of dtype {data.dtype}")
    return data.reshape(-1).view(np.uint8)


def lz4_compress_block(codec: str, raw) -> bytes:
    """One raw LZ4 block (no size prefix) of ``raw`` (bytes or a 1-D uint8 array)."""
    if len(raw) > LZ4_MAX_INPUT_SIZE:
        raise CodecError(f"{codec}: an LZ4 block holds at most {LZ4_MAX_INPUT_SIZE} bytes")
    return _lz4block.compress(raw, store_size=False)


def lz4_decompress_block(codec: str, src, raw_size: int, what: str = "payload") -> bytearray:
    """Decode one raw LZ4 block that must expand to exactly ``raw_size`` bytes.

    Returns a bytearray (writable, so ``np.frombuffer`` of it needs no copy).
    python-lz4 uses LZ4_decompress_safe, which never reads or writes out of
    bounds, but it accepts a block that expands to *fewer* bytes than asked
    for; that is checked here."""
    if raw_size > LZ4_MAX_INPUT_SIZE:
        raise CorruptPayloadError(
            f"{codec}: {what} would expand to {raw_size} bytes; one LZ4 block holds at most "
            f"{LZ4_MAX_INPUT_SIZE}")
    try:
        out = _lz4block.decompress(src, uncompressed_size=raw_size, return_bytearray=True)
    except (_lz4block.LZ4BlockError, ValueError, OverflowError) as exc:
        raise library_error(codec, exc) from exc
    if len(out) != raw_size:
        raise CorruptPayloadError(
            f"{codec}: {what} expands to {len(out)} bytes, expected {raw_size}")
    return out
