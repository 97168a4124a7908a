"""Corrections: dark subtraction, flat-field normalisation and a bad-pixel
mask, from calibration files.

Run::

    pvagpu-consumer -ic det:image -oc _ -sc _ -pc pvagpu.analytics:Corrections \\
        -pa '{"dark": "dark.npy", "flat": "flat.tif", "mask": "calib.h5:/entry/mask"}'

Arguments (at least one of ``dark``, ``flat``, ``mask``; files are
``.npy``, ``.tif``/``.tiff`` or an HDF5 dataset ``file.h5:/path``, all of
the frames' shape):

* ``dark``: subtracted from each frame;
* ``flat``: each frame is divided by it, normalised to mean 1 over its
  good pixels unless ``"normalizeFlat": false``; pixels where the flat is
  0, negative or not finite count as bad;
* ``mask``: nonzero = bad pixel (pyFAI's convention); bad pixels get
  ``maskValue`` (0);
* ``output``: ``"float32"`` (default) or ``"input"``: the frame's dtype,
  values rounded and clipped to its range.

``out = (frame - dark) / flat`` in float32, bad pixels = ``maskValue``.
"""
from __future__ import annotations

import numba
import numpy as np

from ..errors import ConfigurationError, FrameError
from .base import AnalyticsProcessor, Step


@numba.njit(parallel=True, nogil=True, cache=True)
def _correct(image, dark, flat, bad, mask_value, out):
    ny, nx = image.shape
    for y in numba.prange(ny):
        for x in range(nx):
            if bad[y, x]:
                out[y, x] = mask_value
            else:
                out[y, x] = (np.float32(image[y, x]) - dark[y, x]) / flat[y, x]


@numba.njit(parallel=True, nogil=True, cache=True)
def _correct_to(image, dark, flat, bad, mask_value, lo, hi, out):
    """As _correct, rounded and clipped to [lo, hi], into ``out`` (the input dtype)."""
    ny, nx = image.shape
    for y in numba.prange(ny):
        for x in range(nx):
            if bad[y, x]:
                v = mask_value
            else:
                v = (np.float32(image[y, x]) - dark[y, x]) / flat[y, x]
                v = np.float32(np.rint(v))
            out[y, x] = min(max(v, lo), hi)


class CorrectionsStep(Step):
    NAME = "Corrections"

    def parse(self, opts):
        dark = opts.array("dark")
        flat = opts.array("flat")
        mask = opts.array("mask")
        self.output = opts.choice("output", ("float32", "input"), "float32")
        self.mask_value = opts.number("maskValue", 0.0)
        normalize = opts.boolean("normalizeFlat", True)
        given = {k: a for k, a in (("dark", dark), ("flat", flat), ("mask", mask))
                 if a is not None}
        if not given:
            raise ConfigurationError("Corrections: give at least one of 'dark', 'flat', 'mask'")
        shapes = {k: a.shape for k, a in given.items()}
        if len(set(shapes.values())) > 1:
            raise ConfigurationError(f"Corrections: the calibration images differ in shape: "
                                     f"{shapes}")
        self.shape = next(iter(shapes.values()))
        bad = np.zeros(self.shape, bool) if mask is None else mask != 0
        if flat is not None:
            flat = flat.astype(np.float64)
            bad |= ~np.isfinite(flat) | (flat <= 0)
            if normalize:
                good = flat[~bad]
                if good.size == 0:
                    raise ConfigurationError("Corrections: the flat has no good pixel")
                flat = flat / good.mean()
            flat = np.where(bad, 1.0, flat)
        self.host = {
            "dark": np.zeros(self.shape, np.float32) if dark is None
            else dark.astype(np.float32),
            "flat": np.ones(self.shape, np.float32) if flat is None
            else flat.astype(np.float32),
            "bad": bad.astype(np.uint8)}
        self.n_bad = int(bad.sum())

    def output_shape(self, shape):
        if tuple(shape[:2]) != self.shape:
            raise ConfigurationError(f"Corrections: frames of shape {tuple(shape)} do not match "
                                     f"the calibration images' {self.shape}")
        return tuple(shape)

    def upload(self, xp):
        self.dev = {k: xp.asarray(v) for k, v in self.host.items()}
        self.dev["badb"] = self.dev["bad"].astype(bool)

    def _limits(self, dtype):
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            # the float32 bounds inside the dtype's range
            lo, hi = np.float32(info.min), np.float32(info.max)
            if float(hi) > info.max:
                hi = np.nextafter(hi, np.float32(0))
            return lo, hi
        if np.issubdtype(dtype, np.floating):
            return np.float32(-np.inf), np.float32(np.inf)
        raise FrameError(f"Corrections: cannot output dtype {dtype}")

    def apply(self, image):
        d = self.dev
        to_input = self.output == "input" and image.dtype != np.float32
        if self.fast:
            if to_input:
                lo, hi = self._limits(image.dtype)
                out = np.empty(image.shape, image.dtype)
                _correct_to(image, d["dark"], d["flat"], d["bad"], np.float32(self.mask_value),
                            lo, hi, out)
            else:
                out = np.empty(image.shape, np.float32)
                _correct(image, d["dark"], d["flat"], d["bad"], np.float32(self.mask_value),
                         out)
            return out
        xp = self.xp
        out = (image.astype(xp.float32) - d["dark"]) / d["flat"]
        if to_input:
            lo, hi = self._limits(image.dtype)
            out = xp.clip(xp.rint(out), lo, hi)
        out = xp.where(d["badb"], xp.float32(self.mask_value), out)
        if to_input:
            out = xp.clip(out, lo, hi).astype(image.dtype)
        return out

    def stats(self):
        return {"nBadPixels": self.n_bad}

    def stats_types(self):
        return {"nBadPixels": "L"}


class Corrections(AnalyticsProcessor):
    """Dark, flat and bad-pixel corrections (see the module docstring)."""
    STEP = CorrectionsStep
