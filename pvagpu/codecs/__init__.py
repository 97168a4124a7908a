"""Registry of areaDetector codecs, keyed by the codec.name that NDPluginCodec
puts on the wire ("lz4", "bslz4", "blosc", "jpeg", "zlib", "lz4hdf5").

A codec is an object with a ``name`` and two methods:

``encode(data, **options) -> numpy.ndarray``
    ``data`` is a C-contiguous numpy array of the uncompressed image; the
    result is the 1-D uint8 payload exactly as NDPluginCodec would publish it.

``decode(payload, dtype, uncompressed_size, **options) -> numpy.ndarray``
    ``payload`` is a 1-D uint8 numpy array (a view of the received buffer);
    the result is a writable 1-D array of ``dtype`` holding
    ``uncompressed_size // dtype.itemsize`` elements. A payload that is
    truncated, corrupt or disagrees with ``uncompressed_size`` raises
    :class:`pvagpu.errors.CorruptPayloadError`; nothing ever returns a
    wrong image. ``options`` are keyword arguments a codec may take to
    choose between equivalent ways of decoding (zlib's ``use_libz``, jpeg's
    ``in_place``); their defaults are what a stream uses.

Adding a codec touches one file: a module in this package that defines the
codec and is listed in ``_MODULES`` below.
"""
from __future__ import annotations

import importlib

import numpy as np

from ..errors import CorruptPayloadError, UnknownCodecError

#: codec.name of an uncompressed frame
NONE = ""

_MODULES = ("lz4", "bslz4", "blosc", "jpeg", "zlib", "lz4hdf5")
_REGISTRY: dict = {}


def register(codec) -> None:
    """Make ``codec`` findable by ``codec.name``."""
    _REGISTRY[codec.name] = codec


def get(name: str):
    """The codec registered under ``name``; :class:`UnknownCodecError` if none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownCodecError(
            f"unknown codec {name!r}; known codecs: {', '.join(names())}") from None


def names() -> list:
    """Names of all registered codecs, sorted."""
    return sorted(_REGISTRY)


_UINT8 = np.dtype(np.uint8)


def as_bytes(payload) -> np.ndarray:
    """A contiguous 1-D uint8 view of any buffer (bytes, bytearray,
    memoryview, ndarray); only a non-contiguous array is copied."""
    arr = payload if isinstance(payload, np.ndarray) else np.frombuffer(payload, dtype=_UINT8)
    if arr.dtype is _UINT8 and arr.ndim == 1 and arr.flags.c_contiguous:
        return arr
    return np.ascontiguousarray(arr).reshape(-1).view(_UINT8)


def check_sizes(dtype, uncompressed_size: int) -> np.dtype:
    """Validate the size that a decoder is asked to produce; return the dtype."""
    if not isinstance(dtype, np.dtype):
        dtype = np.dtype(dtype)
    if uncompressed_size < 0 or uncompressed_size % dtype.itemsize:
        raise CorruptPayloadError(
            f"uncompressedSize {uncompressed_size} is not a whole number of "
            f"{dtype.name} elements")
    return dtype


def decode(name: str, payload, dtype, uncompressed_size: int, **options) -> np.ndarray:
    """Decode ``payload`` with the codec called ``name`` (``options``: the
    codec's decode keyword arguments)."""
    codec = _REGISTRY.get(name) or get(name)
    if type(uncompressed_size) is not int:
        uncompressed_size = int(uncompressed_size)
    dtype = check_sizes(dtype, uncompressed_size)
    out = codec.decode(as_bytes(payload), dtype, uncompressed_size, **options)
    # the codec interface's promise, checked here once for every codec
    if ((out.dtype is not dtype and out.dtype != dtype) or out.ndim != 1
            or out.nbytes != uncompressed_size or not out.flags.writeable):
        raise CorruptPayloadError(
            f"{name}: decoded {out.nbytes} bytes as {out.dtype}{out.shape}, expected "
            f"{uncompressed_size} writable bytes of {dtype}")
    return out


def encode(name: str, data: np.ndarray, **options) -> np.ndarray:
    """Encode ``data`` with the codec called ``name``; a 1-D uint8 payload."""
    return get(name).encode(np.ascontiguousarray(data), **options)


for _module in _MODULES:
    importlib.import_module(f"{__name__}.{_module}")


def warm_up() -> None:
    """Encode and decode a tiny frame with every codec, so that one-time
    costs (imports, numba compilation of the bslz4 framing check) are paid
    now and not by the first frames of a stream."""
    sample = np.arange(64, dtype=np.uint16).reshape(8, 8)
    for name in names():
        data = sample.astype(np.uint8) if name == "jpeg" else sample
        decode(name, encode(name, data), data.dtype, data.nbytes)
