"""``lz4hdf5``: LZ4 in the framing of the HDF5 LZ4 filter (id 32004), as
ADSupport's lz4hdf5 library and Dectris' Stream2 write it.

Layout (all integers big-endian)::

    uint64  original size in bytes
    uint32  block size in bytes (a reader clamps it to the original size)
    per block: uint32 stored length, then that many bytes

Blocks hold ``block size`` raw bytes, the last one the remainder. A block
whose stored length equals its raw length is stored uncompressed (the
writer does that whenever LZ4 does not make the block smaller); any other
block is one raw LZ4 block.
"""
from __future__ import annotations

import numpy as np

from ..errors import CodecError, CorruptPayloadError
from . import register
from ._framing import (LZ4_MAX_INPUT_SIZE, be32, be32_bytes, be64, be64_bytes, byte_view,
                       lz4_compress_block, lz4_decompress_block, need)

NAME = "lz4hdf5"
HEADER_BYTES = 12
#: ADSupport's default block size (LZ4HDF5BlockSize = 0): 1 GiB, so a frame is usually one block.
DEFAULT_BLOCK_SIZE = 1 << 30


class Lz4Hdf5Codec:
    name = NAME

    def encode(self, data: np.ndarray, block_size: int = DEFAULT_BLOCK_SIZE) -> np.ndarray:
        """``block_size``: raw bytes per block (0 means the default, 1 GiB)."""
        raw = byte_view(NAME, data)
        block_size = int(block_size) or DEFAULT_BLOCK_SIZE
        if not 0 < block_size <= LZ4_MAX_INPUT_SIZE:
            raise CodecError(
                f"{NAME}: block_size must be 1..{LZ4_MAX_INPUT_SIZE} bytes, got {block_size}")
        total = raw.size
        block_size = min(block_size, total)
        parts = [be64_bytes(total), be32_bytes(block_size)]
        for start in range(0, total, block_size or 1):
            chunk = raw[start:start + block_size]
            packed = lz4_compress_block(NAME, chunk)
            if len(packed) >= chunk.size:      # LZ4 did not help: store the block raw
                packed = chunk.tobytes()
            parts.append(be32_bytes(len(packed)))
            parts.append(packed)
        return np.frombuffer(b"".join(parts), dtype=np.uint8)

    def decode(self, payload: np.ndarray, dtype: np.dtype, uncompressed_size: int) -> np.ndarray:
        need(NAME, payload, HEADER_BYTES, "the 12-byte header")
        total = be64(payload, 0)
        if total != uncompressed_size:
            raise CorruptPayloadError(
                f"{NAME}: header says {total} uncompressed bytes, uncompressedSize is "
                f"{uncompressed_size}")
        block = min(be32(payload, 8), total)
        if total and not block:
            raise CorruptPayloadError(f"{NAME}: header block size is 0 for {total} bytes")
        end = payload.size
        pos = HEADER_BYTES
        if total == 0:
            out = np.empty(0, np.uint8)
        elif total <= block:      # one block (the usual case): decode straight into the result
            out, pos, stored = self._block(payload, pos, total, 0, 1)
            if stored:
                out = out.copy()              # a view of the payload: the result must be writable
        else:
            nblocks = -(-total // block)
            # every block takes at least 5 bytes (length field + 1 byte)
            need(NAME, payload, HEADER_BYTES + 5 * nblocks, f"{nblocks} blocks of {block} bytes")
            out = np.empty(total, np.uint8)
            for i in range(nblocks):
                start = i * block
                raw = min(block, total - start)
                out[start:start + raw], pos, _ = self._block(payload, pos, raw, i, nblocks)
        if pos != end:
            raise CorruptPayloadError(
                f"{NAME}: blocks end at byte {pos}, payload is {end} bytes")
        return out.view(dtype)

    @staticmethod
    def _block(payload: np.ndarray, pos: int, raw: int, index: int, nblocks: int):
        """``(data, next_pos, stored)`` for the block whose length field is at
        ``pos`` and that holds ``raw`` bytes. A stored block's data is a view
        of the payload (``stored`` True), a compressed one's a new writable array."""
        what = f"block {index} of {nblocks}"
        need(NAME, payload, pos + 4, f"the length of {what}")
        stored = be32(payload, pos)
        start = pos + 4
        stop = start + stored
        if stop > payload.size:
            raise CorruptPayloadError(
                f"{NAME}: {what} claims {stored} bytes at byte {start}, only "
                f"{payload.size - start} remain")
        if stored == raw:
            return payload[start:stop], stop, True
        if stored > raw:
            raise CorruptPayloadError(
                f"{NAME}: {what} stores {stored} bytes for {raw} raw bytes")
        data = lz4_decompress_block(NAME, payload[start:stop], raw, what)
        return np.frombuffer(data, dtype=np.uint8), stop, False


CODEC = Lz4Hdf5Codec()
register(CODEC)
