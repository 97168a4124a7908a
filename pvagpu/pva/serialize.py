"""A p4p ``Value`` as bytes and back, without pickle or eval.

The layout (little-endian), version 1:

* header :data:`PLAINTEXT_HEADER`: magic ``PVGV``, version, flags (0), 0,
  length of the type JSON, length of the tree JSON, number of arrays;
* one uint64 length per array;
* the type JSON: the structure type in p4p's ``aspy()`` form with every
  type ID (lists instead of tuples);
* the tree JSON: the fields in type order; floats as the hex of their IEEE
  bytes, each variant as ``[type, content]``, each union as
  ``[member, content]``, each numeric array as the index of its array;
* zero padding to 8 bytes, then each array's raw bytes, each padded to 8.

:func:`serialize_value` (here) makes it; :func:`pvagpu.pva.deserialize.
deserialize_value` checks every length, type code, range and nesting depth,
within a budget of nodes and string bytes, before it builds anything. The encrypted envelope (:mod:`pvagpu.crypto`)
carries this layout as its plaintext, but nothing here is cryptography.

The encoder walks ``Value.tolist()`` (one C call that returns every field
as plain Python objects, arrays as views) with a plan made once per type.
tolist() drops two type facts, which are read from the Value itself only
where the Python object cannot tell them: the selected member of a union
and the type of a number held by a variant (int32 or int64? float or
double?); :mod:`pvagpu.pva.type_text` reads them. ``sv_of`` is a callable
returning the p4p Value of the structure being encoded, so those look-ups
cost nothing when they are not needed.
"""
from __future__ import annotations

import json
import struct
import threading
from collections import OrderedDict
from typing import Optional

import numpy as np
from p4p import Value

from .. import ntnda
from ..errors import FrameError
from .type_text import variant_types_and_union_members_from_tostr

# -- the format --------------------------------------------------------------

PLAINTEXT_MAGIC = b"PVGV"
PLAINTEXT_VERSION = 1
#: magic, version, flags, 0, type JSON length, tree JSON length, number of arrays
PLAINTEXT_HEADER = struct.Struct("<4sBBHIII")

#: p4p codes of the scalar types (from THE table in pvagpu.ntnda)
SCALAR_CODES = "".join(row.p4p_code for row in ntnda.SCALAR_TYPES)
FLOAT_FORMATS = {"f": "<f", "d": "<d"}
#: numeric array code -> numpy dtype (from THE table in pvagpu.ntnda)
ARRAY_DTYPES = {"a" + row.p4p_code: row.dtype for row in ntnda.SCALAR_TYPES
                if row.dtype is not None}
_DTYPE_ARRAY = {dt: code for code, dt in ARRAY_DTYPES.items()}


# -- the encoder -------------------------------------------------------------

class _Blobs:
    __slots__ = ("arrays",)

    def __init__(self):
        self.arrays = []

    def add(self, arr: np.ndarray) -> int:
        self.arrays.append(arr)
        return len(self.arrays) - 1


def _code_of_array(arr: np.ndarray) -> str:
    dt = arr.dtype
    dt = dt.newbyteorder("=") if dt.byteorder in "<>" else dt
    try:
        return _DTYPE_ARRAY[dt]
    except KeyError:
        raise FrameError(f"array of {arr.dtype} has no PVA type") from None


def _enc_scalar(code, val):
    if code in FLOAT_FORMATS:
        return struct.pack(FLOAT_FORMATS[code], val).hex()
    if code == "?":
        return bool(val)
    if code == "s":
        return str(val)
    return int(val)


def _json_spec(spec):
    """aspy() spec with tuples as lists (JSON form)."""
    if isinstance(spec, str):
        return spec
    # p4p's aspy() gives an anonymous structure or union the ID "structure",
    # which is what the deserialised type then carries
    return [spec[0], spec[1], [[n, _json_spec(s)] for n, s in spec[2]]]


def _quick_code(x) -> Optional[str]:
    """The type code of a tolist() object, where the object alone tells it."""
    if isinstance(x, np.ndarray):
        return _code_of_array(x)
    if isinstance(x, bool):
        return "?"
    if isinstance(x, str):
        return "s"
    return None


def _variant_spec(sv: Value, name: str):
    """The type spec of what variant field ``name`` of ``sv`` holds, when
    its tolist() object does not tell (:func:`_quick_code`)."""
    val = sv[name]
    if isinstance(val, Value):
        return val.type().aspy()
    if isinstance(val, list) and all(isinstance(x, str) for x in val):
        return "as"
    code = variant_types_and_union_members_from_tostr(sv)[0].get(name)
    if code is None:
        raise FrameError(f"cannot tell the type of variant field {name!r}")
    return code


def _enc_typed(spec, x, sv_of, blobs: _Blobs):
    """Encode tolist() object ``x`` of type ``spec`` (a variant's content
    or a union member); ``sv_of()`` gives it as a p4p object."""
    if isinstance(spec, str):
        if len(spec) == 1 and spec in SCALAR_CODES:
            return _enc_scalar(spec, x)
        if spec == "as":
            return [str(s) for s in x]
        if spec in ARRAY_DTYPES:
            return blobs.add(np.asarray(x, ARRAY_DTYPES[spec]))
        raise FrameError(f"unsupported variant/union member type {spec!r}")
    if spec[0] == "S":
        return _type_plan(spec)[1](x, sv_of, blobs)
    if spec[0] == "aS":
        enc = _type_plan(spec)[1]
        element = _elements_of(sv_of)
        return [None if e is None else enc(e, lambda k=k: element(k), blobs)
                for k, e in enumerate(x or [])]
    raise FrameError(f"unsupported variant/union member type {spec[0]!r}")


def _step_float(x, code, sv_of, blobs):
    return struct.pack(FLOAT_FORMATS[code], x).hex()


def _step_strings(x, _, sv_of, blobs):
    return [str(s) for s in x] if x else []


def _step_array(x, dtype, sv_of, blobs):
    if x is None:
        x = np.empty(0, dtype)
    elif x.dtype != dtype:
        x = x.astype(dtype)
    return blobs.add(x)


def _step_struct(x, arg, sv_of, blobs):
    name, enc = arg
    return enc(x, lambda: sv_of()[name], blobs)


def _step_flat_struct(x, n_fields, sv_of, blobs):
    if len(x) != n_fields:
        raise FrameError("structure does not match its type")
    return [v for _, v in x]


def _elements_of(sv_of, name=None):
    """``k -> the p4p Value of element k`` of structure array ``name`` of
    ``sv_of()`` (or of ``sv_of()`` itself), fetching the array once, when
    first needed (each fetch wraps every element)."""
    fetched = []

    def element(k):
        if not fetched:
            fetched.append(sv_of() if name is None else sv_of()[name])
        return fetched[0][k]
    return element


def _step_structs(x, arg, sv_of, blobs):
    name, enc = arg
    element = _elements_of(sv_of, name)
    return [None if e is None else enc(e, lambda k=k: element(k), blobs)
            for k, e in enumerate(x or [])]


def _step_flat_structs(x, n_fields, sv_of, blobs):
    if any(e is not None and len(e) != n_fields for e in x or ()):
        raise FrameError("structure does not match its type")
    return [None if e is None else [v for _, v in e] for e in x or []]


def _is_flat(fields) -> bool:
    """Only fields that tolist() gives as they are encoded."""
    return all(isinstance(spec, str) and len(spec) == 1 and spec in _PASS_THROUGH
               for _, spec in fields)


_PASS_THROUGH = "?bhilBHILs"


def _step_union(x, arg, sv_of, blobs):
    name, members, unique_code = arg
    if x is None:
        return None
    member = unique_code.get(_quick_code(x))
    if member is None:
        member = variant_types_and_union_members_from_tostr(sv_of())[1].get(name)
    mspec = members.get(member)
    if mspec is None:
        raise FrameError(f"cannot tell the selected member of union {name!r}")
    return [member, _enc_typed(mspec, x, lambda: sv_of()[name], blobs)]


def _step_variant(x, name, sv_of, blobs):
    if x is None:
        return None
    spec = _quick_code(x) or _variant_spec(sv_of(), name)
    return [_json_spec(spec), _enc_typed(spec, x, lambda: sv_of()[name], blobs)]


def _step_variants(x, name, sv_of, blobs):
    out = []
    for val in sv_of()[name] or []:
        if val is None:
            out.append(None)
            continue
        spec = val.type().aspy() if isinstance(val, Value) else _quick_code(val)
        if spec is None:
            raise FrameError("variant array element of ambiguous scalar type")
        x = val.tolist() if isinstance(val, Value) else val
        out.append([_json_spec(spec), _enc_typed(spec, x, lambda v=val: v, blobs)])
    return out


def _struct_encoder(fields):
    """The encoder of a structure of ``fields`` (aspy() form):
    ``encode(items, sv_of, blobs)`` -> list, ``items`` from tolist().
    Fields of integer, bool and string type pass through as they are."""
    steps = []
    for i, (name, spec) in enumerate(fields):
        if isinstance(spec, str):
            if len(spec) == 1 and spec in _PASS_THROUGH:
                continue
            if spec in FLOAT_FORMATS:
                steps.append((i, _step_float, spec))
            elif spec == "as":
                steps.append((i, _step_strings, None))
            elif spec in ARRAY_DTYPES:
                steps.append((i, _step_array, ARRAY_DTYPES[spec]))
            elif spec == "v":
                steps.append((i, _step_variant, name))
            elif spec == "av":
                steps.append((i, _step_variants, name))
            else:
                raise FrameError(f"field {name!r}: unsupported PVA type code {spec!r}")
        elif spec[0] in ("S", "aS") and _is_flat(spec[2]):
            steps.append((i, _step_flat_struct if spec[0] == "S" else _step_flat_structs,
                          len(spec[2])))
        elif spec[0] == "S":
            steps.append((i, _step_struct, (name, _struct_encoder(spec[2]))))
        elif spec[0] == "aS":
            steps.append((i, _step_structs, (name, _struct_encoder(spec[2]))))
        elif spec[0] == "U":
            codes = [m_spec for _, m_spec in spec[2] if isinstance(m_spec, str)]
            unique_code = {s: m for m, s in spec[2] if isinstance(s, str) and codes.count(s) == 1}
            steps.append((i, _step_union, (name, dict(spec[2]), unique_code)))
        else:
            raise FrameError(f"field {name!r}: unsupported PVA type {spec[0]!r}")
    n_fields = len(fields)

    def encode(items, sv_of, blobs):
        if len(items) != n_fields:
            raise FrameError("structure does not match its type")
        out = [v for _, v in items]
        for i, step, arg in steps:
            out[i] = step(out[i], arg, sv_of, blobs)
        return out
    return encode


_PLAN_CACHE_SIZE = 8
_plan_cache: "OrderedDict[Optional[str], list]" = OrderedDict()
_plan_cache_lock = threading.Lock()


def _type_plan(spec) -> tuple:
    """``(JSON type description, encoder)`` of structure type ``spec`` (an
    aspy() form; the encoder from :func:`_struct_encoder`).

    A pure function of ``spec``, remembered for the last few distinct specs:
    a hit needs ``spec`` to be *equal* (the whole nested type, compared
    field by field) to the remembered one, so nothing but the type's own
    description and plan is ever reused. Entries are grouped by the
    top-level type ID only to keep the comparisons few."""
    with _plan_cache_lock:
        bucket = _plan_cache.get(spec[1])
        if bucket is not None:
            for cached_spec, plan in bucket:
                if cached_spec == spec:
                    return plan
    plan = (json.dumps(_json_spec(spec), separators=(",", ":")).encode(),
            _struct_encoder(spec[2]))
    with _plan_cache_lock:
        bucket = _plan_cache.setdefault(spec[1], [])
        _plan_cache.move_to_end(spec[1])
        bucket.insert(0, (spec, plan))
        del bucket[_PLAN_CACHE_SIZE:]
        while len(_plan_cache) > _PLAN_CACHE_SIZE:
            _plan_cache.popitem(last=False)
    return plan


_TREE_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _as_bytes(a: np.ndarray) -> np.ndarray:
    if a.ndim == 1 and a.flags.c_contiguous:
        return a.view(np.uint8)
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def serialize_value(value: Value, items: Optional[list] = None):
    """``value`` as a list of buffers whose concatenation is the plaintext
    (header + JSON + raw array bytes, 8-byte aligned). No copy of arrays.
    The JSON type description and the encoding plan are remembered per
    type (:func:`_type_plan`); the fields are encoded anew for every value.
    ``items``: ``value.tolist()``, if the caller has it already."""
    spec = value.type().aspy()
    type_json, encode = _type_plan(spec)
    blobs = _Blobs()
    if items is None:
        items = value.tolist()
    tree = encode(items, lambda: value, blobs)
    tree_json = _TREE_JSON.encode(tree).encode()
    arrays = [_as_bytes(a) for a in blobs.arrays]
    lengths = struct.pack(f"<{len(arrays)}Q", *(a.nbytes for a in arrays))
    head = (PLAINTEXT_HEADER.pack(PLAINTEXT_MAGIC, PLAINTEXT_VERSION, 0, 0, len(type_json),
                            len(tree_json), len(arrays)) + lengths + type_json + tree_json)
    parts = [head + bytes(-len(head) % 8)]
    for a in arrays:
        parts.append(a)
        if a.nbytes % 8:
            parts.append(bytes(-a.nbytes % 8))
    return parts

