"""pvagpu.pva's pvapy object constructors (PvObject, NtNdArray, NtAttribute,
PvInt and friends): what they build, and that it goes over the wire as
pvapy's objects do (issue 13)."""
import numpy as np
import pytest
from p4p import Value
from p4p.client.thread import Context
from p4p.server import Server
from p4p.server.thread import SharedPV

from pvagpu import ntnda, pva
from pvagpu.pva.objects import structure_dict, type_of
from pvagpu.pva.type_text import variant_types_and_union_members_from_tostr

STRUCTURE = {"i": pva.INT, "d": pva.DOUBLE, "s": pva.STRING, "ai": [pva.UINT],
             "sub": {"x": pva.FLOAT, "flag": pva.BOOLEAN}, "rows": [{"n": pva.LONG}],
             "any": (), "anys": [()], "u": ({"a": pva.INT, "b": pva.STRING},),
             "us": [({"a": pva.INT},)]}


def test_pvobject_takes_pvapys_structure_dictionary_and_gives_it_back():
    obj = pva.PvObject(STRUCTURE, {"i": 3, "s": "x", "ai": [1, 2], "sub": {"x": 1.5},
                                   "rows": [{"n": 4}], "u": {"b": "chosen"}})
    assert isinstance(obj, Value)
    assert obj.getStructureDict() == STRUCTURE
    assert type_of(STRUCTURE).aspy()[2][:2] == [("i", "i"), ("d", "d")]
    assert (obj["i"], obj["s"], list(obj["ai"]), obj["sub.x"]) == (3, "x", [1, 2], 1.5)
    assert obj["rows"][0]["n"] == 4
    assert obj.getSelectedUnionFieldName("u") == "b" and obj["u"] == "chosen"
    assert obj.toDict()["i"] == 3 and obj.get()["s"] == "x"
    assert obj.hasField("sub") and not obj.hasField("nope")


def test_structure_dictionary_matches_pvapys():
    pvaccess = pytest.importorskip("pvaccess")
    theirs = pvaccess.PvObject({"tileIndexX": pvaccess.INT, "a": [pvaccess.DOUBLE],
                                "s": {"x": pvaccess.UINT}, "v": ()})
    ours = pva.PvObject({"tileIndexX": pva.INT, "a": [pva.DOUBLE], "s": {"x": pva.UINT}, "v": ()})
    def as_ints(d):
        return {k: (as_ints(v) if isinstance(v, dict) else
                    [int(v[0])] if isinstance(v, list) else v if isinstance(v, tuple) else int(v))
                for k, v in d.items()}
    assert as_ints(ours.getStructureDict()) == as_ints(theirs.getStructureDict())


def test_same_structure_gives_the_same_type_object():
    a = pva.PvObject({"tileIndexX": pva.INT, "tileIndexY": pva.INT}, {"tileIndexX": 1})
    b = pva.PvObject({"tileIndexX": pva.INT, "tileIndexY": pva.INT})
    assert type_of(a.getStructureDict()) is type_of(b.getStructureDict())
    pv = SharedPV(initial=a)
    pv.post(b)                                  # p4p takes it: the very same Type
    n1 = pva.NtNdArray({"tileIndexX": pva.INT})
    n2 = pva.NtNdArray(a.getStructureDict())
    assert n1.type().aspy() != n2.type().aspy()
    assert pva.NtNdArray().type().aspy() == ntnda.NTNDARRAY_TYPE.aspy()


@pytest.mark.parametrize("bad", [{"x": [pva.INT, pva.INT]}, {"x": (1, 2)}, {"x": "nope"},
                                 {"x": 99}, {"x": [[pva.INT]]}])
def test_bad_structure_dictionaries_are_clear_errors(bad):
    with pytest.raises(ValueError):
        pva.PvObject(bad)


def test_ntndarray_extra_fields_may_not_shadow_ntndarray_fields():
    with pytest.raises(ValueError, match="uniqueId"):
        pva.NtNdArray({"uniqueId": pva.INT})


SCALARS = [(pva.PvBoolean, True, "?"), (pva.PvByte, -3, "b"), (pva.PvUByte, 250, "B"),
           (pva.PvShort, -300, "h"), (pva.PvUShort, 60000, "H"), (pva.PvInt, -7, "i"),
           (pva.PvUInt, 4_000_000_000, "I"), (pva.PvLong, -2**40, "l"),
           (pva.PvULong, 2**63, "L"), (pva.PvFloat, 1.5, "f"), (pva.PvDouble, 2.25, "d"),
           (pva.PvString, "text", "s")]


@pytest.mark.parametrize("cls, item, code", SCALARS)
def test_scalars_hold_one_value_of_their_type(cls, item, code):
    obj = cls(item)
    assert obj["value"] == item and obj.type().aspy()[2] == [("value", code)]
    assert obj.getStructureDict() == {"value": cls.TYPE}
    attribute = pva.NtAttribute("a", obj)
    assert attribute["value"] == item
    variants, _ = variant_types_and_union_members_from_tostr(attribute)
    assert variants == {"value": code}, "the attribute's variant holds the scalar with its type"


def test_ntndarray_parts():
    stamp = pva.PvTimeStamp(12.5)
    assert (stamp.getSecondsPastEpoch(), stamp.getNanoseconds(), stamp.getUserTag()) == \
        (12, 500_000_000, 0)
    assert pva.PvTimeStamp(3, 4, 5).toDict() == {"secondsPastEpoch": 3, "nanoseconds": 4,
                                                  "userTag": 5}
    assert pva.PvDimension(4, 0, 4, 1, False).toDict() == {
        "size": 4, "offset": 0, "fullSize": 4, "binning": 1, "reverse": False}
    codec = pva.PvCodec("lz4", pva.PvInt(6))
    assert codec["name"] == "lz4" and codec["parameters"] == 6
    assert pva.PvAlarm(2, 3, "bad")["message"] == "bad"


def build_like_pvapy(image, unique_id, extra):
    """An NTNDArray assembled field by field as pvapy's AdImageUtility does."""
    nt = pva.NtNdArray(extra.getStructureDict())
    key = "ushortValue"
    nt["compressedSize"] = nt["uncompressedSize"] = image.nbytes
    nt["uniqueId"] = unique_id
    nt["dimension"] = [pva.PvDimension(image.shape[1], 0, image.shape[1], 1, False),
                       pva.PvDimension(image.shape[0], 0, image.shape[0], 1, False)]
    nt["codec"] = pva.PvCodec("", pva.PvInt(int(pva.USHORT)))
    ts = pva.PvTimeStamp(1000.5)
    nt["timeStamp"] = ts
    nt["dataTimeStamp"] = ts
    nt["descriptor"] = "built like pvapy"
    nt["value"] = {key: image.flatten()}
    nt["attribute"] = [pva.NtAttribute("ColorMode", pva.PvInt(0)),
                       pva.NtAttribute("Temperature", pva.PvFloat(21.5))]
    nt.set(extra)
    return nt


@pytest.mark.pva
def test_objects_built_like_pvapy_publish_and_read_back(pva_env):
    image = np.arange(20, dtype=np.uint16).reshape(4, 5)
    extra = pva.PvObject({"tileIndexX": pva.INT, "tileIndexY": pva.INT},
                         {"tileIndexX": 2, "tileIndexY": 3})
    nt = build_like_pvapy(image, 11, extra)
    assert nt.getSelectedUnionFieldName() == "ushortValue"
    pv = SharedPV(initial=nt)
    server = Server(providers=[{"objects:nt": pv}])
    try:
        with Context("pva", nt=False) as ctx:
            got = ctx.get("objects:nt", timeout=10)
    finally:
        server.stop()
    frame = ntnda.frame_from_value(got)
    np.testing.assert_array_equal(frame.image, image)
    assert (got["tileIndexX"], got["tileIndexY"], got["uniqueId"]) == (2, 3, 11)
    assert frame.time_stamp.seconds == 1000.5 and got["descriptor"] == "built like pvapy"
    assert frame.attribute("Temperature") == 21.5
    variants, _ = variant_types_and_union_members_from_tostr(got["attribute"][1])
    assert variants == {"value": "f"}


@pytest.mark.pva
@pytest.mark.peer
def test_a_pvapy_client_reads_attributes_as_from_pvapys_objects(pva_env):
    """pvapy reads an NtAttribute(name, pva.PvFloat(v)) built by pvagpu as
    it reads one built by pvapy: attribute['value'][0]['value']."""
    pvaccess = pytest.importorskip("pvaccess")
    extra = pva.PvObject({"tileIndexX": pva.INT}, {"tileIndexX": 5})
    nt = build_like_pvapy(np.ones((2, 3), np.uint16), 4, extra)
    server = Server(providers=[{"objects:peer": SharedPV(initial=nt)}])
    try:
        got = pvaccess.Channel("objects:peer").get("field()")
    finally:
        server.stop()
    attributes = {a["name"]: a["value"][0]["value"] for a in got["attribute"]}
    assert attributes == {"ColorMode": 0, "Temperature": 21.5}
    assert got["tileIndexX"] == 5 and got["uniqueId"] == 4


def test_structure_dict_of_an_ntndarray_type():
    d = structure_dict(ntnda.NTNDARRAY_TYPE)
    assert d["uniqueId"] == pva.INT and d["dimension"][0]["size"] == pva.INT
    assert isinstance(d["value"], tuple) and d["value"][0]["ushortValue"] == [pva.USHORT]
    assert d["attribute"][0]["value"] == ()
