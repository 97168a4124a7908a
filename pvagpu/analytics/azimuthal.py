"""AzimuthalIntegrator: the 1-D radial profile, or the 2-D cake, of each
frame (powder, SAXS/WAXS), with the geometry of a pyFAI PONI calibration
file.

Run::

    pvagpu-consumer -ic det:image -oc _ -sc _ -pc pvagpu.analytics:AzimuthalIntegrator \\
        -pa '{"poni": "LaB6.poni", "npt": 1000, "unit": "q_nm^-1", "mask": "mask.npy"}'
    # the cake: 360 azimuthal bins of 1 degree times 1000 radial bins
    pvagpu-consumer -ic det:image -oc _ -sc _ -pc pvagpu.analytics:AzimuthalIntegrator \\
        -pa '{"poni": "LaB6.poni", "npt": 1000, "nAzimuthal": 360, "azimuthalRange": [-180, 180]}'
    # a synchrotron beam: correct for its horizontal polarisation
    pvagpu-consumer -ic det:image -oc _ -sc _ -pc pvagpu.analytics:AzimuthalIntegrator \\
        -pa '{"poni": "LaB6.poni", "npt": 1000, "polarizationFactor": 0.99}'

Arguments: ``poni`` (required; :mod:`.poni`), ``npt`` (radial bins,
1000), ``unit``: ``"q_nm^-1"`` (default) or ``"2th_deg"``; ``mask``
(nonzero = excluded), ``dark``, ``flat`` (files as for Corrections);
``solidAngle`` (true: normalise by the pixels' solid angle, as pyFAI
does by default); ``polarizationFactor`` (pyFAI's ``polarization_factor``,
-1 to 1: 1 a horizontally polarised beam, 0.99 a typical synchrotron
one, 0 unpolarised, -1 vertical; absent or null: no polarisation
correction) and ``polarizationOffset`` (pyFAI's ``polarization_offset``:
the polarisation axis from the detector's horizontal, in radians as in
pyFAI; default 0; ignored without a factor); ``radialRange`` ([min,
max] in ``unit``; default: the range of the unmasked pixels);
``nAzimuthal`` (azimuthal bins: the output becomes the cake; absent or
null: the 1-D profile);
``azimuthalRange`` ([min, max], chi in degrees, pyFAI's convention:
within [-180, 180], or within [0, 360] for chi counted from 0; default:
the chi range of the unmasked pixels; without ``nAzimuthal`` it limits
the 1-D profile to that sector); ``pixel1``/``pixel2`` (m) for PONI
files of named detectors; ``shape`` ([rows, columns]) when neither the
PONI file (``max_shape``) nor a calibration file gives the frames' shape
(else the first frame does).

1-D: each frame gives ``{uniqueId, timeStamp, radial, value, count}``:
``radial`` the bin centres in ``unit``, ``value`` the intensity of each
bin, ``count`` its pixels (0: an empty bin, value 0).

Cake (``nAzimuthal``): each frame gives an NTNDArray image, float32, of
``nAzimuthal`` rows (chi) by ``npt`` columns (radial) -- pyFAI's
``integrate2d`` layout, shown by any area-detector image viewer -- with the
frame's uniqueId, timestamps and attributes, plus the attributes
``radial`` (the column centres in ``unit``, a double array),
``azimuthal`` (the row centres, chi in degrees), ``radialUnit`` and
``azimuthalUnit`` (``"chi_deg"``). Empty bins are 0. ``configure`` can
change ``nAzimuthal``, the ranges and the rest while frames flow, but not
switch between the profile and the cake (the output channel's type).

Pixel splitting is off; this is pyFAI's ``integrate1d(image, npt,
unit=..., method=("no", "csr", "cython"))`` (``integrate2d(image, npt,
nAzimuthal, ...)`` for the cake): each unmasked pixel whose centre falls
in a bin adds ``frame - dark`` to the bin's signal and ``flat *
polarisation * solid angle`` to its normalisation (pyFAI's rule: the
corrections divide the bin's sums, not each pixel); ``value = signal /
normalisation``. The pixel-to-bin matrix and the normalisation
(:mod:`.azimuthal_bins`) are built once per geometry and frame shape, on
the CPU, and applied to every frame on the backend.
"""
from __future__ import annotations

from ..errors import ConfigurationError
from .azimuthal_bins import AZIMUTHAL_UNIT, UNITS, Table, build_table, chi_range
from .base import AnalyticsProcessor, Step, to_host
from .config import step_args
from .poni import read_poni

_TYPES = {"radial": "ad", "value": "ad", "count": "ad"}
#: the attributes that the cake adds to the published image
AXIS_ATTRIBUTES = ("radial", "azimuthal", "radialUnit", "azimuthalUnit")


def _range(opts, key):
    """A ``[min, max]`` argument with min < max, or None."""
    rng = opts._get(key, None)
    if rng is not None and (
            not isinstance(rng, list) or len(rng) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rng)
            or not rng[0] < rng[1]):
        raise opts.error(key, f"must be [min, max] with min < max, got {rng!r}")
    return None if rng is None else [float(v) for v in rng]


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
        factor = opts.number("polarizationFactor", None, minimum=-1.0, maximum=1.0)
        offset = opts.number("polarizationOffset", 0.0)
        self.polarization = None if factor is None else (factor, offset)
        self.range = _range(opts, "radialRange")
        self.n_azimuthal = opts.integer("nAzimuthal", None, minimum=1)
        self.azimuthal_range = _range(opts, "azimuthalRange")
        if self.azimuthal_range is not None:
            try:
                chi_range(*self.azimuthal_range)
            except ConfigurationError as exc:
                raise opts.error("azimuthalRange", str(exc)) from None
        self.PRODUCES = "fields" if self.n_azimuthal is None else "image"
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
        return dict(_TYPES) if self.n_azimuthal is None else {}

    def output_shape(self, shape):
        if self.shape is not None and tuple(shape) != self.shape:
            raise ConfigurationError(f"AzimuthalIntegrator: frames of shape {tuple(shape)} do "
                                     f"not match the geometry's {self.shape}")
        return None if self.n_azimuthal is None else (self.n_azimuthal, self.npt)

    def table(self, shape) -> Table:
        """The Table of ``shape`` (built on first use)."""
        table = self.tables.get(shape)
        if table is None:
            table = self.tables[shape] = build_table(
                self.geometry, shape, unit=self.unit, npt=self.npt, radial_range=self.range,
                n_azimuthal=self.n_azimuthal, azimuthal_range=self.azimuthal_range,
                mask=self.files["mask"], dark=self.files["dark"], flat=self.files["flat"],
                solid=self.solid, polarization=self.polarization)
        return table

    def upload(self, xp):
        for table in self.tables.values():
            table.upload(xp)

    def apply(self, image):
        table = self.table(tuple(image.shape))
        xp = self.xp
        value = table.values(image, xp, self.fast)
        if self.n_azimuthal is None:
            return {"radial": table.radial, "value": to_host(value), "count": table.count}
        return value.astype(xp.float32).reshape(self.n_azimuthal, self.npt)

    def result_attributes(self, attributes, shape):
        """``attributes`` (NTAttributes or dicts) with the cake's axes of
        frames of ``shape`` set (:data:`AXIS_ATTRIBUTES`); None for the
        1-D profile (fields, no attributes)."""
        if self.n_azimuthal is None:
            return None
        table = self.table(tuple(shape))
        kept = [a for a in attributes if a["name"] not in AXIS_ATTRIBUTES]
        return kept + [
            {"name": "radial", "value": ("ad", table.radial),
             "descriptor": f"radial bin centres ({self.unit}), the image's columns"},
            {"name": "azimuthal", "value": ("ad", table.azimuthal),
             "descriptor": f"azimuthal bin centres ({AZIMUTHAL_UNIT}), the image's rows"},
            {"name": "radialUnit", "value": ("s", self.unit)},
            {"name": "azimuthalUnit", "value": ("s", AZIMUTHAL_UNIT)}]


class AzimuthalIntegrator(AnalyticsProcessor):
    """Azimuthal integration with a PONI geometry: the 1-D profile or the
    2-D cake (see the module docstring)."""
    STEP = AzimuthalStep

    def configure(self, configDict):
        """As every analytics processor's; switching between the 1-D
        profile and the cake is refused (the output channel, opened at
        start, has the type of one of them)."""
        args = step_args(configDict)
        if "nAzimuthal" in args and (args["nAzimuthal"] is None) != (
                self.args.get("nAzimuthal") is None):
            raise ConfigurationError(
                "AzimuthalIntegrator: 'nAzimuthal' switches between the 1-D profile and the "
                "2-D cake, which changes the output channel's type; start a new consumer "
                "for it (nAzimuthal can change within the cake)")
        AnalyticsProcessor.configure(self, configDict)
