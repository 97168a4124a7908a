"""pyFAI's PONI geometry files, read without pyFAI, and the per-pixel
scattering angles they give.

A PONI file (``poni_version`` 1 to 2.1, what pyFAI-calib2 writes) holds
``Key: value`` lines (``#`` starts a comment)::

    poni_version: 2.1
    Detector: Detector
    Detector_config: {"pixel1": 7.5e-05, "pixel2": 7.5e-05, "orientation": 3, "max_shape": [2048, 2048]}
    Distance: 0.1          # sample to PONI, m
    Poni1: 0.075           # PONI along the slow axis (rows, "1"), m
    Poni2: 0.076           # PONI along the fast axis (columns, "2"), m
    Rot1: 0.01             # rad
    Rot2: -0.02
    Rot3: 0.0
    Wavelength: 1e-10      # m

Version 1 files give the pixel sizes as ``PixelSize1``/``PixelSize2``.
``Detector_config`` is JSON (parsed as JSON, never evaluated). Named
detectors (``Detector: Pilatus1M``) whose configuration lacks the pixel
sizes need them from the processor's arguments (``pixel1``, ``pixel2``).

The geometry (pyFAI's convention): pixel ``(i, j)`` (row, column) has its
centre at ``p1 = (i + 0.5) pixel1 - poni1``, ``p2 = (j + 0.5) pixel2 -
poni2`` on the detector, ``dist`` from the sample. The detector's
rotations give the lab vector ``t = R3 R2 R1 (p1, p2, dist)`` with
``R1`` about axis 1 (left-handed), ``R2`` about axis 2 (left-handed),
``R3`` about the beam (right-handed); then ``2theta = atan2(hypot(t1, t2),
t3)``, ``q = 4 pi sin(2theta / 2) / lambda`` (nm^-1 with lambda in nm),
``chi = atan2(t1, t2)``. The solid-angle factor relative to the PONI is
``cos(alpha)^3`` with ``cos(alpha) = dist / sqrt(dist^2 + p1^2 + p2^2)``.
The polarisation factor of a beam of polarisation ``f`` (pyFAI's
``polarization_factor``, -1 to 1) whose main axis is ``offset`` rad from
the detector's horizontal is ``(1 + cos^2(2theta) - f cos(2 (chi + offset))
(1 - cos^2(2theta))) / 2``.
Detector orientations 1 to 4 (pyFAI >= 2025) flip the pixel indices.
Rounding follows pyFAI's (tests compare with pyFAI bin for bin): angles in
float64, the solid angle from float32 pixel positions, the polarisation
factor in float64 stored as float32.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigurationError

_NUMBERS = {"distance": "dist", "poni1": "poni1", "poni2": "poni2", "rot1": "rot1",
            "rot2": "rot2", "rot3": "rot3", "wavelength": "wavelength",
            "pixelsize1": "pixel1", "pixelsize2": "pixel2", "poni_version": "version"}


@dataclass
class Geometry:
    """A detector geometry (SI units: m, rad)."""
    dist: float
    poni1: float
    poni2: float
    rot1: float = 0.0
    rot2: float = 0.0
    rot3: float = 0.0
    pixel1: float | None = None
    pixel2: float | None = None
    wavelength: float | None = None
    orientation: int = 3
    shape: tuple | None = None
    detector: str = "Detector"

    def _indices(self, n: int, axis: int, dtype):
        """Pixel indices along ``axis`` (0: rows) after the orientation's flips."""
        flip = {1: (True, True), 2: (True, False), 4: (False, True)}.get(self.orientation,
                                                                         (False, False))
        r = np.arange(n, dtype=dtype)
        return r[::-1].copy() if flip[axis] else r

    def positions(self, shape, dtype=np.float64):
        """``(p1, p2)``: pixel centres relative to the PONI, m, as pyFAI
        computes them in ``dtype``, each of ``shape``."""
        ny, nx = shape
        if dtype == np.float32:
            p1 = self.pixel1 * (self._indices(ny, 0, np.float32) + np.float32(0.5)) - self.poni1
            p2 = self.pixel2 * (self._indices(nx, 1, np.float32) + np.float32(0.5)) - self.poni2
        else:
            p1 = self.pixel1 * (self._indices(ny, 0, np.float64) + 0.5) - self.poni1
            p2 = self.pixel2 * (self._indices(nx, 1, np.float64) + 0.5) - self.poni2
        return (np.broadcast_to(p1[:, None], shape).astype(np.float64),
                np.broadcast_to(p2[None, :], shape).astype(np.float64))

    def lab_vectors(self, shape):
        """``(t1, t2, t3)`` of every pixel centre (float64)."""
        p1, p2 = self.positions(shape)
        L = self.dist
        c1, c2, c3 = math.cos(self.rot1), math.cos(self.rot2), math.cos(self.rot3)
        s1, s2, s3 = math.sin(self.rot1), math.sin(self.rot2), math.sin(self.rot3)
        t1 = p1 * c2 * c3 + p2 * (c3 * s1 * s2 - c1 * s3) - L * (c1 * c3 * s2 + s1 * s3)
        t2 = p1 * c2 * s3 + p2 * (c1 * c3 + s1 * s2 * s3) - L * (-c3 * s1 + c1 * s2 * s3)
        t3 = p1 * s2 - p2 * c2 * s1 + L * c1 * c2
        return t1, t2, t3

    def tth(self, shape) -> np.ndarray:
        """2theta of every pixel centre, rad."""
        t1, t2, t3 = self.lab_vectors(shape)
        return np.arctan2(np.sqrt(t2 * t2 + t1 * t1), t3)

    def q(self, shape) -> np.ndarray:
        """q of every pixel centre, nm^-1."""
        if not self.wavelength:
            raise ConfigurationError("the PONI file gives no Wavelength: q needs one (or "
                                     "integrate in 2th_deg)")
        return 4.0e-9 * np.pi * np.sin(self.tth(shape) / 2.0) / self.wavelength

    def chi(self, shape) -> np.ndarray:
        """Azimuthal angle chi of every pixel centre, rad."""
        t1, t2, _ = self.lab_vectors(shape)
        return np.arctan2(t1, t2)

    def polarization(self, shape, factor: float, offset: float = 0.0) -> np.ndarray:
        """The polarisation factor of every pixel (float32, pyFAI's
        ``polarization(shape, factor, axis_offset)``): ``factor`` in
        [-1, 1] (1: horizontal linear, 0: circular or unpolarised),
        ``offset`` (rad) the polarisation axis from the detector's horizontal."""
        cos2 = np.cos(self.tth(shape)) ** 2
        chi = self.chi(shape)
        return (0.5 * (1.0 + cos2 - factor * np.cos(2.0 * (chi + offset)) * (1.0 - cos2))
                ).astype(np.float32)

    def solid_angle(self, shape) -> np.ndarray:
        """``cos(incidence)^3`` of every pixel (1 at the PONI)."""
        p1, p2 = self.positions(shape, np.float32)
        d = self.dist
        return (d / np.sqrt(d * d + (p1 * p1 + p2 * p2))) ** 3


def parse_poni(text: str, name: str = "PONI file") -> Geometry:
    """The Geometry of a PONI file's text; ConfigurationError naming the
    problem when it does not parse."""
    values, config, detector = {}, {}, "Detector"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise ConfigurationError(f"{name} line {number}: expected 'Key: value', got {raw!r}")
        key, value = key.strip().lower(), value.strip()
        if key in _NUMBERS:
            try:
                values[_NUMBERS[key]] = float(value)
            except ValueError:
                raise ConfigurationError(f"{name} line {number}: {key} is not a number: "
                                         f"{value!r}") from None
        elif key == "detector":
            detector = value
        elif key == "detector_config":
            try:
                config = json.loads(value)
            except ValueError as exc:
                raise ConfigurationError(f"{name} line {number}: Detector_config is not "
                                         f"JSON ({exc})") from None
            if not isinstance(config, dict):
                raise ConfigurationError(f"{name} line {number}: Detector_config is not a "
                                         f"JSON object")
        elif key == "splinefile" and value.lower() not in ("", "none"):
            raise ConfigurationError(f"{name}: spline distortion files are not supported")
        elif key == "parallax" and value.lower() not in ("", "none", "false", "null", "{}"):
            raise ConfigurationError(f"{name}: parallax correction is not supported")
    missing = [k for k in ("dist", "poni1", "poni2") if k not in values]
    if missing:
        raise ConfigurationError(f"{name}: no {', '.join(missing)} (is it a pyFAI PONI file?)")
    for key in ("pixel1", "pixel2"):
        if key in config:
            values[key] = _positive(config[key], f"{name}: Detector_config {key}")
    orientation = int(config.get("orientation", 3))
    if orientation not in (0, 1, 2, 3, 4):
        raise ConfigurationError(f"{name}: unknown detector orientation {orientation}")
    shape = config.get("max_shape")
    if shape is not None:
        if (not isinstance(shape, list) or len(shape) != 2
                or not all(isinstance(n, int) and n > 0 for n in shape)):
            raise ConfigurationError(f"{name}: max_shape must be [rows, columns], got {shape!r}")
        shape = tuple(shape)
    values.pop("version", None)
    if values["dist"] <= 0:
        raise ConfigurationError(f"{name}: Distance must be > 0, got {values['dist']}")
    return Geometry(**values, orientation=orientation, shape=shape, detector=detector)


def _positive(value, what) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{what} must be a positive number, got {value!r}")
    return float(value)


def read_poni(path: str) -> Geometry:
    """The Geometry of the PONI file at ``path``."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigurationError(f"cannot read PONI file {path!r}: {exc.strerror or exc}") \
            from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"PONI file {path!r} is not text") from None
    return parse_poni(text, f"PONI file {path!r}")
