"""NTNDArray (p4p ``Value``) <-> numpy.

This module holds THE table of pvData scalar types: the ``value`` union
member, the numpy dtype, the pvData ScalarType number that ``codec.parameters``
carries (and that pvapy's ``pva.UBYTE`` etc. are), and the p4p type code. It
also holds the area-detector colour modes and the conversions between a
received NTNDArray and an image array:

* :func:`payload` gives the selected union array as a numpy view (no copy);
* :func:`frame_from_value` decodes (if ``codec.name`` is set) and reshapes
  into ``(ny, nx)`` or ``(ny, nx, 3)`` whatever the colour mode, together
  with uniqueId, timestamps, dimensions, attributes and codec;
* :func:`value_from_image` builds the NTNDArray for an image, optionally
  compressing it with an areaDetector codec exactly as NDPluginCodec would.

Copies of pixel data: reading never copies an uncompressed frame (p4p hands
out a read-only view of the received buffer; colour modes RGB2/RGB3 are
transposed views). Building a ``Value`` copies once, inside p4p, because
pvData owns its arrays; RGB2/RGB3 frames are made contiguous in AD order
first (a second copy, unavoidable for a planar/row-interleaved layout).

Why one module of about 500 lines: it is one concept, the NTNDArray wire
format as numpy sees it, and its parts are each other's vocabulary: the
scalar table picks the union member and ``codec.parameters`` in both
directions, the colour modes decide the shapes in both directions, and the
time stamp is the same type on both sides. Every name here is used as
``ntnda.X`` across the package (hpc, gpu, analytics, crypto, pva), so a split
would need re-exports, i.e. two names per fact. It reads top to bottom in
four sections: the scalar-type table; colour modes, the NTNDArray type and
time stamps; reading a Value; building a Value.
"""
from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import numpy as np
from p4p import Type, Value
from p4p.nt import NTNDArray

from . import codecs
from .errors import CorruptPayloadError, FrameError


# --------------------------------------------------------------------------
# The scalar-type table
# --------------------------------------------------------------------------

class PvType(enum.IntEnum):
    """pvData ScalarType numbers. pvapy exposes the same numbers as
    ``pvaccess.BOOLEAN`` ... ``pvaccess.STRING``; areaDetector puts them in
    ``codec.parameters`` to give the data type of the uncompressed frame."""
    BOOLEAN = 0
    BYTE = 1
    SHORT = 2
    INT = 3
    LONG = 4
    UBYTE = 5
    USHORT = 6
    UINT = 7
    ULONG = 8
    FLOAT = 9
    DOUBLE = 10
    STRING = 11


@dataclass(frozen=True)
class ScalarInfo:
    """One row of the scalar-type table."""
    pv_type: PvType
    union_key: Optional[str]   # member of the NTNDArray value union
    dtype: Optional[np.dtype]  # numpy dtype of that member
    p4p_code: str              # p4p type code of a scalar field of this type
    #: (min, max) of an integer type (from numpy's iinfo of ``dtype``); None for others
    int_range: Optional[tuple] = None


def _row(pv_type, union_key, dtype, p4p_code):
    dtype = None if dtype is None else np.dtype(dtype)
    int_range = None
    if dtype is not None and dtype.kind in "iu":
        int_range = (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    return ScalarInfo(pv_type, union_key, dtype, p4p_code, int_range)


#: THE table: pvData scalar type <-> union member <-> numpy dtype <-> p4p code.
SCALAR_TYPES = (
    _row(PvType.BOOLEAN, "booleanValue", np.bool_, "?"),
    _row(PvType.BYTE, "byteValue", np.int8, "b"),
    _row(PvType.SHORT, "shortValue", np.int16, "h"),
    _row(PvType.INT, "intValue", np.int32, "i"),
    _row(PvType.LONG, "longValue", np.int64, "l"),
    _row(PvType.UBYTE, "ubyteValue", np.uint8, "B"),
    _row(PvType.USHORT, "ushortValue", np.uint16, "H"),
    _row(PvType.UINT, "uintValue", np.uint32, "I"),
    _row(PvType.ULONG, "ulongValue", np.uint64, "L"),
    _row(PvType.FLOAT, "floatValue", np.float32, "f"),
    _row(PvType.DOUBLE, "doubleValue", np.float64, "d"),
    _row(PvType.STRING, None, None, "s"),
)

_BY_PV_TYPE = {row.pv_type: row for row in SCALAR_TYPES}
_BY_UNION_KEY = {row.union_key: row for row in SCALAR_TYPES if row.union_key}
_BY_DTYPE = {row.dtype: row for row in SCALAR_TYPES if row.dtype is not None}
_BY_P4P_CODE = {row.p4p_code: row for row in SCALAR_TYPES}


def info_for_dtype(dtype) -> ScalarInfo:
    """Table row for a numpy dtype (native or little-endian); FrameError if
    NTNDArray has no member for it (e.g. float16, complex)."""
    dt = np.dtype(dtype)
    row = _BY_DTYPE.get(dt.newbyteorder("=") if dt.byteorder in "<>" else dt)
    if row is None:
        raise FrameError(f"numpy dtype {dt} has no NTNDArray value member; "
                         f"supported: {', '.join(str(d) for d in _BY_DTYPE)}")
    return row


def info_for_union_key(key: str) -> ScalarInfo:
    """Table row for a value union member name such as ``ushortValue``."""
    try:
        return _BY_UNION_KEY[key]
    except KeyError:
        raise FrameError(f"unknown NTNDArray value member {key!r}") from None


def info_for_pv_type(number: int) -> ScalarInfo:
    """Table row for a pvData ScalarType number (any integer width)."""
    try:
        row = _BY_PV_TYPE[PvType(int(number))]
    except (ValueError, TypeError):
        raise FrameError(f"{number!r} is not a pvData scalar type number") from None
    if row.dtype is None:
        raise FrameError(f"pvData type {row.pv_type.name} cannot hold image data")
    return row


def info_for_p4p_code(code: str) -> ScalarInfo:
    """Table row for a p4p scalar type code such as ``'I'``."""
    try:
        return _BY_P4P_CODE[code]
    except (KeyError, TypeError):
        raise FrameError(f"unknown p4p scalar type code {code!r}") from None


def p4p_code(pva_type) -> str:
    """p4p type code for a pvapy-style type constant (``pva.UINT``) or a p4p
    code string (``'I'``), so getStatsPvaTypes() ported from pvapy works."""
    if isinstance(pva_type, str):
        return info_for_p4p_code(pva_type).p4p_code
    try:
        return _BY_PV_TYPE[PvType(int(pva_type))].p4p_code
    except (ValueError, TypeError):
        raise FrameError(f"{pva_type!r} is not a PVA scalar type") from None


# --------------------------------------------------------------------------
# Colour modes, the NTNDArray type, time stamps
# --------------------------------------------------------------------------

class ColorMode(enum.IntEnum):
    """areaDetector NDColorMode_t."""
    MONO = 0
    BAYER = 1
    RGB1 = 2   # dims [3, NX, NY]: pixel-interleaved
    RGB2 = 3   # dims [NX, 3, NY]: row-interleaved
    RGB3 = 4   # dims [NX, NY, 3]: planar
    YUV444 = 5
    YUV422 = 6
    YUV411 = 7


#: For each RGB mode, the position of the colour axis in the numpy shape
#: of the flat buffer (reversed AD dims); moving it to the end gives (ny, nx, 3).
_COLOR_AXIS = {ColorMode.RGB1: 2, ColorMode.RGB2: 1, ColorMode.RGB3: 0}

#: NTNDArray type that pvagpu publishes: p4p's plus the optional descriptor.
_P4P_NTNDARRAY = NTNDArray.buildType()
NTNDARRAY_TYPE = Type(list(_P4P_NTNDARRAY.aspy()[2]) + [("descriptor", "s")],
                      id=_P4P_NTNDARRAY.getID())


class TimeStamp(NamedTuple):
    """An EPICS time_t, POSIX epoch."""
    secondsPastEpoch: int = 0
    nanoseconds: int = 0
    userTag: int = 0

    @classmethod
    def from_seconds(cls, t: float, user_tag: int = 0) -> "TimeStamp":
        sec = int(t // 1)
        ns = int(round((t - sec) * 1e9))
        if ns == 1_000_000_000:  # rounded up to the next second
            sec, ns = sec + 1, 0
        return cls(sec, ns, user_tag)

    @classmethod
    def now(cls) -> "TimeStamp":
        ns = time.time_ns()
        return cls(ns // 1_000_000_000, ns % 1_000_000_000, 0)

    @property
    def seconds(self) -> float:
        return self.secondsPastEpoch + 1e-9 * self.nanoseconds


#: p4p type spec of an EPICS time_t (the fields of :class:`TimeStamp`)
TIME_T = ("S", "time_t", [("secondsPastEpoch", "l"), ("nanoseconds", "i"), ("userTag", "i")])


# --------------------------------------------------------------------------
# Reading a Value
# --------------------------------------------------------------------------

@dataclass
class Frame:
    """A decoded area-detector frame.

    ``image`` is ``(ny, nx)`` for Mono/Bayer/YUV and ``(ny, nx, 3)`` for the RGB
    modes, whatever the wire layout; a read-only view of the received buffer
    where possible. ``attributes`` is the list of NTAttribute sub-structures
    (p4p Values, their variant types intact); ``codec`` is the codec the frame
    arrived with ("" for none).
    """
    image: np.ndarray
    unique_id: int = 0
    color_mode: ColorMode = ColorMode.MONO
    codec: str = ""
    time_stamp: TimeStamp = TimeStamp()
    data_time_stamp: TimeStamp = TimeStamp()
    dimension: list = field(default_factory=list)
    attributes: list = field(default_factory=list)
    descriptor: str = ""

    @property
    def nx(self) -> int:
        return self.image.shape[1]

    @property
    def ny(self) -> int:
        return self.image.shape[0]

    @property
    def nz(self) -> Optional[int]:
        return self.image.shape[2] if self.image.ndim == 3 else None

    def attribute(self, name: str, default=None):
        """Value of the attribute called ``name`` (``default`` if absent)."""
        for attr in self.attributes:
            if attr["name"] == name:
                return attr["value"]
        return default


def payload(value: Value):
    """The selected value-union array (numpy view, no copy) and its table row.

    An empty union gives a zero-length uint8 array."""
    arr = value["value"]
    if arr is None:
        return np.empty(0, np.uint8), _BY_UNION_KEY["ubyteValue"]
    if not isinstance(arr, np.ndarray):
        raise FrameError(f"the value union holds a {type(arr).__name__}, not a numeric array")
    return arr, info_for_dtype(arr.dtype)


def color_mode_of(value: Value) -> ColorMode:
    """ColorMode attribute of an NTNDArray (any integer type); Mono if absent."""
    for attr in value["attribute"]:
        if attr["name"] == "ColorMode":
            mode = attr["value"]
            try:
                return ColorMode(int(mode))
            except (TypeError, ValueError):
                raise FrameError(f"ColorMode attribute {mode!r} is not a colour mode") from None
    return ColorMode.MONO


def compressed_payload(value: Value):
    """``(payload, dtype, uncompressed_size)`` of a frame whose codec.name is
    set, after checking codec.parameters, compressedSize and
    uncompressedSize against the payload and the dimensions
    (CorruptPayloadError naming what disagrees)."""
    name = value["codec.name"]
    param = value["codec.parameters"]
    if param is None:
        raise CorruptPayloadError(f"codec {name!r} frame without codec.parameters (data type)")
    dtype = info_for_pv_type(param).dtype
    n_elements = math.prod(pixel_shape(value))   # exact (Python ints), no NumPy call
    size = int(value["uncompressedSize"])
    if size != n_elements * dtype.itemsize:
        raise CorruptPayloadError(
            f"uncompressedSize {size} disagrees with dimensions ({n_elements} x "
            f"{dtype.itemsize}-byte {dtype.name} = {n_elements * dtype.itemsize})")
    compressed = codecs.as_bytes(payload(value)[0])
    declared = int(value["compressedSize"])
    if declared != compressed.nbytes:
        raise CorruptPayloadError(
            f"compressedSize {declared} disagrees with the payload length {compressed.nbytes}")
    return compressed, dtype, size


def pixel_shape(value: Value) -> tuple:
    """Numpy shape (slowest axis first) of the uncompressed pixels: the
    reversed ``dimension[].size``; FrameError for a negative size."""
    shape = tuple(int(d["size"]) for d in reversed(value["dimension"]))
    if any(n < 0 for n in shape):
        raise FrameError(f"negative dimension in {shape[::-1]}")
    return shape


def image_from_pixels(flat, value: Value, xp=np):
    """The uncompressed 1-D pixels ``flat`` of ``value`` as ``(ny, nx)`` or
    ``(ny, nx, 3)`` per its dimensions and ColorMode: ``(image, mode)``.

    ``xp`` is the array module of ``flat`` (numpy, or cupy for device
    arrays); the result is a view. FrameError when the dimensions disagree
    with the data or the colour mode."""
    shape = pixel_shape(value)
    n_elements = int(np.prod(shape, dtype=np.int64)) if shape else 0
    if flat.size != n_elements:
        raise FrameError(f"dimensions {shape[::-1]} need {n_elements} elements, "
                         f"the payload holds {flat.size}")
    mode = color_mode_of(value)
    if mode not in _COLOR_AXIS:
        if len(shape) != 2:
            raise FrameError(f"colour mode {mode.name} needs 2 dimensions, got {shape[::-1]}")
        return flat.reshape(shape), mode
    axis = _COLOR_AXIS[mode]
    if len(shape) != 3 or shape[axis] != 3:
        raise FrameError(f"colour mode {mode.name} needs 3 dimensions with 3 colours at "
                         f"AD dimension {2 - axis}, got {shape[::-1]}")
    name = value["codec.name"]
    if name and getattr(codecs.get(name), "interleaves_color", False):
        # decoded jpeg is pixel-interleaved whatever the mode says
        shape = tuple(np.delete(shape, axis)) + (3,)
        axis = _COLOR_AXIS[ColorMode.RGB1]
    return xp.moveaxis(flat.reshape(shape), axis, 2), mode


def frame_of(value: Value, image, mode: ColorMode) -> Frame:
    """A :class:`Frame` of ``image`` with the metadata of ``value``."""
    return Frame(
        image=image,
        unique_id=int(value["uniqueId"]),
        color_mode=mode,
        codec=value["codec.name"],
        time_stamp=TimeStamp(*(value[f"timeStamp.{k}"] for k in TimeStamp._fields)),
        data_time_stamp=TimeStamp(*(value[f"dataTimeStamp.{k}"] for k in TimeStamp._fields)),
        dimension=value["dimension"],
        attributes=value["attribute"],
        descriptor=value["descriptor"] if "descriptor" in value else "",
    )


def frame_from_value(value: Value) -> Frame:
    """Decode and reshape a received NTNDArray.

    Raises :class:`FrameError` for dimensions that disagree with the data or
    an unsupported colour mode, and :class:`pvagpu.errors.CodecError` for an
    unknown codec or a corrupt payload."""
    if value["codec.name"]:
        flat = codecs.decode(value["codec.name"], *compressed_payload(value))
    else:
        flat = payload(value)[0]
    image, mode = image_from_pixels(flat, value)
    return frame_of(value, image, mode)


# --------------------------------------------------------------------------
# Building a Value
# --------------------------------------------------------------------------

def _ad_layout(image: np.ndarray, color_mode: ColorMode) -> np.ndarray:
    """``image`` ((ny, nx) or (ny, nx, 3)) as a C-contiguous array in AD order."""
    if color_mode in _COLOR_AXIS:
        if image.ndim != 3 or image.shape[2] != 3:
            raise FrameError(f"colour mode {color_mode.name} needs a (ny, nx, 3) image, "
                             f"got shape {image.shape}")
        image = np.moveaxis(image, 2, _COLOR_AXIS[color_mode])
    elif image.ndim != 2:
        raise FrameError(f"colour mode {color_mode.name} needs a (ny, nx) image, "
                         f"got shape {image.shape}")
    return np.ascontiguousarray(image)


def dimension_list(shape, like=None) -> list:
    """dimension_t list for a numpy shape (fastest axis first); ``like`` is a
    received dimension list whose offset/binning/reverse are kept when the
    sizes agree."""
    sizes = [int(n) for n in reversed(shape)]
    if like is not None and [int(d["size"]) for d in like] == sizes:
        return list(like)
    return [{"size": n, "offset": 0, "fullSize": n, "binning": 1, "reverse": False} for n in sizes]


def _set_color_mode(attributes: list, color_mode: ColorMode) -> list:
    """``attributes`` with the ColorMode attribute set (int32, as ADCore sends it)."""
    out = [a for a in attributes if a["name"] != "ColorMode"]
    old = next((a for a in attributes if a["name"] == "ColorMode"), None)
    old_mode = None if old is None else old["value"]
    if isinstance(old_mode, tuple):  # a dict attribute: (type code, value)
        old_mode = old_mode[1]
    if old_mode is not None and int(old_mode) == color_mode:
        out.insert(attributes.index(old), old)  # keep it as received, at its place
    else:
        out.insert(0, {"name": "ColorMode", "value": ("i", int(color_mode))})
    return out


def value_from_image(image: np.ndarray, unique_id: int = 0, *,
                     color_mode: Optional[int] = None, codec: str = "",
                     codec_options: Optional[dict] = None, **fields) -> Value:
    """Build an NTNDArray for ``image``.

    ``image`` is ``(ny, nx)`` or, for RGB1/RGB2/RGB3, ``(ny, nx, 3)``;
    ``color_mode`` defaults to Mono for 2-D and RGB1 for 3-D images. With
    ``codec`` the pixels are compressed as NDPluginCodec does (ubyteValue
    payload, codec.parameters = ScalarType of the pixels, compressedSize,
    uncompressedSize). ``fields`` are those of :func:`build_value`
    (timestamps, attributes, dimension, descriptor)."""
    image = np.asarray(image)
    if color_mode is None:
        color_mode = ColorMode.RGB1 if image.ndim == 3 else ColorMode.MONO
    color_mode = ColorMode(int(color_mode))
    info = info_for_dtype(image.dtype)
    if codec and color_mode in _COLOR_AXIS and getattr(codecs.get(codec), "interleaves_color", False):
        # jpeg always carries pixel-interleaved colour; dims stay those of the mode
        pixels = _ad_layout(image, ColorMode.RGB1)
        shape = np.moveaxis(np.empty(image.shape, np.bool_), 2, _COLOR_AXIS[color_mode]).shape
    else:
        pixels = _ad_layout(image, color_mode)
        shape = pixels.shape
    if codec:
        data = codecs.encode(codec, pixels, **(codec_options or {}))
        union = ("ubyteValue", data)
    else:
        union = (info.union_key, pixels.reshape(-1))
    return build_value(union, unique_id, shape=shape, dtype=info.dtype, codec=codec,
                       color_mode=color_mode, **fields)


def value_from_compressed(data: np.ndarray, unique_id: int = 0, *, nx: int, ny: int,
                          dtype, codec: str, color_mode: int = ColorMode.MONO,
                          **fields) -> Value:
    """Build an NTNDArray around an already-compressed 2-D payload ``data``."""
    codecs.get(codec)  # an unknown codec name is an error here, not at the receiver
    payload_bytes = codecs.as_bytes(np.ascontiguousarray(data))
    return build_value(("ubyteValue", payload_bytes), unique_id, shape=(int(ny), int(nx)),
                       dtype=info_for_dtype(dtype).dtype, codec=codec,
                       color_mode=color_mode, **fields)


def build_value(union: tuple, unique_id: int, *, shape: tuple, dtype: np.dtype,
                codec: str = "", color_mode: int = ColorMode.MONO,
                time_stamp: Optional[TimeStamp] = None,
                data_time_stamp: Optional[TimeStamp] = None,
                attributes: Optional[list] = None, dimension: Optional[list] = None,
                descriptor: str = "", value_type: Type = NTNDARRAY_TYPE) -> Value:
    """The NTNDArray Value for a value-union assignment ``(member, array)``.

    ``shape`` is the numpy shape of the uncompressed pixels in AD order and
    ``dtype`` their type (codec.parameters, as ADCore sets on every frame).
    Timestamps default to now; ``attributes`` (dicts or NTAttribute Values)
    and ``dimension`` (as in :class:`Frame`) are carried over; the ColorMode
    attribute is set to ``color_mode``."""
    now = TimeStamp.now() if time_stamp is None or data_time_stamp is None else None
    n_elements = int(np.prod(shape, dtype=np.int64))
    value = Value(value_type, {
        "value": union,
        "codec": {"name": codec, "parameters": ("i", int(info_for_dtype(dtype).pv_type))},
        "compressedSize": union[1].nbytes,
        "uncompressedSize": n_elements * np.dtype(dtype).itemsize,
        "uniqueId": int(unique_id),
        "dimension": dimension_list(shape, dimension),
        "attribute": _set_color_mode(list(attributes or []), ColorMode(int(color_mode))),
        "timeStamp": (time_stamp or now)._asdict(),
        "dataTimeStamp": (data_time_stamp or now)._asdict(),
    })
    if descriptor and "descriptor" in value:
        value["descriptor"] = descriptor
    return value


def value_from_frame(frame: Frame, **overrides) -> Value:
    """Inverse of :func:`frame_from_value` (uncompressed unless ``codec=``)."""
    kwargs = dict(unique_id=frame.unique_id, color_mode=frame.color_mode,
                  time_stamp=frame.time_stamp, data_time_stamp=frame.data_time_stamp,
                  attributes=frame.attributes, dimension=frame.dimension,
                  descriptor=frame.descriptor)
    kwargs.update(overrides)
    return value_from_image(frame.image, **kwargs)


def with_extra_fields(value: Value, extra) -> Value:
    """``value`` with the fields of ``extra`` (a dict or a p4p Value) set.

    Fields that the NTNDArray type lacks are added to a new type, as pvapy
    does for ``extraFieldsPvObject``; the result may be a new Value."""
    if extra is None:
        return value
    if isinstance(extra, Value):
        specs = dict((name, spec) for name, spec in extra.type().aspy()[2])
        items = [(name, extra[name]) for name in extra.keys()]
    else:
        specs, items = {}, list(dict(extra).items())
    missing = [name for name, _ in items if name not in value]
    if missing:
        unknown = [name for name in missing if name not in specs]
        if unknown:
            raise FrameError(f"extra fields {unknown} are not NTNDArray fields; pass a "
                             f"p4p Value so that their types are known")
        base = value.type()
        new_type = Type(list(base.aspy()[2]) + [(n, specs[n]) for n in missing], id=base.getID())
        value = Value(new_type, {name: value[name] for name in value.keys()
                                 if name != "value"} | {"value": _union_item(value)})
    for name, item in items:
        value[name] = item
    return value


def _union_item(value: Value):
    """The value union of ``value`` as a (member, array) assignment."""
    arr, info = payload(value)
    return (info.union_key, arr)
