"""Run by tests/test_kernels.py in a subprocess with NUMBA_ENABLE_CUDASIM=1
set before numba is imported: every kernel under the CUDA simulator,
compared bit for bit with the bitshuffle library and the CPU reference.
Prints one line per case and exits non-zero on the first mismatch."""
import os
import sys

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"

import bitshuffle  # noqa: E402
import numpy as np  # noqa: E402

from pvagpu.kernels import bitunshuffle as bu  # noqa: E402
from pvagpu.testing import cudasim  # noqa: E402

assert cudasim.install(), "the CUDA simulator is not active"

# (dtype, n, block (0 = default), threads per block). Small on purpose: the
# simulator runs one Python thread per CUDA thread, and each warp of the
# fast kernel costs about 0.15 s per bit-row transpose (8 per element byte),
# so every case has as few tiles as the code path it covers needs.
CASES = [
    (np.uint8, 0, 0, 32),          # empty
    (np.uint16, 5, 0, 32),         # raw tail only
    (np.uint8, 2061, 0, 128),      # partial block: 2 full tiles + an 8-element tile; tail 5
    (np.int16, 1024 + 200 + 3, 1024, 64),  # a full 1024 block; partial 200 (rows not 4-aligned); tail 3
    (np.float32, 64 + 8 + 1, 64, 64),  # 4-byte elements; a non-default block below one tile;
                                       # partial 8; tail 1
    (np.float64, 8 + 7, 0, 32),    # 8-byte elements, default block: partial 8; tail 7
]


def main():
    rng = np.random.default_rng(7)
    for dtype, n, block, threads in CASES:
        dtype = np.dtype(dtype)
        e = dtype.itemsize
        data = rng.integers(0, 256, n * e, dtype=np.uint8).view(dtype)
        shuffled = bitshuffle.bitshuffle(data, block).view(np.uint8)
        expect = bitshuffle.bitunshuffle(shuffled.view(dtype), block).view(np.uint8)
        assert np.array_equal(expect, data.view(np.uint8))
        name = f"{dtype.name} n={n} block={block or 'default'}"
        ref = bu.bitunshuffle_reference(shuffled, n, e, block)
        check(ref, expect, "reference", name)
        out = np.zeros(n, dtype)
        bu.launch_bitunshuffle(shuffled.copy(), out, n, e, block, threads=threads)
        check(out.view(np.uint8), expect, "bitunshuffle_kernel", name)
        if n * e <= 2100:       # one simulator thread per byte: keep it short
            out_bytes = np.zeros(n * e, np.uint8)
            bu.launch_bitunshuffle_bytes(shuffled, out_bytes, n, e, block, threads=64)
            check(out_bytes, expect, "bitunshuffle_bytes_kernel", name)
    # unaligned source: the kernel must fall back to byte loads
    data = rng.integers(0, 256, 1024 * 2, dtype=np.uint8).view(np.uint16)
    shuffled = bitshuffle.bitshuffle(data).view(np.uint8)
    padded = np.empty(shuffled.size + 1, np.uint8)
    padded[1:] = shuffled
    out = np.zeros(1024, np.uint16)
    bu.launch_bitunshuffle(padded[1:], out, 1024, 2, threads=64)
    check(out.view(np.uint8), data.view(np.uint8), "bitunshuffle_kernel", "unaligned source")
    print("ALL OK")


def check(got, expect, kernel, name):
    if not np.array_equal(got, expect):
        bad = np.flatnonzero(got != expect)
        print(f"MISMATCH {kernel} {name}: {bad.size} bytes differ, first at {bad[:8]}")
        sys.exit(1)
    print(f"ok {kernel} {name}")


if __name__ == "__main__":
    main()
