"""Compiled checks of a bslz4 payload's block framing, run before the
bitshuffle library sees the payload (imported on first use: it needs numba).

bitshuffle's decoder is not told the payload length: it follows the
per-block length fields and decodes each block with LZ4_decompress_fast,
which trusts its input. :func:`scan` therefore

* walks the length fields and checks that every block lies inside the
  payload (so the decoder never starts a block out of bounds; a zero length
  is refused), and
* fully parses the LZ4 sequences of the blocks near the end of the payload
  (:func:`lz4_block_ok`), so that no decoding can run off the end.

Why the second check only near the end is enough: bitshuffle bundles LZ4
1.10, whose LZ4_decompress_fast reads the input strictly in order, copies
literals exactly, rejects match offsets that point before the output and
stops once the block's output (B bytes) is full. Each sequence reads at
most its output plus 1/255 of its literal length, so decoding one block
reads at most B + B/255 + a few bytes, then possibly one last run of 0xFF
length bytes, after which it fails. The last block's length field is below
0x7F000000 (LZ4 blocks are < 2 GiB), so its first byte is never 0xFF and
ends any such run, and it lies at most tail + 4 + B + B/255 + 16 bytes
before the end. So a block whose length field is more than
:func:`check_from` bytes before the end cannot read past the payload; the
blocks after that point are parsed here, and a block that parses reads
exactly its own bytes.
"""
from __future__ import annotations

import numpy as np
from numba import njit

OK = 0
TRUNCATED_LENGTH = 1     # no room for the 4-byte length field
OVERRUN = 2              # the length field points past the end of the payload
TOO_LONG = 3             # longer than LZ4 can produce for the block
BAD_LZ4 = 4              # not a valid LZ4 block of the expected size


def check_from(size, block_bytes, tail_bytes):
    """Position from which :func:`scan` must parse the LZ4 blocks of a
    ``size``-byte payload (see the module docstring)."""
    return size - tail_bytes - (2 * block_bytes + block_bytes // 64 + 256)


@njit(cache=True, nogil=True)
def lz4_block_ok(buf, start, stop, out_size):
    """Whether ``buf[start:stop]`` is a well-formed raw LZ4 block that
    expands to exactly ``out_size`` bytes (no data is decoded)."""
    ip = start
    op = 0
    while ip < stop:
        token = np.int64(buf[ip])
        ip += 1
        lit = token >> 4
        if lit == 15:
            while True:
                if ip >= stop:
                    return False
                b = np.int64(buf[ip])
                ip += 1
                lit += b
                if b != 255:
                    break
        if lit > stop - ip or lit > out_size - op:
            return False
        ip += lit
        op += lit
        if ip == stop:                 # the last sequence holds literals only
            return op == out_size
        if stop - ip < 2:
            return False
        offset = np.int64(buf[ip]) | (np.int64(buf[ip + 1]) << 8)
        ip += 2
        if offset == 0 or offset > op:
            return False
        match = token & 15
        if match == 15:
            while True:
                if ip >= stop:
                    return False
                b = np.int64(buf[ip])
                ip += 1
                match += b
                if b != 255:
                    break
        match += 4
        if match > out_size - op:
            return False
        op += match
    return False


@njit(cache=True, nogil=True)
def walk(buf, pos, nblocks, block_bytes, last_bytes, check_from, comp_off, comp_size):
    """THE walk of a bslz4 payload's blocks (the host codec checks with it,
    pvagpu.gpu.decode plans nvcomp's batch with it): ``nblocks`` blocks
    framed as (uint32 BE length, LZ4 block) from ``buf[pos]``; every block
    expands to ``block_bytes`` except the last, which expands to
    ``last_bytes`` when that is not 0. Blocks whose length field is at or
    after ``check_from`` are parsed with :func:`lz4_block_ok`; a zero
    length is never a valid LZ4 block. When ``comp_off`` and ``comp_size``
    (int64) hold ``nblocks`` entries, the offset and length of each block's
    data are written to them.

    Returns ``(status, block index, position, value)``: on success
    ``(OK, nblocks, end of the last block, 0)``; otherwise the failing block,
    the position of its data (its length field for TRUNCATED_LENGTH) and its
    length field.
    """
    n = buf.shape[0]
    record = comp_off.shape[0] >= nblocks and comp_size.shape[0] >= nblocks
    for i in range(nblocks):
        if n - pos < 4:
            return TRUNCATED_LENGTH, i, pos, 0
        clen = ((np.int64(buf[pos]) << 24) | (np.int64(buf[pos + 1]) << 16)
                | (np.int64(buf[pos + 2]) << 8) | np.int64(buf[pos + 3]))
        deep = pos >= check_from
        pos += 4
        if clen > n - pos:
            return OVERRUN, i, pos, clen
        out_size = block_bytes
        if i == nblocks - 1 and last_bytes:
            out_size = last_bytes
        if clen > out_size + out_size // 255 + 16:
            return TOO_LONG, i, pos, clen
        if clen == 0 or (deep and not lz4_block_ok(buf, pos, pos + clen, out_size)):
            return BAD_LZ4, i, pos, clen
        if record:
            comp_off[i] = pos
            comp_size[i] = clen
        pos += clen
    return OK, nblocks, pos, 0


@njit(cache=True, nogil=True)
def scan(buf, pos, nblocks, block_bytes, last_bytes, check_from):
    """:func:`walk` without recording the blocks (the host codec's check)."""
    none = np.empty(0, np.int64)
    return walk(buf, pos, nblocks, block_bytes, last_bytes, check_from, none, none)
