"""Accumulation: the running sum (or mean) of N frames, published every N
frames (a scan's sum image).

Run::

    pvagpu-consumer -ic det:image -oc _ -sc _ -pc pvagpu.analytics:Accumulation \\
        -pa '{"nFrames": 100, "mode": "sum"}'

Arguments: ``nFrames`` (N, 10): publish every N frames; ``mode``:
``"sum"`` (default; int64 for integer frames, float64 for float frames) or
``"mean"`` (float32; float64 for float64 frames); ``cumulative`` (false):
after publishing, start a new sum; true: keep summing (each publication
holds every frame since the start or the last reset). The control
channel's ``configure`` with ``{"reset": true}`` starts a new sum with the
next frame; new arguments also start a new sum. The sum stays on the
device; it is changed only on the frame path. A frame whose shape or
dtype differs from the running sum's is counted and skipped (reset to
start a sum of the new shape).
"""
from __future__ import annotations

import numba
import numpy as np

from ..errors import FrameError
from .base import AnalyticsProcessor, Step


@numba.njit(parallel=True, nogil=True, cache=True)
def _add(acc, image):
    ny, nx = image.shape
    for y in numba.prange(ny):
        for x in range(nx):
            acc[y, x] += image[y, x]


class AccumulationStep(Step):
    NAME = "Accumulation"
    MONO = False

    def parse(self, opts):
        self.every = opts.integer("nFrames", 10, minimum=1)
        self.mode = opts.choice("mode", ("sum", "mean"), "sum")
        self.cumulative = opts.boolean("cumulative", False)
        self.acc = None
        self.count = 0
        self.dtype = None

    def reset(self):
        self.count = 0

    def apply(self, image):
        xp = self.xp
        kind = np.int64 if np.issubdtype(image.dtype, np.integer) else np.float64
        if self.acc is None or (self.count == 0 and (self.acc.shape != image.shape
                                                     or self.dtype != image.dtype)):
            self.acc = xp.zeros(image.shape, kind)
            self.dtype = image.dtype
        elif self.acc.shape != image.shape or self.dtype != image.dtype:
            raise FrameError(f"Accumulation: a frame of shape {tuple(image.shape)} and dtype "
                             f"{image.dtype} does not add to the running sum of "
                             f"{tuple(self.acc.shape)} {self.dtype} (reset to start a new sum)")
        if self.count == 0:
            self.acc.fill(0)        # in place: earlier kernels may still read it
        if self.fast and image.ndim == 2:
            _add(self.acc, image)
        else:
            self.acc += image
        self.count += 1
        self.n_frames += 1
        if self.count % self.every:
            return None
        self.n_published += 1
        if self.mode == "mean":
            out_type = xp.float64 if image.dtype == np.float64 else xp.float32
            out = (self.acc / self.count).astype(out_type)
        else:
            out = self.acc.copy()
        if not self.cumulative:
            self.count = 0
        return out

    def stats(self):
        return {"nAccumulated": self.count, "nPublished": self.n_published}

    def stats_types(self):
        return {"nAccumulated": "L", "nPublished": "L"}

    def reset_stats(self):
        self.n_frames = self.n_published = 0


class Accumulation(AnalyticsProcessor):
    """Running sum or mean over N frames (see the module docstring)."""
    STEP = AccumulationStep
