"""Checking the processor arguments of the analytics processors.

:class:`Options` reads one processor's (or one chain step's) JSON
arguments: typed getters with ranges and choices, and at the end
:meth:`Options.done`, which refuses keys the processor does not know (a
typo such as ``"treshold"`` is an error, not a silently ignored setting).
Every problem is a :class:`~pvagpu.errors.ConfigurationError` that names
the processor, the key and what is expected.

:func:`load_array` reads the calibration images that Corrections and the
AzimuthalIntegrator take (dark, flat, mask): ``.npy``, ``.tif``/``.tiff``,
or an HDF5 dataset written ``file.h5:/path/to/dataset``.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ConfigurationError
from ..gpu.processor import GPU_CONFIG_KEYS
from ..runtime.config import FRAMEWORK_CONFIG_KEYS

#: keys of pvapy's configDict that the consumer adds to every processor's
#: arguments and the GPU options of GpuAdImageProcessor: not the step's
FRAMEWORK_KEYS = FRAMEWORK_CONFIG_KEYS | GPU_CONFIG_KEYS

_H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs")


def step_args(config: dict) -> dict:
    """``config`` without the framework's keys."""
    return {k: v for k, v in dict(config or {}).items() if k not in FRAMEWORK_KEYS}


class Options:
    """The arguments of processor ``name``; each getter marks its key as known."""

    def __init__(self, config: dict, name: str):
        if not isinstance(config, dict):
            raise ConfigurationError(f"{name}: arguments must be a JSON object, got "
                                     f"{type(config).__name__}")
        self.config = dict(config)
        self.name = name
        self.known = set()

    def error(self, key: str, message: str) -> ConfigurationError:
        return ConfigurationError(f"{self.name}: {key!r} {message}")

    def _get(self, key, default):
        self.known.add(key)
        return self.config.get(key, default)

    def has(self, key: str) -> bool:
        self.known.add(key)
        return self.config.get(key) is not None

    def number(self, key, default, *, minimum=None, maximum=None, integer=False,
               exclusive_minimum=False):
        value = self._get(key, default)
        if value is None:
            return None
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"must be {kind}, got {value!r}")
        if integer and value != int(value):
            raise self.error(key, f"must be {kind}, got {value!r}")
        value = int(value) if integer else float(value)
        if not np.isfinite(value):
            raise self.error(key, f"must be finite, got {value!r}")
        if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
            raise self.error(key, f"must be {'>' if exclusive_minimum else '>='} {minimum}, "
                                  f"got {value!r}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be <= {maximum}, got {value!r}")
        return value

    def integer(self, key, default, *, minimum=None, maximum=None):
        return self.number(key, default, minimum=minimum, maximum=maximum, integer=True)

    def boolean(self, key, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def choice(self, key, choices, default):
        value = self._get(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(map(repr, choices))}; got {value!r}")
        return value

    def text(self, key, default=None):
        value = self._get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.error(key, f"must be a string, got {value!r}")
        return value

    def integers(self, key, default, length: int, *, minimum=None):
        """A list of ``length`` integers."""
        value = self._get(key, default)
        if value is None:
            return None
        if (not isinstance(value, (list, tuple)) or len(value) != length
                or any(isinstance(v, bool) or not isinstance(v, int) for v in value)):
            raise self.error(key, f"must be a list of {length} integers, got {value!r}")
        if minimum is not None and any(v < minimum for v in value):
            raise self.error(key, f"must hold integers >= {minimum}, got {value!r}")
        return [int(v) for v in value]

    def array(self, key, *, dtype=None):
        """The image a file named by ``key`` holds (see :func:`load_array`), or None."""
        spec = self.text(key)
        if spec is None:
            return None
        try:
            return load_array(spec, dtype=dtype)
        except ConfigurationError as exc:
            raise self.error(key, str(exc)) from None

    def done(self) -> None:
        """Refuse the keys that no getter asked for."""
        unknown = sorted(set(self.config) - self.known - FRAMEWORK_KEYS)
        if unknown:
            raise ConfigurationError(
                f"{self.name}: unknown argument(s) {', '.join(map(repr, unknown))}; "
                f"its arguments: {', '.join(sorted(self.known))}")


def load_array(spec: str, dtype=None) -> np.ndarray:
    """A 2-D image from ``spec``: ``file.npy``, ``file.tif``/``.tiff``, or an
    HDF5 dataset ``file.h5:/entry/data`` (a 3-D dataset of one frame is
    taken as 2-D). Never unpickles (``allow_pickle=False``)."""
    path, _, dataset = spec.partition(":") if not os.path.exists(spec) else (spec, "", "")
    lower = path.lower()
    if not os.path.isfile(path):
        raise ConfigurationError(f"file {path!r} does not exist")
    try:
        if lower.endswith(".npy"):
            data = np.load(path, allow_pickle=False)
        elif lower.endswith((".tif", ".tiff")):
            import tifffile
            data = tifffile.imread(path)
        elif lower.endswith(_H5_SUFFIXES):
            import h5py
            if not dataset:
                raise ConfigurationError(f"{spec!r}: name the HDF5 dataset, e.g. "
                                         f"{path}:/entry/data")
            with h5py.File(path, "r") as f:
                if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
                    raise ConfigurationError(f"{path!r} has no dataset {dataset!r}")
                data = f[dataset][()]
        else:
            raise ConfigurationError(f"{spec!r}: give a .npy, .tif/.tiff or HDF5 "
                                     f"(file.h5:/dataset) file")
    except ConfigurationError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader's failure, named
        raise ConfigurationError(f"cannot read {spec!r}: {type(exc).__name__}: {exc}") from None
    data = np.asarray(data)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ConfigurationError(f"{spec!r} holds an array of shape {data.shape}, not an image")
    return np.ascontiguousarray(data, dtype=dtype) if dtype is not None else data
