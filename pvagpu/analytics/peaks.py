"""PeakFinder: local maxima above a threshold, at least ``minDistance``
pixels apart, as (x, y, intensity) lists; frames with many peaks are hits.

Run::

    pvagpu-consumer -ic det:image -oc _ -sc _ -pc pvagpu.analytics:PeakFinder \\
        -pa '{"threshold": 200, "minDistance": 3, "minPeaks": 15}'

Arguments: ``threshold`` (required): a peak's value is above it;
``minDistance`` (3): a peak is the largest pixel of the
``(2 d + 1) x (2 d + 1)`` window around it (clipped at the edges; of equal
maxima the first in raster order); ``minPeaks`` (10): a frame with at
least this many peaks is a hit (serial crystallography's hit finding);
``maxPeaks`` (2048): the most peaks listed per frame (the first in raster
order; ``nPeaks`` counts them all).

Output, one structure per frame: ``{uniqueId, timeStamp, nPeaks, hit, x,
y, intensity}`` (x the column, y the row, intensity the peak pixel's
value). Statistics: ``nHits``, ``hitRate`` (hits per frame), ``lastNPeaks``.
The rule and its kernels are in :mod:`pvagpu.kernels.peaks` (numba on the
CPU, a numba.cuda kernel on the device).
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigurationError
from ..kernels import peaks as kernels
from .base import AnalyticsProcessor, Step, to_host

_TYPES = {"nPeaks": "L", "hit": "?", "x": "ai", "y": "ai", "intensity": "ad"}


class PeakFinderStep(Step):
    NAME = "PeakFinder"
    PRODUCES = "fields"

    def parse(self, opts):
        self.threshold = opts.number("threshold", None)
        if self.threshold is None:
            raise ConfigurationError("PeakFinder: give 'threshold' (a peak's value is above "
                                     "it), e.g. {\"threshold\": 100}")
        self.distance = opts.integer("minDistance", 3, minimum=1, maximum=64)
        self.min_peaks = opts.integer("minPeaks", 10, minimum=1)
        self.max_peaks = opts.integer("maxPeaks", 2048, minimum=1)

    def field_types(self):
        return dict(_TYPES)

    def _mask(self, image):
        """The peak mask: the numba scan on the CPU, the kernel on the device
        (the same rule; the kernel is checked under the CUDA simulator)."""
        xp = self.xp
        if xp is np:
            return kernels.peak_mask_cpu(image, self.distance, self.threshold)
        from numba import cuda
        image = xp.ascontiguousarray(image)
        mask = xp.empty(image.shape, xp.uint8)
        stream = cuda.external_stream(xp.cuda.get_current_stream().ptr)
        kernels.launch_peak_mask(image, self.distance, self.threshold, mask, stream)
        return mask

    def apply(self, image):
        xp = self.xp
        index = xp.flatnonzero(self._mask(image))
        n = int(index.size)
        index = index[:self.max_peaks]
        nx = image.shape[1]
        values = image.reshape(-1)[index]
        y, x = to_host(index // nx), to_host(index % nx)
        hit = n >= self.min_peaks
        self.n_hits += hit
        self.n_frames += 1
        self.last_n = n
        return {"nPeaks": n, "hit": hit, "x": x.astype(np.int32), "y": y.astype(np.int32),
                "intensity": to_host(values).astype(np.float64)}

    def stats(self):
        return {"nHits": self.n_hits, "hitRate": self.n_hits / self.n_frames
                if self.n_frames else 0.0, "lastNPeaks": self.last_n}

    def stats_types(self):
        return {"nHits": "L", "hitRate": "d", "lastNPeaks": "L"}

    def reset_stats(self):
        self.n_hits = self.n_frames = self.last_n = 0


class PeakFinder(AnalyticsProcessor):
    """Local-maximum peak finder with hit counting (see the module docstring)."""
    STEP = PeakFinderStep
