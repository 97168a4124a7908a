"""``bslz4``: bitshuffle + LZ4 as bitshuffle's ``bshuf_compress_lz4`` writes
it with block size 0 (the library default), without the HDF5 filter header.

Stream layout for n elements of ``itemsize`` bytes and a block of b
elements (b a multiple of 8)::

    n // b full blocks, each: uint32 BE length + LZ4 block of the
                              bit-transposed b elements
    one partial block of (n % b) rounded down to a multiple of 8 elements,
                              same framing (absent when that is 0)
    the last n % 8 elements, raw (no prefix)

The default b is max(128, (8192 // itemsize) // 8 * 8) elements (8 KiB
blocks), the decoder must use the producer's b, and NDPluginCodec always
uses the default. HDF5 chunks written by bitshuffle's filter 32008 (sent
as "bslz4" by pvapy's sim server with ``-hcm``) carry a 12-byte header:
uint64 BE total bytes, uint32 BE block size in *bytes*; such payloads are
recognised by the total matching uncompressedSize and decoded with the
block size they name.
"""
from __future__ import annotations

import bitshuffle as _bitshuffle
import numpy as np

from ..errors import CodecError, CorruptPayloadError
from . import register
from ._framing import LZ4_MAX_INPUT_SIZE, be32, be32_bytes, be64, be64_bytes, library_error

NAME = "bslz4"
HDF5_HEADER_BYTES = 12

_scan_module = None


def default_block_size(itemsize: int) -> int:
    """bitshuffle's default block size in elements (bshuf_default_block_size)."""
    return max(128, (8192 // itemsize) // 8 * 8)


def _scanner():
    """The compiled framing checks; numba is imported on first use only."""
    global _scan_module
    if _scan_module is None:
        from . import _bslz4_scan
        _scan_module = _bslz4_scan
    return _scan_module


class BsLz4Codec:
    name = NAME

    def encode(self, data: np.ndarray, block_size: int = 0,
               hdf5_header: bool = False) -> np.ndarray:
        """``block_size`` in elements, 0 = the default. A non-default block
        size is only readable with the HDF5 header (``hdf5_header=True``),
        which records it; NDPluginCodec-style payloads always use 0."""
        arr = np.ascontiguousarray(data).reshape(-1)
        if arr.dtype.hasobject:
            raise CodecError(f"{NAME}: cannot encode an array of dtype {arr.dtype}")
        itemsize = arr.dtype.itemsize
        block_size = int(block_size)
        if block_size and not hdf5_header:
            raise CodecError(
                f"{NAME}: block_size {block_size} needs hdf5_header=True; a headerless "
                f"payload is decoded with the default block size")
        block = block_size or default_block_size(itemsize)
        if block < 0 or block % 8 or block * itemsize > LZ4_MAX_INPUT_SIZE:
            raise CodecError(
                f"{NAME}: block_size must be a positive multiple of 8 elements, got {block_size}")
        try:
            out = _bitshuffle.compress_lz4(arr, block_size)
        except (RuntimeError, ValueError) as exc:
            raise CodecError(f"{NAME}: bitshuffle cannot encode: {exc}") from exc
        if hdf5_header:
            header = np.frombuffer(be64_bytes(arr.nbytes) + be32_bytes(block * itemsize),
                                   dtype=np.uint8)
            out = np.concatenate((header, out))
        return out

    def decode(self, payload: np.ndarray, dtype: np.dtype, uncompressed_size: int) -> np.ndarray:
        return with_layout(_decode, payload, dtype, uncompressed_size)

    def check(self, payload: np.ndarray, dtype: np.dtype, uncompressed_size: int) -> None:
        """The framing checks that :meth:`decode` makes first, without
        decoding (0.02 ms for a 2 MiB payload in the cache): a payload that
        passes cannot make bitshuffle's decoder read outside it."""
        with_layout(_check, payload, dtype, uncompressed_size)


def with_layout(fn, payload, dtype, uncompressed_size):
    """``fn(payload, start, block_bytes, dtype, uncompressed_size)`` for the
    layout of ``payload``: headerless with the default block size, or an
    HDF5 chunk whose 12-byte bitshuffle-filter header gives the block size.

    A headerless payload looks like an HDF5 chunk only when it is < 8
    elements of raw bytes that happen to read as the size (or by astronomic
    chance), so that layout is tried second; the HDF5 layout's error is the
    one reported."""
    default = default_block_size(dtype.itemsize) * dtype.itemsize
    if payload.size < HDF5_HEADER_BYTES or be64(payload, 0) != uncompressed_size:
        return fn(payload, 0, default, dtype, uncompressed_size)
    try:
        return fn(payload, HDF5_HEADER_BYTES, be32(payload, 8), dtype, uncompressed_size)
    except CorruptPayloadError as exc:
        try:
            return fn(payload, 0, default, dtype, uncompressed_size)
        except CorruptPayloadError:
            raise exc from exc.__cause__


def block_geometry(start, block_bytes, dtype, uncompressed_size):
    """``(block, nblocks, partial, tail)`` of a bslz4 stream: elements per
    block, LZ4 blocks (the full ones and a partial last one of ``partial``
    elements, a multiple of 8), and the raw tail bytes. CorruptPayloadError
    for a block size that is not a positive multiple of 8 elements."""
    itemsize = dtype.itemsize
    if (block_bytes <= 0 or block_bytes % itemsize or (block_bytes // itemsize) % 8
            or block_bytes > LZ4_MAX_INPUT_SIZE):
        raise CorruptPayloadError(
            f"{NAME}: {_block_text(start, block_bytes)} is not a positive multiple of 8 "
            f"{dtype.name} elements")
    block = block_bytes // itemsize
    n = uncompressed_size // itemsize
    partial = (n % block) // 8 * 8
    return block, n // block + (1 if partial else 0), partial, (n % 8) * itemsize


def _check(payload, start, block_bytes, dtype, uncompressed_size):
    """Check the framing of the blocks from ``payload[start]`` (every block
    inside the payload, the last ones parsed, the end where the size says);
    the block size in elements. CorruptPayloadError naming what disagrees."""
    itemsize = dtype.itemsize
    block, nblocks, partial, tail = block_geometry(start, block_bytes, dtype, uncompressed_size)
    n = uncompressed_size // itemsize
    size = payload.size
    scan = _scan_module or _scanner()
    status, index, pos, length = scan.scan(payload, start, nblocks, block_bytes,
                                           partial * itemsize,
                                           scan.check_from(size, block_bytes, tail))
    if status:
        raise _scan_error(scan, status, index, nblocks, pos, length, payload, start,
                          block_bytes, n, dtype)
    if pos + tail != size:
        raise CorruptPayloadError(
            f"{NAME}: {n} {dtype.name} elements ({_block_text(start, block_bytes)}) end at "
            f"byte {pos + tail}, payload is {size} bytes")
    return block


def _decode(payload, start, block_bytes, dtype, uncompressed_size):
    """Check the framing of the blocks from ``payload[start]``, then decode."""
    block = _check(payload, start, block_bytes, dtype, uncompressed_size)
    n = uncompressed_size // dtype.itemsize
    try:
        return _bitshuffle.decompress_lz4(payload[start:] if start else payload, (n,), dtype,
                                          block)
    except (RuntimeError, ValueError) as exc:
        raise library_error(NAME, exc) from exc


def _block_text(start, block_bytes):
    return f"{'HDF5-header ' if start else ''}block size {block_bytes} bytes"


def _scan_error(scan, status, index, nblocks, pos, length, payload, start, block_bytes, n,
                dtype):
    what = f"block {index} of {nblocks} ({_block_text(start, block_bytes)})"
    if status == scan.TRUNCATED_LENGTH:
        msg = f"payload truncated: the length of {what} needs bytes {pos}..{pos + 3}"
    elif status == scan.OVERRUN:
        msg = f"{what} claims {length} bytes at byte {pos}, only {payload.size - pos} remain"
    elif status == scan.TOO_LONG:
        msg = f"{what} claims {length} bytes, more than LZ4 writes for that block"
    else:
        msg = f"{what} ({length} bytes at byte {pos}) is not a valid LZ4 block"
    return CorruptPayloadError(
        f"{NAME}: {msg}; payload is {payload.size} bytes for {n} {dtype.name} elements")


CODEC = BsLz4Codec()
register(CODEC)
