"""FrameStatistics: sum, min, max, mean, standard deviation, pixels above a
threshold and the intensity centroid of each frame.

Run::

    pvagpu-consumer -ic det:image -oc _ -sc _ -pc pvagpu.analytics:FrameStatistics \\
        -pa '{"threshold": 100}'

Arguments: ``threshold`` (0): ``nAbove`` counts the pixels ``> threshold``.
Each frame's values go out on the output channel as a structure
``{uniqueId, timeStamp, sum, min, max, mean, std, nAbove, centroidX,
centroidY}`` and the last frame's are in the statistics (``last*``).
The centroid is ``sum(x * I) / sum(I)`` in pixels (x the column, y the
row; NaN when the sum is 0); ``std`` is the population standard deviation.

On the CPU one numba pass over the rows (in parallel) gathers everything;
on the device (or with ``"numba": false``) array-module reductions.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .base import AnalyticsProcessor, Step, to_host

FIELDS = ("sum", "min", "max", "mean", "std", "nAbove", "centroidX", "centroidY")
_TYPES = {name: "d" for name in FIELDS} | {"nAbove": "L"}


@numba.njit(parallel=True, nogil=True, cache=True)
def _row_moments(image, threshold, shift, out):
    """Per row: sum, sum of (v - shift)^2, min, max, count > threshold, sum(x v)."""
    ny, nx = image.shape
    for y in numba.prange(ny):
        s = 0.0
        q = 0.0
        sx = 0.0
        lo = np.inf
        hi = -np.inf
        n = 0
        for x in range(nx):
            v = np.float64(image[y, x])
            s += v
            d = v - shift
            q += d * d
            sx += x * v
            lo = min(lo, v)
            hi = max(hi, v)
            n += v > threshold
        out[y, 0] = s
        out[y, 1] = q
        out[y, 2] = lo
        out[y, 3] = hi
        out[y, 4] = n
        out[y, 5] = sx


def _fields(total, sq, lo, hi, n_above, sum_x, sum_y, n, shift) -> dict:
    mean = total / n
    var = max(sq / n - (mean - shift) ** 2, 0.0)
    return {"sum": total, "min": lo, "max": hi, "mean": mean, "std": math.sqrt(var),
            "nAbove": int(n_above),
            "centroidX": sum_x / total if total else math.nan,
            "centroidY": sum_y / total if total else math.nan}


class FrameStatisticsStep(Step):
    NAME = "FrameStatistics"
    PRODUCES = "fields"

    def parse(self, opts):
        self.threshold = opts.number("threshold", 0.0)

    def field_types(self):
        return dict(_TYPES)

    def apply(self, image):
        n = image.size
        if n == 0:
            return None
        shift = float(image[0, 0]) if self.fast else None
        if self.fast:
            rows = np.empty((image.shape[0], 6))
            _row_moments(image, self.threshold, shift, rows)
            total, sq, sum_x = rows[:, 0].sum(), rows[:, 1].sum(), rows[:, 5].sum()
            sum_y = float(rows[:, 0] @ np.arange(image.shape[0], dtype=np.float64))
            values = [total, sq, rows[:, 2].min(), rows[:, 3].max(), rows[:, 4].sum(), sum_x,
                      sum_y]
        else:
            xp = self.xp
            img = image.astype(xp.float64)
            k = img[0, 0]
            d = img - k
            values = xp.stack([img.sum(), (d * d).sum(), img.min(), img.max(),
                               xp.count_nonzero(image > self.threshold).astype(xp.float64),
                               img.sum(axis=0) @ xp.arange(img.shape[1], dtype=xp.float64),
                               img.sum(axis=1) @ xp.arange(img.shape[0], dtype=xp.float64),
                               k])
            values = [float(v) for v in to_host(values)]
            shift = values.pop()
        result = _fields(*[float(v) for v in values], n, shift)
        self.last = result
        return result

    def stats(self):
        return {"last" + k[0].upper() + k[1:]: v for k, v in self.last.items()}

    def stats_types(self):
        return {"last" + k[0].upper() + k[1:]: t for k, t in _TYPES.items()}

    def reset_stats(self):
        self.last = {k: 0 if k == "nAbove" else 0.0 for k in FIELDS}


class FrameStatistics(AnalyticsProcessor):
    """Per-frame statistics (see the module docstring)."""
    STEP = FrameStatisticsStep
