"""pvapy's object constructors as thin builders of p4p Values.

A processor ported from pvapy builds its output with ``pva.PvObject``,
``pva.NtNdArray``, ``pva.NtAttribute``, ``pva.PvInt`` and friends; after
``import pvaccess as pva`` became ``from pvagpu import pva`` those lines run
unchanged and build p4p Values that the consumer publishes as they are:

* :class:`PvObject` takes pvapy's structure dictionary (``{'x': pva.INT,
  'a': [pva.DOUBLE], 's': {...}, 'sa': [{...}], 'v': (), 'u': ({...},)}``)
  and an optional value dictionary. It is a :class:`p4p.Value` (a subclass),
  so p4p's servers and everything in pvagpu take it, and it has the
  methods of pvapy's PvObject that processors and ``AdImageUtility`` use:
  ``getStructureDict``, ``toDict``/``get``, ``set``, ``setUnion``,
  ``getSelectedUnionFieldName``, ``hasField``; ``obj['field'] = ...``
  also takes pvapy's ``{member: array}`` for a union field.
* :class:`NtNdArray` (``NtNdArray(extraFieldsDict)``) has pvagpu's
  NTNDArray type, :data:`pvagpu.ntnda.NTNDARRAY_TYPE`, with pvapy's extra
  fields appended, as pvapy appends them; the value of
  ``getOutputPvObjectType`` in pvapy's split example.
* :class:`NtAttribute` ``(name, pva.PvFloat(v))`` is an NTAttribute whose
  variant holds the scalar with its type, as pvapy puts it on the wire.
* :class:`PvBoolean` ... :class:`PvString` hold one ``value`` field of their
  type; :class:`PvTimeStamp`, :class:`PvDimension`, :class:`PvCodec`,
  :class:`PvAlarm` are the NTNDArray sub-structures (their field lists are
  taken from NTNDARRAY_TYPE, not restated).

Types are built once per structure (a bounded cache), so objects built
from the same structure share one p4p Type object; that is what p4p's
server wants of every post to a record (see :mod:`pvagpu.pva.publisher`).
Objects received from the network are plain p4p Values: the methods above
are not theirs (p4p's ``value['field']``, ``in``, ``todict()`` are).
"""
from __future__ import annotations

import functools

from p4p import Type, Value

from .. import ntnda
from .type_text import variant_types_and_union_members_from_tostr

#: the p4p type id pvapy's PvObject has
STRUCTURE_ID = "structure"


# --------------------------------------------------------------------------
# pvapy structure dictionaries <-> p4p type specs
# --------------------------------------------------------------------------

def field_spec(item):
    """The p4p type spec of one entry of a pvapy structure dictionary.

    ``pva.INT`` -> ``'i'``; ``[pva.INT]`` -> ``'ai'``; ``{...}`` -> a
    structure; ``[{...}]`` -> a structure array; ``()`` -> a variant union;
    ``({...},)`` -> a union; ``[()]`` and ``[({...},)]`` -> their arrays. p4p
    codes (``'i'``) and p4p specs (``('S', id, fields)``) pass through."""
    if isinstance(item, dict):
        return ("S", None, structure_fields(item))
    if isinstance(item, tuple):
        if len(item) == 3 and isinstance(item[0], str):
            return item                          # a p4p spec
        if len(item) == 0:
            return "v"
        if len(item) == 1 and isinstance(item[0], dict):
            return ("U", None, structure_fields(item[0]))
        raise ValueError(f"{item!r} is not a pvapy union: use () or ({{...}},)")
    if isinstance(item, list):
        if len(item) != 1:
            raise ValueError(f"{item!r} is not a pvapy array: use [type] with one element")
        inner = field_spec(item[0])
        if isinstance(inner, str):
            if inner.startswith("a"):
                raise ValueError(f"{item!r}: pvData has no arrays of arrays")
            return "a" + inner
        return ("a" + inner[0], inner[1], inner[2])
    return ntnda.p4p_code(item)


def structure_fields(structure) -> list:
    """p4p field list ``[(name, spec)]`` for a pvapy structure dictionary
    (a p4p field list passes through)."""
    if isinstance(structure, dict):
        return [(str(name), field_spec(item)) for name, item in structure.items()]
    return list(structure)


def structure_dict(spec):
    """pvapy's structure dictionary for a p4p Type or spec (inverse of
    :func:`field_spec`; scalars as :class:`pvagpu.ntnda.PvType` members)."""
    if isinstance(spec, Type):
        spec = spec.aspy()
    if isinstance(spec, str):
        if spec == "v":
            return ()
        if spec == "av":
            return [()]
        if spec.startswith("a"):
            return [ntnda.info_for_p4p_code(spec[1:]).pv_type]
        return ntnda.info_for_p4p_code(spec).pv_type
    kind, _id, fields = spec
    inner = {name: structure_dict(sub) for name, sub in fields}
    base = {"S": inner, "U": (inner,)}[kind.lstrip("a")]
    return [base] if kind.startswith("a") else base


def _frozen(spec):
    """``spec`` with lists as tuples (a cache key)."""
    if isinstance(spec, (list, tuple)):
        return tuple(_frozen(item) for item in spec)
    return spec


def _thawed(spec):
    if isinstance(spec, tuple):
        return [_thawed(item) for item in spec] if _is_field_list(spec) else \
            tuple(_thawed(item) for item in spec)
    return spec


def _is_field_list(spec: tuple) -> bool:
    return all(isinstance(item, tuple) and len(item) == 2 for item in spec)


@functools.lru_cache(maxsize=512)
def _cached_type(frozen_fields: tuple, type_id: str) -> Type:
    return Type([(name, _thawed(spec)) for name, spec in frozen_fields], id=type_id)


def type_of(structure, type_id: str | None = None) -> Type:
    """The p4p Type of a pvapy structure dictionary (or p4p field list); the
    same Type object for the same structure and id."""
    if isinstance(structure, Type):
        return structure
    fields = structure_fields(structure)
    return _cached_type(_frozen(fields), type_id or STRUCTURE_ID)


def ntndarray_type(extra_fields=None) -> Type:
    """pvagpu's NTNDArray type with the fields of ``extra_fields`` (a pvapy
    structure dictionary, a p4p field list or a Value) appended."""
    if extra_fields is None:
        return ntnda.NTNDARRAY_TYPE
    if isinstance(extra_fields, Value):
        extra_fields = extra_fields.type().aspy()[2]
    extra = structure_fields(extra_fields)
    if not extra:
        return ntnda.NTNDARRAY_TYPE
    clash = [name for name, _ in extra if name in ntnda.NTNDARRAY_TYPE]
    if clash:
        raise ValueError(f"extra fields {clash} are NTNDArray fields already")
    base = ntnda.NTNDARRAY_TYPE
    return _cached_type(_frozen(base.aspy()[2] + extra), base.getID())


# --------------------------------------------------------------------------
# PvObject
# --------------------------------------------------------------------------

def _variant_item(item):
    """What a variant field takes for ``item``: a one-scalar PvObject
    (``pva.PvFloat(1.5)``) becomes ``(type code, value)`` so that the
    variant holds the scalar with its type, as pvapy sends it."""
    if isinstance(item, Value):
        fields = item.type().aspy()[2]
        if len(fields) == 1 and fields[0][0] == "value" and isinstance(fields[0][1], str):
            return (fields[0][1], item["value"])
    return item


def _union_item(item):
    """pvapy's ``{member: array}`` (or a one-field PvObject) as p4p's ``(member, array)``."""
    if isinstance(item, dict) and len(item) == 1:
        return next(iter(item.items()))
    if isinstance(item, Value) and len(item.keys()) == 1:
        name = item.keys()[0]
        return (name, item[name])
    return item


def _assignable(spec, item):
    """``item`` in the form p4p takes for a field of type ``spec``."""
    if spec == "v":
        return _variant_item(item)
    if isinstance(spec, tuple) and spec[0] == "U":
        return _union_item(item)
    if isinstance(spec, tuple) and spec[0] == "S" and isinstance(item, dict):
        subs = dict(spec[2])
        return {name: _assignable(subs[name], sub) if name in subs else sub
                for name, sub in item.items()}
    return item


class PvObject(Value):
    """pvapy's ``PvObject(structureDict, valueDict=None, typeId=None)`` as a p4p Value."""
    __slots__ = ()

    def __init__(self, structureDict, valueDict=None, typeId=None):
        value_type = type_of(structureDict, typeId)
        super().__init__(value_type, {})
        if valueDict:
            self.set(valueDict)

    def __setitem__(self, name, item):
        spec = dict(self.type().aspy()[2]).get(name) if "." not in name else None
        super().__setitem__(name, item if spec is None else _assignable(spec, item))

    def set(self, valueDict):
        """Set the fields named in ``valueDict`` (a dict or a Value, e.g.
        pvapy's ``ntNdArray.set(extraFieldsPvObject)``)."""
        names = valueDict.keys()
        for name in names:
            self[name] = valueDict[name]

    def setUnion(self, unionObject, fieldName="value"):
        """Select a member of the union ``fieldName`` from a one-field
        PvObject or ``{member: value}`` (pvapy's ``setUnion``)."""
        self[fieldName] = _union_item(unionObject)

    def getSelectedUnionFieldName(self, fieldName="value"):
        """The selected member of the union ``fieldName`` (None if none)."""
        return _selected_member(self, fieldName)

    def getStructureDict(self) -> dict:
        """pvapy's structure dictionary of this object."""
        return structure_dict(self.type())

    def hasField(self, name) -> bool:
        return name in self

    def toDict(self) -> dict:
        return self.todict()

    get = toDict


def _selected_member(value: Value, field: str):
    """Name of the selected member of the (non-variant) union ``field``:
    from the payload's dtype for an NTNDArray's ``value``, else from p4p's
    printed text (:mod:`pvagpu.pva.type_text`)."""
    if field == "value" and value.getID() == ntnda.NTNDARRAY_TYPE.getID():
        return None if value[field] is None else ntnda.payload(value)[1].union_key
    return variant_types_and_union_members_from_tostr(value)[1].get(field)


# --------------------------------------------------------------------------
# Scalars
# --------------------------------------------------------------------------

class PvScalar(PvObject):
    """A structure with one ``value`` field of the subclass's ``TYPE``."""
    __slots__ = ()
    TYPE = ntnda.PvType.DOUBLE

    def __init__(self, value=None):
        super().__init__({"value": self.TYPE}, None if value is None else {"value": value})


class PvBoolean(PvScalar):
    __slots__ = ()
    TYPE = ntnda.PvType.BOOLEAN


class PvByte(PvScalar):
    __slots__ = ()
    TYPE = ntnda.PvType.BYTE


class PvUByte(PvScalar):
    __slots__ = ()
    TYPE = ntnda.PvType.UBYTE


class PvShort(PvScalar):
    __slots__ = ()
    TYPE = ntnda.PvType.SHORT


class PvUShort(PvScalar):
    __slots__ = ()
    TYPE = ntnda.PvType.USHORT


class PvInt(PvScalar):
    __slots__ = ()
    TYPE = ntnda.PvType.INT


class PvUInt(PvScalar):
    __slots__ = ()
    TYPE = ntnda.PvType.UINT


class PvLong(PvScalar):
    __slots__ = ()
    TYPE = ntnda.PvType.LONG


class PvULong(PvScalar):
    __slots__ = ()
    TYPE = ntnda.PvType.ULONG


class PvFloat(PvScalar):
    __slots__ = ()
    TYPE = ntnda.PvType.FLOAT


class PvDouble(PvScalar):
    __slots__ = ()
    TYPE = ntnda.PvType.DOUBLE


class PvString(PvScalar):
    __slots__ = ()
    TYPE = ntnda.PvType.STRING


# --------------------------------------------------------------------------
# NTNDArray and its parts
# --------------------------------------------------------------------------

def _member_type(name: str) -> Type:
    """The Type of NTNDARRAY_TYPE's sub-structure (or structure-array element) ``name``."""
    kind, type_id, fields = ntnda.NTNDARRAY_TYPE.aspy()[2][ntnda.NTNDARRAY_TYPE.keys().index(name)][1]
    return _cached_type(_frozen(fields), type_id)


class PvTimeStamp(PvObject):
    """``PvTimeStamp()``, ``PvTimeStamp(seconds)`` (a float) or
    ``PvTimeStamp(secondsPastEpoch, nanoseconds[, userTag])``."""
    __slots__ = ()

    def __init__(self, *args):
        if len(args) == 1:
            stamp = ntnda.TimeStamp.from_seconds(float(args[0]))
        else:
            stamp = ntnda.TimeStamp(*(int(a) for a in args))
        super().__init__(_member_type("timeStamp"), stamp._asdict())

    def getSecondsPastEpoch(self):
        return self["secondsPastEpoch"]

    def getNanoseconds(self):
        return self["nanoseconds"]

    def getUserTag(self):
        return self["userTag"]


class PvDimension(PvObject):
    """``PvDimension(size, offset, fullSize, binning, reverse)``."""
    __slots__ = ()

    def __init__(self, size=0, offset=0, fullSize=0, binning=1, reverse=False):
        super().__init__(_member_type("dimension"), {
            "size": size, "offset": offset, "fullSize": fullSize,
            "binning": binning, "reverse": bool(reverse)})


class PvCodec(PvObject):
    """``PvCodec(name, parameters)``; ``parameters`` such as ``pva.PvInt(5)``
    (the data type of the uncompressed frame, as areaDetector sets it)."""
    __slots__ = ()

    def __init__(self, name="", parameters=None):
        super().__init__(_member_type("codec"), {"name": name})
        if parameters is not None:
            self["parameters"] = parameters


class PvAlarm(PvObject):
    """``PvAlarm(severity, status, message)``."""
    __slots__ = ()

    def __init__(self, severity=0, status=0, message=""):
        super().__init__(_member_type("alarm"),
                         {"severity": severity, "status": status, "message": message})


class NtAttribute(PvObject):
    """``NtAttribute(name, value)``: ``value`` a one-scalar PvObject such as
    ``pva.PvFloat(1.5)`` (sent as a float scalar), or a plain value."""
    __slots__ = ()

    def __init__(self, name="", value=None):
        super().__init__(_member_type("attribute"), {"name": name})
        if value is not None:
            self["value"] = value


class NtNdArray(PvObject):
    """``NtNdArray(extraFieldsDict=None)``: an empty NTNDArray whose type
    is pvagpu's NTNDArray type with the extra fields appended."""
    __slots__ = ()

    def __init__(self, extraFieldsDict=None):
        super().__init__(ntndarray_type(extraFieldsDict))


__all__ = ["PvObject", "PvScalar", "PvBoolean", "PvByte", "PvUByte", "PvShort", "PvUShort",
           "PvInt", "PvUInt", "PvLong", "PvULong", "PvFloat", "PvDouble", "PvString",
           "PvTimeStamp", "PvDimension", "PvCodec", "PvAlarm", "NtAttribute", "NtNdArray",
           "type_of", "ntndarray_type", "structure_dict", "field_spec", "structure_fields"]
