"""The checked inverse of :func:`pvagpu.pva.serialize.serialize_value`.

:func:`deserialize_value` takes bytes from anywhere (for the decryptor:
authenticated, but made by anyone who holds the receiver's public key) and
either returns the p4p ``Value`` they describe or raises FrameError. It
checks every length, type code, integer range, array reference and the
nesting depth, and counts every node against a budget, before it builds
anything; nothing is evaluated or unpickled.

The budget (a plaintext over it is a FrameError, whoever made it):

* the type description: at most :data:`MAX_TYPE_NODES` fields (p4p builds
  a type in time growing faster than its number of fields) in at most
  :data:`MAX_TYPE_JSON_BYTES` of JSON;
* the values: at most :data:`MAX_NODES` nodes in all (each field, each
  element of a structure, string or variant array, each node of a
  variant's type, an empty element included) and :data:`MAX_STRING_BYTES`
  characters of strings; the tree JSON is not even parsed when it holds
  more than ``4 * MAX_NODES`` separators;
* nesting at most :data:`MAX_DEPTH` deep.

Numeric arrays are raw bytes, bounded by the plaintext's size (the
decryptor's ``maxFrameBytes``).
"""
from __future__ import annotations

import json
import struct
import threading
from collections import OrderedDict

import numpy as np
from p4p import Type, Value

from .. import ntnda
from ..errors import FrameError
from .serialize import (ARRAY_DTYPES, FLOAT_FORMATS, PLAINTEXT_HEADER, PLAINTEXT_MAGIC,
                        PLAINTEXT_VERSION, SCALAR_CODES)

MAX_DEPTH = 32
MAX_TYPE_NODES = 4096
MAX_TYPE_JSON_BYTES = 1 << 20
MAX_NODES = 100_000
MAX_STRING_BYTES = 16 << 20

#: p4p integer code -> (min, max): an index of THE table in pvagpu.ntnda
_INT_RANGES = {row.p4p_code: row.int_range for row in ntnda.SCALAR_TYPES
               if row.int_range is not None}


class _Budget:
    """Nodes and string characters left; FrameError when one runs out."""
    __slots__ = ("nodes", "chars")

    def __init__(self, nodes: int = MAX_NODES, chars: int = MAX_STRING_BYTES):
        self.nodes = nodes
        self.chars = chars

    def tick(self, n: int = 1) -> None:
        self.nodes -= n
        if self.nodes < 0:
            raise FrameError("more nodes than the parser's budget")

    def text(self, n: int) -> None:
        self.chars -= n
        if self.chars < 0:
            raise FrameError("more string bytes than the parser's budget")


def _check_spec(spec, depth, budget):
    """A JSON type spec -> aspy() form, or FrameError."""
    budget.tick()
    if depth > MAX_DEPTH:
        raise FrameError("type nested too deeply")
    if isinstance(spec, str):
        if (len(spec) == 1 and spec in SCALAR_CODES + "v") or spec in ("as", "av") \
                or spec in ARRAY_DTYPES:
            return spec
        raise FrameError(f"unknown type code {spec!r}")
    if not (isinstance(spec, list) and len(spec) == 3 and spec[0] in ("S", "aS", "U", "aU")
            and (spec[1] is None or isinstance(spec[1], str)) and isinstance(spec[2], list)):
        raise FrameError("malformed type description")
    fields, names = [], set()
    for item in spec[2]:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and item[0] and item[0] not in names):
            raise FrameError("malformed field in type description")
        names.add(item[0])
        fields.append((item[0], _check_spec(item[1], depth + 1, budget)))
    return (spec[0], spec[1], fields)


def _dec_scalar(code, x, budget):
    if code in FLOAT_FORMATS:
        if not isinstance(x, str) or len(x) != (8 if code == "f" else 16):
            raise FrameError("bad float encoding")
        return struct.unpack(FLOAT_FORMATS[code], bytes.fromhex(x))[0]
    if code == "?":
        if not isinstance(x, bool):
            raise FrameError("bad bool")
        return x
    if code == "s":
        if not isinstance(x, str):
            raise FrameError("bad string")
        budget.text(len(x))
        return x
    lo, hi = _INT_RANGES[code]
    if type(x) is not int or not lo <= x <= hi:
        raise FrameError(f"integer {x!r} out of range for type {code!r}")
    return x


class _Decoder:
    def __init__(self, blobs, budget):
        self.blobs = blobs
        self.used = set()
        self.budget = budget

    def blob(self, x, code):
        if type(x) is not int or not 0 <= x < len(self.blobs) or x in self.used:
            raise FrameError("bad array reference")
        self.used.add(x)
        buf = self.blobs[x]
        dt = ARRAY_DTYPES[code]
        if len(buf) % dt.itemsize:
            raise FrameError("array length not a multiple of its element size")
        return np.frombuffer(buf, dt)

    def struct(self, fields, x, depth):
        if depth > MAX_DEPTH:
            raise FrameError("value nested too deeply")
        if not isinstance(x, list) or len(x) != len(fields):
            raise FrameError("structure of the wrong length")
        return {name: self.field(spec, item, depth) for (name, spec), item in zip(fields, x)}

    def field(self, spec, x, depth):
        self.budget.tick()
        if isinstance(spec, str):
            if len(spec) == 1 and spec in SCALAR_CODES:
                return _dec_scalar(spec, x, self.budget)
            if spec in ARRAY_DTYPES:
                return self.blob(x, spec)
            if spec == "as":
                if not isinstance(x, list):
                    raise FrameError("bad string array")
                self.budget.tick(len(x))
                if not all(isinstance(s, str) for s in x):
                    raise FrameError("bad string array")
                self.budget.text(sum(map(len, x)))
                return x
            if spec == "v":
                return None if x is None else self.variant(x, depth)
            if spec == "av":
                if not isinstance(x, list):
                    raise FrameError("bad variant array")
                self.budget.tick(len(x))
                return [None if e is None else self.variant(e, depth) for e in x]
        kind = spec[0]
        if kind == "S":
            return self.struct(spec[2], x, depth + 1)
        if kind == "aS":
            if not isinstance(x, list):
                raise FrameError("bad structure array")
            self.budget.tick(len(x))
            return [None if e is None else self.struct(spec[2], e, depth + 1) for e in x]
        if kind == "U":
            if x is None:
                return None
            if not (isinstance(x, list) and len(x) == 2 and isinstance(x[0], str)):
                raise FrameError("bad union")
            mspec = dict(spec[2]).get(x[0])
            if mspec is None:
                raise FrameError(f"union has no member {x[0]!r}")
            return (x[0], self.any(mspec, x[1], depth))
        raise FrameError(f"unsupported type {kind!r}")

    def variant(self, x, depth):
        if not (isinstance(x, list) and len(x) == 2):
            raise FrameError("bad variant")
        spec = _check_spec(x[0], depth + 1, self.budget)
        if spec == "v" or spec == "av" or (not isinstance(spec, str) and spec[0] in ("U", "aU")):
            raise FrameError("unsupported variant content")
        if isinstance(spec, str):
            return (spec, self.field(spec, x[1], depth + 1))
        if spec[0] == "S":
            return Value(Type(spec[2], id=spec[1]), self.struct(spec[2], x[1], depth + 1))
        return (spec, self.field(spec, x[1], depth + 1))

    def any(self, spec, x, depth):
        if not isinstance(spec, str) and spec[0] == "S":
            return self.struct(spec[2], x, depth + 1)
        return self.field(spec, x, depth + 1)


_TYPE_CACHE_SIZE = 8
_type_cache: "OrderedDict[bytes, tuple]" = OrderedDict()
_type_cache_lock = threading.Lock()


def _type_for(type_json: bytes):
    with _type_cache_lock:
        hit = _type_cache.get(type_json)
        if hit is not None:
            _type_cache.move_to_end(type_json)
            return hit
    if len(type_json) > MAX_TYPE_JSON_BYTES:
        raise FrameError("type description over the parser's budget")
    if type_json.count(b"[") > 2 * MAX_TYPE_NODES:
        raise FrameError("more fields than the parser's budget")
    spec = _check_spec(json.loads(type_json), 0, _Budget(MAX_TYPE_NODES))
    if spec[0] != "S":
        raise FrameError("the top level must be a structure")
    entry = (spec, Type(spec[2], id=spec[1]), set())   # (spec, Type, checks it passed)
    with _type_cache_lock:
        _type_cache[bytes(type_json)] = entry
        while len(_type_cache) > _TYPE_CACHE_SIZE:
            _type_cache.popitem(last=False)
    return entry


def deserialize_value(buf, check_type=None) -> Value:
    """Inverse of :func:`serialize_value`; FrameError for anything that is
    not exactly such a plaintext, or over the budget. ``check_type``: called
    with the type (``aspy()`` form) before the values are read, raises
    FrameError to refuse it. Arrays are views of ``buf`` until the Value is
    built (p4p copies them)."""
    mv = memoryview(buf).cast("B")
    total = len(mv)
    if total < PLAINTEXT_HEADER.size:
        raise FrameError("plaintext too short")
    magic, version, flags, zero, type_len, tree_len, n_blobs = PLAINTEXT_HEADER.unpack_from(mv, 0)
    if magic != PLAINTEXT_MAGIC or version != PLAINTEXT_VERSION or flags or zero:
        raise FrameError("not a pvagpu plaintext of version 1")
    pos = PLAINTEXT_HEADER.size
    if n_blobs > (total - pos) // 8 or n_blobs > MAX_NODES:
        raise FrameError("bad array count")
    lengths = struct.unpack_from(f"<{n_blobs}Q", mv, pos)
    pos += 8 * n_blobs
    if type_len > total - pos or tree_len > total - pos - type_len:
        raise FrameError("bad header lengths")
    type_json = bytes(mv[pos:pos + type_len])
    pos += type_len
    tree_json = bytes(mv[pos:pos + tree_len])
    pos += tree_len
    pad = -pos % 8
    if bytes(mv[pos:pos + pad]) != bytes(pad):
        raise FrameError("bad padding")
    pos += pad
    blobs = []
    for n in lengths:
        pad = -n % 8
        if n > total - pos or pad > total - pos - n:
            raise FrameError("array runs past the end")
        blobs.append(mv[pos:pos + n])
        if bytes(mv[pos + n:pos + n + pad]) != bytes(pad):
            raise FrameError("bad padding")
        pos += n + pad
    if pos != total:
        raise FrameError("trailing bytes after the last array")
    try:
        spec, typ, passed = _type_for(type_json)
        if check_type is not None and check_type not in passed:
            check_type(spec)
            passed.add(check_type)
        if tree_json.count(b",") + tree_json.count(b"[") > 4 * MAX_NODES:
            raise FrameError("more nodes than the parser's budget")
        tree = json.loads(tree_json)
        dec = _Decoder(blobs, _Budget())
        fields = dec.struct(spec[2], tree, 0)
        if len(dec.used) != len(blobs):
            raise FrameError("unreferenced arrays")
        return Value(typ, fields)
    except FrameError:
        raise
    except (ValueError, TypeError, KeyError, RecursionError, RuntimeError, OverflowError) as exc:
        raise FrameError(f"plaintext does not describe a valid object: "
                         f"{type(exc).__name__}: {exc}") from None

