"""Bit-unshuffle (the inverse of the bitshuffle library's bit transposition)
on the GPU, with its CPU reference.

The layout (bitshuffle ``bshuf_trans_bit_elem``, verified against the
bitshuffle package in tests/test_kernels.py)
--------------------------------------------------------------------------
A buffer of ``n`` elements of ``e`` bytes is cut into blocks of ``block``
elements (``block`` a multiple of 8; bitshuffle's default is
``max(128, (8192 // e) // 8 * 8)``, i.e. 8 KiB blocks). ``n // block`` full
blocks come first, then one partial block of ``(n % block) // 8 * 8``
elements that is shuffled as a block of its own, then the last ``n % 8``
elements, which are stored raw. Inside a block of ``nb`` elements the bits
form a matrix of ``8 * e`` bit-rows of ``nb`` bits (``nb / 8`` bytes) each:
bit-row ``r = 8 * j + k`` holds bit ``k`` of byte ``j`` of every element, and
element ``i`` of the block sits at bit ``i % 8`` of byte ``i // 8`` of its
row. Unshuffling reads, for byte ``j`` of element ``i``, the eight bits at
that position in rows ``8j .. 8j+7``::

    out[i, j] = sum_k bit(in[block_start + (8j + k) * nb/8 + i // 8], i % 8) << k

:func:`unshuffled_byte` is that formula, written once: compiled with
``njit`` it is the CPU reference (:func:`bitunshuffle_reference`), compiled
with ``cuda.jit(device=True)`` it is the body of the simple one-thread-per-byte
kernel :data:`bitunshuffle_bytes_kernel` (a second, obviously correct device
implementation that the device tests compare the fast kernel against).

The fast kernel (:data:`bitunshuffle_kernel`)
---------------------------------------------
One warp decodes one *tile* of 1024 elements (32 x 32) of one block; the
default blocks hold 1024, 2048, 4096 or 8192 elements, so they split into
whole tiles. For each of the ``8 * e`` bit-rows, the 1024 bits of the tile
are 128 consecutive bytes: lane ``L`` loads the 32-bit word ``L`` of them,
so a warp's load is one fully coalesced 128-byte transaction (a 32-bit load
when the row is 4-byte aligned, which holds for every default block; four
byte loads otherwise). Bit ``q`` of lane ``L``'s word belongs to element
``32 L + q``. A 32 x 32 bit-matrix transpose across the warp then gives
lane ``q`` the word whose bit ``l`` belongs to element ``32 l + q``: five
butterfly stages, each one ``shfl_xor_sync`` with lane distance
``s = 16, 8, 4, 2, 1`` and a mask/shift that swaps the off-diagonal
``s x s`` sub-blocks (Hacker's Delight's transpose32, with rows held by
lanes instead of registers), i.e. 5 shuffles per 32 x 32 bits instead of
32 ``ballot_sync`` calls. After all ``8 * e`` rows are transposed, lane
``q`` owns the ``e`` bytes of elements ``32 l + q`` (l = 0..31) and writes
each element as one unsigned integer of ``e`` bytes, so each of the warp's
32 stores is a coalesced run of ``32 * e`` bytes. Nothing goes through
shared memory; the element accumulators are a 32-entry local array that
the compiler keeps in registers once the constant-trip loops are unrolled.

A partial tile (a partial block, or a block size that is not a multiple of
1024) loads zeros past its end and stores only its own elements; every
active lane of a warp still executes every shuffle, as ``shfl_xor_sync``
with a full mask requires. The warp after the last tile copies the raw
``n % 8`` trailing elements. Warps with no work return before the first
shuffle, so control flow around the shuffles is warp-uniform (and
block-uniform for the live warps, which the CUDA simulator's emulation of
the shuffle in :mod:`pvagpu.testing.cudasim` relies on).

:func:`launch_bitunshuffle` launches it on a CuPy (or, in the simulator,
NumPy) buffer on a given stream.
"""
from __future__ import annotations

import numpy as np
from numba import cuda, int32, njit, uint32, uint64

from ..codecs.bslz4 import default_block_size

#: elements decoded by one warp
TILE = 1024
#: threads per CUDA block of the fast kernel (4 warps)
THREADS = 128
_FULL_MASK = 0xFFFFFFFF
#: unsigned integer dtype used to store an element of each size
UINT_FOR_SIZE = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16), 4: np.dtype(np.uint32),
                 8: np.dtype(np.uint64)}


# ---------------------------------------------------------------------------
# The per-byte formula, written once, compiled for the CPU and the device
# ---------------------------------------------------------------------------

def unshuffled_byte(src, i, j, n, e, block):
    """Byte ``j`` of element ``i`` of the unshuffled buffer ``src`` (uint8)."""
    nfull = n // block
    b = i // block
    if b < nfull:
        nb = block
    else:
        nb = (n - nfull * block) // 8 * 8
        if i >= nfull * block + nb:          # the raw tail
            return src[i * e + j]
    ii = i - b * block
    pos = b * block * e + 8 * j * (nb // 8) + ii // 8
    shift = ii % 8
    v = 0
    for k in range(8):
        v |= ((np.int64(src[pos + k * (nb // 8)]) >> shift) & 1) << k
    return np.uint8(v)


_unshuffled_byte_cpu = njit(cache=True, nogil=True)(unshuffled_byte)
_unshuffled_byte_dev = cuda.jit(device=True)(unshuffled_byte)


@njit(cache=True, nogil=True)
def _reference(src, dst, n, e, block):
    for i in range(n):
        for j in range(e):
            dst[i * e + j] = _unshuffled_byte_cpu(src, i, j, n, e, block)


def bitunshuffle_reference(src, n: int, itemsize: int, block: int = 0) -> np.ndarray:
    """CPU reference: the unshuffled bytes (uint8, ``n * itemsize``) of the
    bit-shuffled buffer ``src``; ``block`` in elements, 0 = the default."""
    block = int(block) or default_block_size(itemsize)
    _check(n, itemsize, block)
    src = np.ascontiguousarray(src).reshape(-1).view(np.uint8)
    if src.size < n * itemsize:
        raise ValueError(f"bit-shuffled buffer holds {src.size} bytes, {n} x {itemsize} needed")
    dst = np.empty(n * itemsize, np.uint8)
    _reference(src, dst, n, itemsize, block)
    return dst


def _check(n, itemsize, block):
    if itemsize not in UINT_FOR_SIZE:
        raise ValueError(f"element size must be 1, 2, 4 or 8 bytes, got {itemsize}")
    if block <= 0 or block % 8:
        raise ValueError(f"block must be a positive multiple of 8 elements, got {block}")
    if n < 0:
        raise ValueError(f"negative element count {n}")


@cuda.jit
def bitunshuffle_bytes_kernel(src, dst, n, e, block):
    """Simple device implementation: one thread per output byte (``dst`` uint8)."""
    p = cuda.grid(1)
    stride = cuda.gridsize(1)
    total = n * e
    while p < total:
        dst[p] = _unshuffled_byte_dev(src, p // e, p % e, n, e, block)
        p += stride


# ---------------------------------------------------------------------------
# The fast kernel
# ---------------------------------------------------------------------------

@cuda.jit(device=True)
def _row_word(src, src32, pos, valid, aligned):
    """The lane's 32-bit little-endian word of a bit-row: bytes ``pos..pos+3``
    of which the first ``valid`` (0..4) exist; the others read as 0."""
    if aligned and valid >= 4:
        return uint32(src32[pos >> 2])
    w = uint32(0)
    for q in range(4):
        if q < valid:
            w = uint32(w | (uint32(src[pos + q]) << uint32(8 * q)))
    return w


@cuda.jit(device=True)
def _transpose32(x, lane):
    """32 x 32 bit transpose across a warp: lane ``L`` holds row ``L`` in
    ``x``; afterwards lane ``q`` holds column ``q`` (bit ``l`` = old bit
    ``q`` of lane ``l``). Five butterfly stages; each swaps the off-diagonal
    s x s sub-blocks between lanes ``L`` and ``L ^ s``."""
    x = uint32(x)
    s = 16
    m = uint32(0x0000FFFF)
    for _ in range(5):
        # shfl_xor_sync takes signed ints: shuffle the same 32 bits as an int32
        y = uint32(cuda.shfl_xor_sync(_FULL_MASK, int32(x), s))
        if lane & s:
            x = uint32((x & uint32(~m)) | ((y >> uint32(s)) & m))
        else:
            x = uint32((x & m) | ((y & m) << uint32(s)))
        s >>= 1
        m = uint32(m ^ (m << uint32(s)))
    return x


@cuda.jit
def bitunshuffle_kernel(src, src32, dst, n, e, block, aligned):
    """Unshuffle ``src`` (uint8, n * e bytes; ``src32`` the same bytes as
    uint32, used when ``aligned``) into ``dst`` (n elements, unsigned int of
    e bytes). Launch with a multiple of 32 threads per block and at least
    :func:`warps_needed` warps (see :func:`launch_bitunshuffle`)."""
    lane = cuda.threadIdx.x & 31
    warp = (cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x) >> 5
    nfull = n // block
    partial = (n - nfull * block) // 8 * 8
    tiles_per_block = (block + TILE - 1) // TILE
    ntiles = nfull * tiles_per_block + (partial + TILE - 1) // TILE
    if warp > ntiles:
        return
    if warp == ntiles:                      # the raw tail: n % 8 elements
        first = nfull * block + partial
        i = first + lane
        if i < n:
            v = uint64(0)
            for j in range(e):
                v |= uint64(src[i * e + j]) << uint64(8 * j)
            dst[i] = v
        return
    if warp < nfull * tiles_per_block:
        b = warp // tiles_per_block
        t0 = (warp - b * tiles_per_block) * TILE
        nb = block
    else:
        b = nfull
        t0 = (warp - nfull * tiles_per_block) * TILE
        nb = partial
    m = min(TILE, nb - t0)                  # elements in this tile, a multiple of 8
    row = nb // 8                           # bytes per bit-row
    valid = m // 8 - 4 * lane               # bytes of this lane's word inside the tile
    row_aligned = aligned and (row % 4 == 0)
    pos0 = b * block * e + t0 // 8 + 4 * lane
    acc = cuda.local.array(32, uint64)
    for l in range(32):
        acc[l] = 0
    for j in range(e):
        for k in range(8):
            w = _row_word(src, src32, pos0 + (8 * j + k) * row, valid, row_aligned)
            w = _transpose32(w, lane)
            for l in range(32):
                acc[l] |= uint64((w >> uint32(l)) & uint32(1)) << uint64(8 * j + k)
    base = b * block + t0 + lane
    for l in range(32):
        if 32 * l + lane < m:
            dst[base + 32 * l] = acc[l]


def warps_needed(n: int, block: int) -> int:
    """Warps that :data:`bitunshuffle_kernel` needs: one per tile, plus one
    for the raw tail."""
    nfull = n // block
    partial = (n % block) // 8 * 8
    return nfull * (-(-block // TILE)) + (-(-partial // TILE)) + 1


def launch_bitunshuffle(src, dst, n: int, itemsize: int, block: int = 0, stream=0,
                        threads: int = THREADS):
    """Launch the fast kernel: ``src`` is the bit-shuffled bytes (1-D uint8
    device array, at least ``n * itemsize`` bytes), ``dst`` a 1-D device array
    of ``n`` elements of any ``itemsize``-byte dtype (written through an
    unsigned view). ``stream``: a numba stream (``cuda.external_stream`` of a
    CuPy stream) or 0."""
    block = int(block) or default_block_size(itemsize)
    _check(n, itemsize, block)
    if threads % 32 or threads <= 0:
        raise ValueError("threads per block must be a positive multiple of 32")
    if n == 0:
        return
    out = dst.view(UINT_FOR_SIZE[itemsize])
    nbytes = n * itemsize
    address = _address(src)
    aligned = address % 4 == 0 and nbytes >= 4
    src32 = (src[: nbytes // 4 * 4] if aligned else src[:0]).view(np.uint32)
    grid = -(-warps_needed(n, block) * 32 // threads)
    bitunshuffle_kernel[grid, threads, stream](src, src32, out, n, itemsize, block, aligned)


def _address(arr) -> int:
    iface = getattr(arr, "__cuda_array_interface__", None) or arr.__array_interface__
    return int(iface["data"][0])


def launch_bitunshuffle_bytes(src, dst_bytes, n: int, itemsize: int, block: int = 0,
                              stream=0, threads: int = 256):
    """Launch the simple kernel (``dst_bytes``: uint8, ``n * itemsize``)."""
    block = int(block) or default_block_size(itemsize)
    _check(n, itemsize, block)
    total = n * itemsize
    if total == 0:
        return
    grid = min(-(-total // threads), 65535)
    bitunshuffle_bytes_kernel[grid, threads, stream](src, dst_bytes, n, itemsize, block)


#: (kernel, signatures) for the PTX compile test: every kernel with the
#: argument types it is launched with.
PTX_SIGNATURES = [
    (bitunshuffle_kernel, [
        f"void(uint8[::1], uint32[::1], {t}[::1], int64, int64, int64, boolean)"
        for t in ("uint8", "uint16", "uint32", "uint64")]),
    (bitunshuffle_bytes_kernel, ["void(uint8[::1], uint8[::1], int64, int64, int64)"]),
]
