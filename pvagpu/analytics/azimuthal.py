"""AzimuthalIntegrator: the 1-D radial profile of each frame (powder,
SAXS/WAXS), with the geometry of a pyFAI PONI calibration file.

Run::

    pvagpu-consumer -ic det:image -oc _ -sc _ -pc pvagpu.analytics:AzimuthalIntegrator \\
        -pa '{"poni": "LaB6.poni", "npt": 1000, "unit": "q_nm^-1", "mask": "mask.npy"}'

Arguments: ``poni`` (required; :mod:`.poni`), ``npt`` (bins, 1000),
``unit``: ``"q_nm^-1"`` (default) or ``"2th_deg"``; ``mask`` (nonzero =
excluded), ``dark``, ``flat`` (files as for Corrections);
``solidAngle`` (true: normalise by the pixels' solid angle, as pyFAI
does by default); ``radialRange`` ([min, max] in ``unit``; default: the
range of the unmasked pixels); ``pixel1``/``pixel2`` (m) for PONI files
of named detectors; ``shape`` ([rows, columns]) when neither the PONI file
(``max_shape``) nor a calibration file gives the frames' shape (else the
first frame does).

Each frame gives ``{uniqueId, timeStamp, radial, value, count}``:
``radial`` the bin centres in ``unit``, ``value`` the intensity of each
bin, ``count`` its pixels (0: an empty bin, value 0). Pixel splitting is
off; this is pyFAI's ``integrate1d(image, npt, unit=...,
method=("no", "csr", "cython"))``: each unmasked pixel whose centre falls
in a bin adds ``frame - dark`` to the bin's signal and ``flat * solid
angle`` to its normalisation; ``value = signal / normalisation``.

The pixel-to-bin matrix is built once per geometry and frame shape, on the
CPU, as a scipy.sparse CSR matrix (rows = bins); every frame is then one
sparse matrix-vector product: a numba loop over the bins on the CPU
(``"numba": false``: scipy.sparse), cupyx.scipy.sparse on the device.
Everything that does not depend on the frame (the dark's and the
normalisation's sums per bin) is summed once with the matrix.
"""
from __future__ import annotations

import numba
import numpy as np
import scipy.sparse

from ..errors import ConfigurationError
from .base import AnalyticsProcessor, Step, to_host
from .poni import read_poni

#: pyFAI's upper bound: the largest position times (1 + float32 epsilon)
_EPS32 = 1.0 + float(np.finfo(np.float32).eps)
#: unit -> (geometry method, scale from the internal unit)
UNITS = {"q_nm^-1": ("q", 1.0), "2th_deg": ("tth", 180.0 / np.pi)}
_TYPES = {"radial": "ad", "value": "ad", "count": "ad"}


@numba.njit(parallel=True, nogil=True, cache=True)
def _csr_sums(indptr, indices, pixels, out):
    """``out[b] = sum(pixels[indices[indptr[b]:indptr[b + 1]]])`` (float64)."""
    for b in numba.prange(out.size):
        s = 0.0
        for k in range(indptr[b], indptr[b + 1]):
            s += pixels[indices[k]]
        out[b] = s


class Table:
    """The pixel-to-bin CSR matrix of one shape, with its per-bin constants."""

    def __init__(self, matrix, radial, dark_sum, norm_sum, count):
        self.matrix = matrix          # scipy csr (npt x pixels), data 1.0
        self.radial = radial          # bin centres in the unit
        self.dark_sum = dark_sum      # per bin, float64
        self.norm_sum = norm_sum
        self.count = count
        self.shape = None
        self.dev = None


class AzimuthalStep(Step):
    NAME = "AzimuthalIntegrator"
    PRODUCES = "fields"

    def parse(self, opts):
        path = opts.text("poni")
        if path is None:
            raise ConfigurationError("AzimuthalIntegrator: give 'poni', the pyFAI PONI file "
                                     "of the calibration")
        self.geometry = read_poni(path)
        for key in ("pixel1", "pixel2"):
            value = opts.number(key, None, minimum=0, exclusive_minimum=True)
            if value is not None:
                setattr(self.geometry, key, value)
            if getattr(self.geometry, key) is None:
                raise ConfigurationError(
                    f"AzimuthalIntegrator: {path!r} ({self.geometry.detector}) gives no pixel "
                    f"size: give 'pixel1' and 'pixel2' (m)")
        self.npt = opts.integer("npt", 1000, minimum=1)
        self.unit = opts.choice("unit", tuple(UNITS), "q_nm^-1")
        if self.unit.startswith("q") and not self.geometry.wavelength:
            raise opts.error("unit", f"q needs a wavelength; {path!r} gives none")
        self.solid = opts.boolean("solidAngle", True)
        rng = opts._get("radialRange", None)
        if rng is not None:
            if (not isinstance(rng, list) or len(rng) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               for v in rng) or not rng[0] < rng[1]):
                raise opts.error("radialRange", f"must be [min, max] with min < max, got {rng!r}")
        self.range = rng
        self.files = {k: opts.array(k) for k in ("mask", "dark", "flat")}
        shape = opts.integers("shape", None, 2, minimum=1)
        shapes = {k: a.shape for k, a in self.files.items() if a is not None}
        if shape is not None:
            shapes["shape"] = tuple(shape)
        if self.geometry.shape is not None:
            shapes["PONI max_shape"] = self.geometry.shape
        if len(set(shapes.values())) > 1:
            raise ConfigurationError(f"AzimuthalIntegrator: shapes disagree: {shapes}")
        self.shape = next(iter(shapes.values()), None)
        self.tables = {}
        if self.shape is not None:
            self.table(self.shape)

    def field_types(self):
        return dict(_TYPES)

    def output_shape(self, shape):
        if self.shape is not None and tuple(shape) != self.shape:
            raise ConfigurationError(f"AzimuthalIntegrator: frames of shape {tuple(shape)} do "
                                     f"not match the geometry's {self.shape}")
        return None

    def table(self, shape) -> Table:
        """The Table of ``shape`` (built on first use)."""
        table = self.tables.get(shape)
        if table is None:
            table = self.tables[shape] = self._build(shape)
        return table

    def _build(self, shape) -> Table:
        method, scale = UNITS[self.unit]
        pos = getattr(self.geometry, method)(shape).reshape(-1)
        norm = np.ones(pos.size, np.float32)
        if self.files["flat"] is not None:
            norm = self.files["flat"].astype(np.float32).reshape(-1)
        if self.solid:
            norm = norm * self.geometry.solid_angle(shape).astype(np.float32).reshape(-1)
        valid = np.isfinite(norm) & (norm != 0) & np.isfinite(pos)
        if self.files["mask"] is not None:
            valid &= self.files["mask"].reshape(-1) == 0
        if not valid.any():
            raise ConfigurationError("AzimuthalIntegrator: every pixel is masked")
        if self.range is None:
            lo, top = max(0.0, float(pos[valid].min())), max(0.0, float(pos[valid].max()))
        else:
            lo, top = self.range[0] / scale, self.range[1] / scale
        hi = top * _EPS32 if top > 0 else top / _EPS32
        delta = (hi - lo) / self.npt
        # pyFAI's bin: the position's distance from lo in bins, truncated toward 0
        fbin = (pos - lo) / delta
        bins = np.trunc(fbin)
        valid &= (bins >= 0) & (bins < self.npt)
        pixels = np.flatnonzero(valid)
        bins = bins[pixels].astype(np.int64)
        order = np.argsort(bins, kind="stable")
        pixels, bins = pixels[order], bins[order]
        indptr = np.zeros(self.npt + 1, np.int64)
        np.cumsum(np.bincount(bins, minlength=self.npt), out=indptr[1:])
        matrix = scipy.sparse.csr_matrix(
            (np.ones(pixels.size), pixels.astype(np.int32), indptr), shape=(self.npt, pos.size))
        dark = self.files["dark"]
        dark_sum = (matrix @ dark.astype(np.float32).reshape(-1).astype(np.float64)
                    if dark is not None else np.zeros(self.npt))
        norm_sum = matrix @ norm.astype(np.float64)
        count = np.diff(indptr).astype(np.float64)
        radial = (lo + (np.arange(self.npt) + 0.5) * delta) * scale
        table = Table(matrix, radial, dark_sum, norm_sum, count)
        table.shape = shape
        return table

    def upload(self, xp):
        for table in self.tables.values():
            self._upload(table, xp)

    def _upload(self, table, xp):
        if xp is np:
            table.dev = None
            return
        import cupyx.scipy.sparse
        table.dev = {"matrix": cupyx.scipy.sparse.csr_matrix(table.matrix),
                     "dark": xp.asarray(table.dark_sum), "norm": xp.asarray(table.norm_sum),
                     "count": xp.asarray(table.count)}

    def apply(self, image):
        shape = tuple(image.shape)
        fresh = shape not in self.tables
        table = self.table(shape)
        xp = self.xp
        if xp is np:
            pixels = image.reshape(-1)
            if self.fast:
                signal = np.empty(self.npt)
                m = table.matrix
                _csr_sums(m.indptr, m.indices, pixels, signal)
            else:
                signal = table.matrix @ pixels.astype(np.float64)
            dark, norm, count = table.dark_sum, table.norm_sum, table.count
        else:
            if fresh or table.dev is None:
                self._upload(table, xp)
            d = table.dev
            signal = d["matrix"] @ image.reshape(-1).astype(xp.float64)
            dark, norm, count = d["dark"], d["norm"], d["count"]
        filled = count > 0
        value = xp.where(filled, (signal - dark) / xp.where(filled, norm, 1.0), 0.0)
        return {"radial": table.radial, "value": to_host(value), "count": table.count}


class AzimuthalIntegrator(AnalyticsProcessor):
    """1-D azimuthal integration with a PONI geometry (see the module docstring)."""
    STEP = AzimuthalStep
