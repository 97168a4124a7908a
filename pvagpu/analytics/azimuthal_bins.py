"""The pixel-to-bin matrix of azimuthal integration, built as pyFAI bins
pixels without splitting, and its product with a frame on either backend.

A :class:`Table` is a CSR matrix with one row per output bin and one
column per pixel (data 1.0): the 1-D profile has ``npt`` rows; the 2-D
cake ``nAzimuthal * npt`` rows, row ``a * npt + r`` for azimuthal bin
``a`` and radial bin ``r`` (so the values reshape to an image of
``(nAzimuthal, npt)``, pyFAI's ``integrate2d`` layout). Each unmasked
pixel is in the one bin that its centre falls in (or in none, outside the
ranges). Every frame is then one sparse matrix-vector product: a numba
loop over the rows on the CPU, scipy.sparse with ``"numba": false`` (the
array code the device runs), cupyx.scipy.sparse on the device; what does
not depend on the frame (the dark's and the normalisation's sums per bin,
the pixel count) is summed once with the matrix. The normalisation of a
pixel is pyFAI's: ``flat * polarisation * solid angle`` (each optional),
so these corrections divide each bin's summed signal, not each pixel.

The bins (pyFAI's rule, checked bin for bin by the tests): an axis spans
``[lo, hi)`` with ``lo`` the smallest position of an unmasked pixel (0 at
least, radially) and ``hi`` the largest times ``1 + float32 epsilon`` (or
the range given); ``delta = (hi - lo) / n``; a position's bin is
``(pos - lo) / delta`` truncated toward 0 (so a pixel less than one bin
below a range's ``lo`` still counts in bin 0, as in pyFAI); bin centres
``lo + (i + 0.5) delta``. A sector of the 1-D profile (an azimuthal range
without azimuthal bins) takes the pixels with ``lo <= chi <= hi``. The
azimuthal angle is pyFAI's chi (``atan2(t1, t2)``, see
:mod:`.poni`) in degrees, in ``[-180, 180)`` unless the azimuthal range
reaches above 180 (then in ``[0, 360)``: pyFAI's ``setChiDiscAtZero``);
:func:`chi_range` converts a range in degrees the way pyFAI does.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import scipy.sparse

from ..errors import ConfigurationError

#: pyFAI's upper bound: the largest position times (1 + float32 epsilon)
_EPS32 = 1.0 + float(np.finfo(np.float32).eps)
#: radial unit -> (geometry method, scale from the internal unit)
UNITS = {"q_nm^-1": ("q", 1.0), "2th_deg": ("tth", 180.0 / np.pi)}
#: the azimuthal unit (chi in degrees) and its scale from radians
AZIMUTHAL_UNIT, _CHI_SCALE = "chi_deg", 180.0 / np.pi


@numba.njit(parallel=True, nogil=True, cache=True)
def _csr_sums(indptr, indices, pixels, out):
    """``out[b] = sum(pixels[indices[indptr[b]:indptr[b + 1]]])`` (float64)."""
    for b in numba.prange(out.size):
        s = 0.0
        for k in range(indptr[b], indptr[b + 1]):
            s += pixels[indices[k]]
        out[b] = s


def chi_range(lo_deg: float, hi_deg: float) -> tuple:
    """``(lo, hi, at_zero)``: an azimuthal range in degrees as pyFAI takes
    it, in radians (``at_zero``: chi in ``[0, 2 pi)``, for ranges that reach
    above 180 degrees; else ``[-pi, pi)``). ConfigurationError (a message to
    follow the argument's name) for a range outside ``[-180, 360]``, empty,
    or across both discontinuities."""
    if not -180.0 <= lo_deg < hi_deg <= 360.0:
        raise ConfigurationError(
            f"must be [min, max] in degrees with -180 <= min < max <= 360, "
            f"got {[lo_deg, hi_deg]!r}")
    at_zero = hi_deg > 180.0
    if at_zero and lo_deg < 0.0:
        raise ConfigurationError(
            f"{[lo_deg, hi_deg]!r} crosses both chi discontinuities: give "
            f"it within [-180, 180] (chi from -180) or [0, 360] (chi from 0)")

    def rad(deg):       # pyFAI's degrees -> radians in the window of the convention
        turns = (deg / 180.0) % 2.0
        if not at_zero and turns >= 1.0:
            turns -= 2.0
        return turns * math.pi

    lo, hi = rad(lo_deg), rad(hi_deg)
    if hi <= lo:
        hi += 2.0 * math.pi
    return lo, hi, at_zero


class Axis:
    """One binned axis: ``n`` bins of ``delta`` from ``lo`` (internal
    unit); ``scale`` converts to the published unit."""

    def __init__(self, pos, valid, n: int, span=None, *, radial: bool, scale: float):
        if span is None:
            lo, top = float(pos[valid].min()), float(pos[valid].max())
            if radial:
                lo, top = max(0.0, lo), max(0.0, top)
        else:
            lo, top = span
        hi = top * _EPS32 if top > 0 else top / _EPS32
        self.lo, self.n, self.scale = lo, n, scale
        self.delta = (hi - lo) / n

    def bins(self, pos) -> np.ndarray:
        """The bin of each position (float; outside ``[0, n)``: in none)."""
        return np.trunc((pos - self.lo) / self.delta)

    def centres(self) -> np.ndarray:
        """The bin centres in the published unit."""
        return (self.lo + (np.arange(self.n) + 0.5) * self.delta) * self.scale


class Table:
    """The pixel-to-bin CSR matrix of one frame shape, with its per-bin
    constants (host arrays) and, once uploaded, their device copies."""

    def __init__(self, matrix, radial, azimuthal, dark_sum, norm_sum, count):
        self.matrix = matrix          # scipy csr (bins x pixels), data 1.0
        self.radial = radial          # radial bin centres in the unit
        self.azimuthal = azimuthal    # chi bin centres (degrees), None for 1-D
        self.dark_sum = dark_sum      # per bin, float64
        self.norm_sum = norm_sum
        self.count = count
        self.dev = None

    def upload(self, xp) -> None:
        """Device copies of the matrix and constants (none on NumPy)."""
        if xp is np:
            self.dev = None
            return
        import cupyx.scipy.sparse
        self.dev = {"matrix": cupyx.scipy.sparse.csr_matrix(self.matrix),
                    "dark": xp.asarray(self.dark_sum), "norm": xp.asarray(self.norm_sum),
                    "count": xp.asarray(self.count)}

    def values(self, image, xp, fast: bool):
        """Per bin ``(signal - dark) / normalisation`` of ``image`` (0 in
        empty bins), float64, on the backend of ``xp``; ``fast``: the numba
        loop (NumPy only)."""
        if xp is np:
            pixels = image.reshape(-1)
            m = self.matrix
            if fast:
                signal = np.empty(m.shape[0])
                _csr_sums(m.indptr, m.indices, pixels, signal)
            else:
                signal = m @ pixels.astype(np.float64)
            dark, norm, count = self.dark_sum, self.norm_sum, self.count
        else:
            if self.dev is None:
                self.upload(xp)
            d = self.dev
            signal = d["matrix"] @ image.reshape(-1).astype(xp.float64)
            dark, norm, count = d["dark"], d["norm"], d["count"]
        filled = count > 0
        return xp.where(filled, (signal - dark) / xp.where(filled, norm, 1.0), 0.0)


def build_table(geometry, shape, *, unit, npt, radial_range=None, n_azimuthal=None,
                azimuthal_range=None, mask=None, dark=None, flat=None, solid=True,
                polarization=None) -> Table:
    """The Table of frames of ``shape``: ``npt`` radial bins in ``unit``
    (:data:`UNITS`), times ``n_azimuthal`` chi bins for a cake (None: the
    1-D profile); ranges in the published units (None: the unmasked
    pixels'); ``mask`` (nonzero: excluded), ``dark``, ``flat`` images or
    None; ``solid``: normalise by the pixels' solid angle; ``polarization``:
    ``(factor, offset)`` to normalise by the polarisation factor
    (:meth:`.poni.Geometry.polarization`), or None. The normalisation is
    pyFAI's, in float32: ``flat * polarisation * solid angle``."""
    method, scale = UNITS[unit]
    pos = getattr(geometry, method)(shape).reshape(-1)
    norm = np.ones(pos.size, np.float32)
    if flat is not None:
        norm = flat.astype(np.float32).reshape(-1)
    if polarization is not None:
        norm = norm * geometry.polarization(shape, *polarization).reshape(-1)
    if solid:
        norm = norm * geometry.solid_angle(shape).astype(np.float32).reshape(-1)
    valid = np.isfinite(norm) & (norm != 0) & np.isfinite(pos)
    if mask is not None:
        valid &= mask.reshape(-1) == 0
    if not valid.any():
        raise ConfigurationError("AzimuthalIntegrator: every pixel is masked")
    span = None if radial_range is None else (radial_range[0] / scale, radial_range[1] / scale)
    radial = Axis(pos, valid, npt, span, radial=True, scale=scale)
    rows = radial.bins(pos)
    inside = (rows >= 0) & (rows < npt)
    azimuthal = None
    if n_azimuthal is not None or azimuthal_range is not None:
        chi = geometry.chi(shape).reshape(-1)
        span = None
        if azimuthal_range is not None:
            lo, hi, at_zero = chi_range(*azimuthal_range)
            if at_zero:
                chi = np.mod(chi, 2.0 * np.pi)
            span = (lo, hi)
        if n_azimuthal is None:         # a sector of the 1-D profile
            inside &= (chi >= span[0]) & (chi <= span[1])
        else:
            axis = Axis(chi, valid, n_azimuthal, span, radial=False, scale=_CHI_SCALE)
            cols = axis.bins(chi)
            inside &= (cols >= 0) & (cols < n_azimuthal)
            rows = cols * npt + rows
            azimuthal = axis.centres()
    valid &= inside
    n_bins = npt * (n_azimuthal or 1)
    pixels = np.flatnonzero(valid)
    bins = rows[pixels].astype(np.int64)
    order = np.argsort(bins, kind="stable")
    pixels, bins = pixels[order], bins[order]
    indptr = np.zeros(n_bins + 1, np.int64)
    np.cumsum(np.bincount(bins, minlength=n_bins), out=indptr[1:])
    matrix = scipy.sparse.csr_matrix(
        (np.ones(pixels.size), pixels.astype(np.int32), indptr), shape=(n_bins, pos.size))
    dark_sum = (matrix @ dark.astype(np.float32).reshape(-1).astype(np.float64)
                if dark is not None else np.zeros(n_bins))
    norm_sum = matrix @ norm.astype(np.float64)
    count = np.diff(indptr).astype(np.float64)
    return Table(matrix, radial.centres(), azimuthal, dark_sum, norm_sum, count)
