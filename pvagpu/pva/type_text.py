"""Type facts that only p4p's printed text of a Value tells.

``Value.tolist()`` gives every field as a plain Python object but drops two
facts that the serialiser (:mod:`pvagpu.pva.serialize`) needs: the scalar
type of a number held by a variant (int32 or int64? float or double?) and
the selected member of a union whose members cannot be told apart by the
Python object (two integer members, say). p4p has no API for either, but
``Value.tostr()`` prints both::

    struct "top" {
        any a uint16_t = 5
        union "u_t" u.y uint32_t = 4
    }

This module is the ONE place that reads that text. It depends on p4p's
print format (four spaces per level; ``any <name> <C type>``;
``union ["<id>"] <name>.<member> <type>``); tests/test_serialize.py checks
it against the installed p4p and fails loudly if an upgrade changes it.
"""
from __future__ import annotations

import re

from p4p import Value

#: C type names in Value.tostr() -> p4p type codes (the scalar a variant holds)
_CTYPE_CODE = {"bool": "?", "int8_t": "b", "int16_t": "h", "int32_t": "i", "int64_t": "l",
               "uint8_t": "B", "uint16_t": "H", "uint32_t": "I", "uint64_t": "L",
               "float": "f", "double": "d", "string": "s"}
# direct fields only: one level of indentation below the printed structure
_VARIANT_LINE = re.compile(r"^    any (\S+) (\S+)", re.M)
_UNION_LINE = re.compile(r"^    union (?:\"[^\"]*\" )?(\S+?)\.(\S+) ", re.M)


def variant_types_and_union_members_from_tostr(value: Value) -> tuple[dict, dict]:
    """``({variant field: p4p code of the scalar it holds},
    {union field: name of the selected member})`` for the direct fields of
    structure ``value``, read from ``value.tostr()``.

    A variant that holds a structure, an array or nothing has no entry in
    the first dict (its C type is not a scalar's); an empty union has none
    in the second."""
    text = value.tostr()
    variants = {}
    for name, ctype in _VARIANT_LINE.findall(text):
        code = _CTYPE_CODE.get(ctype)
        if code is not None:
            variants[name] = code
    return variants, dict(_UNION_LINE.findall(text))
