"""Local maxima for Bragg-peak finding, on the GPU and on the CPU.

A pixel ``(y, x)`` of value ``v`` is a peak when ``v > threshold`` and no
pixel within ``d`` rows and ``d`` columns of it (the window clipped at the
image's edges) is larger, and the pixels before it in raster order
(smaller row, or same row and smaller column) are strictly smaller: of a
plateau of equal maxima only the first pixel in raster order is a peak,
so no two peaks are within ``d`` rows and ``d`` columns of each other.

:func:`is_peak` is that rule, written once: compiled with ``njit`` it is
the CPU scan (:func:`peak_mask_cpu`, rows in parallel, cheap for the
usual frame where most pixels are below the threshold), compiled with
``cuda.jit(device=True)`` the body of :data:`peak_mask_kernel` (one thread
per pixel, a 2-D grid). Both write a uint8 mask; the peaks are its
nonzero pixels in raster order (``flatnonzero``), so both give the same
list in the same order.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import cuda

#: threads per block of the kernel (16 x 16)
BLOCK = (16, 16)


def is_peak(image, y, x, d, threshold):
    """1 if pixel ``(y, x)`` of ``image`` is a peak (module docstring), else 0."""
    v = np.float64(image[y, x])
    if not v > threshold:
        return 0
    ny, nx = image.shape
    y0 = max(y - d, 0)
    y1 = min(y + d + 1, ny)
    x0 = max(x - d, 0)
    x1 = min(x + d + 1, nx)
    for yy in range(y0, y1):
        for xx in range(x0, x1):
            u = np.float64(image[yy, xx])
            if u > v:
                return 0
            if u == v and (yy < y or (yy == y and xx < x)):
                return 0
    return 1


_is_peak_cpu = numba.njit(nogil=True, cache=True)(is_peak)
_is_peak_dev = cuda.jit(device=True)(is_peak)


@numba.njit(parallel=True, nogil=True, cache=True)
def _scan(image, d, threshold, mask):
    ny, nx = image.shape
    for y in numba.prange(ny):
        for x in range(nx):
            if image[y, x] > threshold:
                mask[y, x] = _is_peak_cpu(image, y, x, d, threshold)
            else:
                mask[y, x] = 0


def peak_mask_cpu(image: np.ndarray, d: int, threshold: float) -> np.ndarray:
    """The peak mask (uint8, the image's shape) of a 2-D NumPy image."""
    mask = np.empty(image.shape, np.uint8)
    _scan(image, int(d), float(threshold), mask)
    return mask


@cuda.jit
def peak_mask_kernel(image, d, threshold, mask):
    """``mask[y, x] = is_peak(image, y, x, d, threshold)``; a 2-D grid of
    at least the image's shape (x fastest)."""
    x, y = cuda.grid(2)
    ny, nx = image.shape
    if y < ny and x < nx:
        mask[y, x] = _is_peak_dev(image, y, x, d, threshold)


def launch_peak_mask(image, d: int, threshold: float, mask, stream=0):
    """Launch :data:`peak_mask_kernel` on a (C-contiguous) device image;
    ``mask`` uint8 of the same shape; ``stream`` a numba stream or 0."""
    ny, nx = image.shape
    if ny == 0 or nx == 0:
        return
    grid = (-(-nx // BLOCK[0]), -(-ny // BLOCK[1]))
    peak_mask_kernel[grid, BLOCK, stream](image, int(d), float(threshold), mask)


#: (kernel, signatures) for the PTX compile test
PTX_SIGNATURES = [
    (peak_mask_kernel, [f"void({t}[:, ::1], int64, float64, uint8[:, ::1])"
                        for t in ("uint8", "uint16", "uint32", "int16", "int32", "float32",
                                  "float64")]),
]
