"""Rotation by multiples of 90 degrees, flips and transpose.

Run::

    pvagpu-consumer -ic det:image -oc _ -pc pvagpu.analytics:Rotation \\
        -pa '{"rotate": 90, "flipX": true}'

Arguments, applied in this order: ``transpose`` (false: rows become
columns), ``rotate`` (0, 90, 180 or 270 degrees counter-clockwise as
displayed with row 0 on top, NumPy's ``rot90``), ``flipX`` (false: mirror
left-right), ``flipY`` (false: mirror top-bottom). Colour frames keep
their planes. On the CPU the reordered view is copied in cache-sized tiles
(numba), on the device by the array module.
"""
from __future__ import annotations

import numba
import numpy as np

from .base import AnalyticsProcessor, Step

_TILE = 64


@numba.njit(parallel=True, nogil=True, cache=True)
def tiled_copy(view, out):
    """``out[...] = view`` (2-D) in cache-sized tiles, rows of tiles in parallel."""
    ny, nx = out.shape
    nty = (ny + _TILE - 1) // _TILE
    for ty in numba.prange(nty):
        y0 = ty * _TILE
        y1 = min(y0 + _TILE, ny)
        for x0 in range(0, nx, _TILE):
            x1 = min(x0 + _TILE, nx)
            for y in range(y0, y1):
                for x in range(x0, x1):
                    out[y, x] = view[y, x]


def oriented(image, xp, transpose: bool, k: int, flip_x: bool, flip_y: bool):
    """The view of ``image`` after the operations, in order."""
    view = image
    if transpose:
        view = xp.swapaxes(view, 0, 1)
    if k:
        view = xp.rot90(view, k, axes=(0, 1))
    if flip_x:
        view = view[:, ::-1]
    if flip_y:
        view = view[::-1]
    return view


class RotationStep(Step):
    NAME = "Rotation"
    MONO = False

    def parse(self, opts):
        self.transpose = opts.boolean("transpose", False)
        self.k = opts.choice("rotate", (0, 90, 180, 270), 0) // 90
        self.flip_x = opts.boolean("flipX", False)
        self.flip_y = opts.boolean("flipY", False)

    def output_shape(self, shape):
        swap = self.transpose != (self.k % 2 == 1)
        return ((shape[1], shape[0]) if swap else tuple(shape[:2])) + tuple(shape[2:])

    def apply(self, image):
        view = oriented(image, self.xp, self.transpose, self.k, self.flip_x, self.flip_y)
        if self.fast and image.ndim == 2:
            out = np.empty(view.shape, image.dtype)
            tiled_copy(view, out)
            return out
        return self.xp.ascontiguousarray(view)


class Rotation(AnalyticsProcessor):
    """Rotation, flips, transpose (see the module docstring)."""
    STEP = RotationStep
