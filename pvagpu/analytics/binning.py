"""Binning: N x M pixels summed or averaged into one.

Run::

    pvagpu-consumer -ic det:image -oc _ -pc pvagpu.analytics:Binning \\
        -pa '{"binX": 2, "binY": 2, "mode": "sum"}'

Arguments: ``binX`` (columns per bin, 2), ``binY`` (rows per bin, 2),
``mode``: ``"sum"`` (default) or ``"mean"``. Rows and columns left over
when the frame's size is not a multiple are dropped (as areaDetector's
binning does). A sum of unsigned (signed) integers of up to 16 bits is
uint32 (int32), of wider integers uint64 (int64), of floats their own
float type; a mean is float32 (float64 for float64 frames). Colour frames
are binned plane by plane.
"""
from __future__ import annotations

import numba
import numpy as np

from ..errors import ConfigurationError
from .base import AnalyticsProcessor, Step


@numba.njit(parallel=True, nogil=True, cache=True)
def _bin_sum(image, by, bx, zero, scale, out):
    """``out`` = the by x bx block sums of ``image`` times ``scale``, summed
    from ``zero`` (0 for integer bins, exact; 0.0 for float bins)."""
    ny, nx = out.shape
    for j in numba.prange(ny):
        for i in range(nx):
            acc = zero
            for y in range(j * by, j * by + by):
                for x in range(i * bx, i * bx + bx):
                    acc += image[y, x]
            out[j, i] = acc * scale


def binned_dtype(dtype, mode: str) -> np.dtype:
    """The dtype of a ``mode`` bin of ``dtype`` pixels (module docstring)."""
    dtype = np.dtype(dtype)
    if mode == "mean":
        return np.dtype(np.float64 if dtype == np.float64 else np.float32)
    if dtype.kind == "u":
        return np.dtype(np.uint32 if dtype.itemsize <= 2 else np.uint64)
    if dtype.kind == "i":
        return np.dtype(np.int32 if dtype.itemsize <= 2 else np.int64)
    return dtype


class BinningStep(Step):
    NAME = "Binning"
    MONO = False

    def parse(self, opts):
        self.bx = opts.integer("binX", 2, minimum=1)
        self.by = opts.integer("binY", 2, minimum=1)
        self.mode = opts.choice("mode", ("sum", "mean"), "sum")

    def output_shape(self, shape):
        if shape[0] < self.by or shape[1] < self.bx:
            raise ConfigurationError(f"Binning: a {self.by} x {self.bx} bin does not fit in a "
                                     f"frame of shape {tuple(shape)}")
        return (shape[0] // self.by, shape[1] // self.bx) + tuple(shape[2:])

    def apply(self, image):
        ny, nx = image.shape[0] // self.by, image.shape[1] // self.bx
        dtype = binned_dtype(image.dtype, self.mode)
        if self.fast and image.ndim == 2:
            out = np.empty((ny, nx), dtype)
            if dtype.kind in "iu":
                _bin_sum(image, self.by, self.bx, 0, 1, out)
            else:
                scale = 1.0 / (self.by * self.bx) if self.mode == "mean" else 1.0
                _bin_sum(image, self.by, self.bx, 0.0, scale, out)
            return out
        xp = self.xp
        crop = image[:ny * self.by, :nx * self.bx]
        blocks = crop.reshape((ny, self.by, nx, self.bx) + tuple(image.shape[2:]))
        if self.mode == "mean":
            return blocks.mean(axis=(1, 3), dtype=xp.float64).astype(dtype)
        return blocks.sum(axis=(1, 3), dtype=dtype)


class Binning(AnalyticsProcessor):
    """N x M binning (see the module docstring)."""
    STEP = BinningStep
