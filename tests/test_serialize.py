"""The p4p Value serialiser (pvagpu.pva.serialize / deserialize) and the one
place it reads p4p's printed text (pvagpu.pva.type_text)."""
import json
import random

import numpy as np
import pytest
from p4p import Type, Value

from _value_cases import frame, same
from pvagpu import ntnda
from pvagpu.errors import FrameError
from pvagpu.pva.deserialize import deserialize_value
from pvagpu.pva.serialize import PLAINTEXT_HEADER, serialize_value
from pvagpu.pva.type_text import variant_types_and_union_members_from_tostr


def plaintext(value: Value) -> bytes:
    return b"".join(bytes(p) for p in serialize_value(value))


def hand_made(type_spec, tree) -> bytes:
    """A plaintext without arrays from a JSON type and tree."""
    t, d = json.dumps(type_spec).encode(), json.dumps(tree).encode()
    body = PLAINTEXT_HEADER.pack(b"PVGV", 1, 0, 0, len(t), len(d), 0) + t + d
    return body + bytes(-len(body) % 8)


# ---------------------------------------------------------------------------
# p4p's printed text: fails loudly if a p4p upgrade changes what tostr() prints
# ---------------------------------------------------------------------------

#: field name -> (p4p code, a value of that scalar type); tolist() cannot
#: tell the integer and float types apart, only bool and string
SCALARS = {"bool": ("?", True), "int8": ("b", -3), "int16": ("h", -300),
           "int32": ("i", -70000), "int64": ("l", -2 ** 40), "uint8": ("B", 3),
           "uint16": ("H", 300), "uint32": ("I", 70000), "uint64": ("L", 2 ** 63 + 5),
           "float": ("f", 0.25), "double": ("d", -0.5), "string": ("s", "text")}


def test_printed_text_gives_every_variant_scalar_type_and_union_member():
    members = [("a", "i"), ("b", "I"), ("s", ("S", "m_t", [("f", "f")]))]
    T = Type([(name, "v") for name in SCALARS] + [
        ("u_id", ("U", "u_t", members)), ("u_anon", ("U", None, members)),
        ("u_struct", ("U", "u_t", members)), ("u_empty", ("U", None, members)),
        ("v_array", "v"), ("v_struct", "v"), ("v_empty", "v"),
        # nested fields of the same names must not be reported as direct fields
        ("inner", ("S", "in_t", [("int8", "v"), ("u_id", ("U", None, members))]))], id="top")
    v = Value(T, {**SCALARS,
                  "u_id": ("b", 4000000000), "u_anon": ("a", -1), "u_struct": ("s", {"f": 1.5}),
                  "v_array": np.arange(3, dtype=np.int16),
                  "v_struct": Value(Type([("q", "B")], id="q_t"), {"q": 9}),
                  "inner": {"int8": ("d", 2.0), "u_id": ("b", 1)}})
    changed = "p4p's printed text changed; adapt pvagpu/pva/type_text.py to:\n"
    variants, unions = variant_types_and_union_members_from_tostr(v)
    assert variants == {name: code for name, (code, _) in SCALARS.items()}, changed + v.tostr()
    assert unions == {"u_id": "b", "u_anon": "a", "u_struct": "s"}, changed + v.tostr()
    # a sub-structure is printed with its fields one level down, as the top
    inner_variants, inner_unions = variant_types_and_union_members_from_tostr(v["inner"])
    assert inner_variants == {"int8": "d"} and inner_unions == {"u_id": "b"}, \
        changed + v["inner"].tostr()


def test_the_serialiser_keeps_what_only_the_printed_text_tells():
    T = Type([(name, "v") for name in SCALARS] +
             [("u", ("U", "u_t", [("a", "i"), ("b", "I"), ("c", "l")]))], id="top")
    src = Value(T, {**SCALARS, "u": ("b", 7)})
    out = deserialize_value(plaintext(src))
    assert out.type().aspy() == src.type().aspy() and out.tostr() == src.tostr()


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------

def test_round_trip_of_an_ntndarray_bit_for_bit():
    for dtype in (np.uint16, np.float32, np.int64):
        src = frame(dtype)
        parts = serialize_value(src)
        assert all(len(bytes(p)) % 8 == 0 for p in parts)    # 8-byte aligned
        assert same(deserialize_value(plaintext(src)), src)


def test_round_trip_of_any_structure():
    T = Type([("u", ("U", "u_t", [("a", "i"), ("b", "s"), ("c", "ad")])),
              ("v", "v"), ("names", "as"), ("flags", "a?"), ("e", "aL"),
              ("nested", ("aS", "item_t", [("x", "h"), ("y", "v")])),
              ("va", "av"), ("point", ("S", "p_t", [("x", "d"), ("label", "s")]))],
             id="my:thing:1")
    src = Value(T, {"u": ("c", np.array([1.5, -2.0])), "v": np.arange(4, dtype=np.int64),
                    "names": ["n", ""], "flags": np.array([True, False]),
                    "e": np.array([2 ** 64 - 1], np.uint64),
                    "nested": [{"x": -1, "y": ("I", 7)}, {"x": 2, "y": "s"}],
                    "va": [np.array([1, 2], np.int16), "text", True],
                    "point": {"x": float("-inf"), "label": "p"}})
    out = deserialize_value(plaintext(src))
    assert out.getID() == "my:thing:1"
    assert out.type().aspy() == src.type().aspy() and out.tostr() == src.tostr()


# ---------------------------------------------------------------------------
# The checked decoder
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("row", [r for r in ntnda.SCALAR_TYPES if r.int_range],
                         ids=lambda r: r.p4p_code)
def test_integers_are_checked_against_their_type_range(row):
    lo, hi = row.int_range
    spec = ["S", "t", [["x", row.p4p_code]]]
    assert deserialize_value(hand_made(spec, [hi]))["x"] == hi
    assert deserialize_value(hand_made(spec, [lo]))["x"] == lo
    for bad in (hi + 1, lo - 1, 1.0, "1", True):
        with pytest.raises(FrameError):
            deserialize_value(hand_made(spec, [bad]))


def test_deserializer_refuses_garbage_without_crashing():
    src = frame()
    good = plaintext(src)
    assert same(deserialize_value(good), src)
    rng = random.Random(5)
    for _ in range(300):
        b = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        try:
            deserialize_value(bytes(b))
        except FrameError:
            pass
    deep = json.dumps(["S", None, [["x", "i"]]])
    for depth in (40, 5000):
        nested = "[" * depth + "1" + "]" * depth
        head = PLAINTEXT_HEADER.pack(b"PVGV", 1, 0, 0, len(deep), len(nested), 0)
        body = head + deep.encode() + nested.encode()
        body += bytes(-len(body) % 8)
        with pytest.raises(FrameError):
            deserialize_value(body)


def test_the_parser_counts_every_node_before_it_builds_anything():
    from pvagpu.pva import deserialize
    ok = hand_made(["S", "t", [["a", ["aS", "e", []]], ["s", "as"]]], [[[], None], ["x"]])
    assert len(deserialize_value(ok)["a"]) == 2
    bombs = [
        hand_made(["S", "t", [[f"f{i}", "i"] for i in range(deserialize.MAX_TYPE_NODES + 1)]],
                  [0] * (deserialize.MAX_TYPE_NODES + 1)),
        hand_made(["S", "t", [["a", ["aS", "e", []]]]], [[None] * (deserialize.MAX_NODES + 1)]),
        hand_made(["S", "t", [["a", "as"]]], [[""] * (deserialize.MAX_NODES + 1)]),
        hand_made(["S", "t", [["a", "av"]]], [[None] * (deserialize.MAX_NODES + 1)]),
        hand_made(["S", "t", [["a", "s"], ["b", "s"]]],
                  ["x" * (deserialize.MAX_STRING_BYTES // 2 + 1)] * 2),
    ]
    for bomb in bombs:
        with pytest.raises(FrameError, match="budget"):
            deserialize_value(bomb)
    # a type check runs before the values are read, once per type
    seen = []

    def check(spec):
        seen.append(spec[1])
        if spec[1] != "t":
            raise FrameError("refused")
    assert deserialize_value(ok, check_type=check) and deserialize_value(ok, check_type=check)
    assert seen == ["t"]
    with pytest.raises(FrameError, match="refused"):
        deserialize_value(hand_made(["S", "u", [["a", "i"]]], [1]), check_type=check)
