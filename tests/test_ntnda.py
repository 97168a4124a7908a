"""NTNDArray <-> numpy: the scalar table, colour modes, codecs and metadata."""
import queue

import numpy as np
import pytest
from p4p import Type, Value
from p4p.nt import NTNDArray

from pvagpu import ntnda
from pvagpu.errors import CodecError, CorruptPayloadError, FrameError, UnknownCodecError
from pvagpu.ntnda import ColorMode, PvType, TimeStamp

IMAGE_DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32,
                np.int64, np.uint64, np.float32, np.float64]
COLOR_MODES = [ColorMode.MONO, ColorMode.RGB1, ColorMode.RGB2, ColorMode.RGB3]


def make_image(dtype, color_mode, ny=5, nx=7, seed=0):
    rng = np.random.default_rng(seed)
    shape = (ny, nx) if color_mode == ColorMode.MONO else (ny, nx, 3)
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(dtype)
    if dtype.kind == "f":
        return rng.normal(0, 1e3, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def test_table_matches_pvapy_constants_and_p4p_members():
    import pvaccess
    for row in ntnda.SCALAR_TYPES:
        assert int(getattr(pvaccess, row.pv_type.name)) == int(row.pv_type)
    p4p_members = dict(NTNDArray.buildType().aspy()[2])["value"][2]
    for key, spec in p4p_members:
        row = ntnda.info_for_union_key(key)
        assert spec == "a" + row.p4p_code
        assert np.dtype(row.p4p_code) == row.dtype


def test_pva_constants_module_mirrors_pvaccess():
    from pvagpu import pva
    assert (pva.UBYTE, pva.USHORT, pva.UINT, pva.DOUBLE, pva.STRING) == (5, 6, 7, 10, 11)
    assert ntnda.p4p_code(pva.ULONG) == "L" and ntnda.p4p_code("d") == "d"
    with pytest.raises(FrameError):
        ntnda.p4p_code(99)


def test_integer_ranges_come_from_the_table():
    for row in ntnda.SCALAR_TYPES:
        assert ntnda.info_for_p4p_code(row.p4p_code) is row
        if row.dtype is not None and row.dtype.kind in "iu":
            info = np.iinfo(row.dtype)
            assert row.int_range == (info.min, info.max)
        else:
            assert row.int_range is None       # bool, floats, string
    assert ntnda.info_for_p4p_code("I").int_range == (0, 2**32 - 1)
    assert ntnda.info_for_p4p_code("b").int_range == (-128, 127)
    with pytest.raises(FrameError, match="'Q'"):
        ntnda.info_for_p4p_code("Q")


def test_pva_constants_are_exactly_the_pv_type_members():
    """pvagpu.pva names each PvType member explicitly: the same names, the
    same objects, nothing missing and nothing extra."""
    from pvagpu import pva
    from pvagpu.pva import exceptions, objects
    constants = {name for name in pva.__all__ if name.isupper()}
    assert constants == set(PvType.__members__)
    errors = set(exceptions.__all__)
    builders = set(pva.__all__) - constants - errors
    assert builders and all(getattr(pva, name) is getattr(objects, name) for name in builders)
    assert all(getattr(pva, name) is getattr(exceptions, name) for name in errors)
    for name, member in PvType.__members__.items():
        assert getattr(pva, name) is member
    assert pva.QueueEmpty is queue.Empty


def test_lookups_reject_what_ntndarray_cannot_carry():
    with pytest.raises(FrameError, match="float16"):
        ntnda.info_for_dtype(np.float16)
    with pytest.raises(FrameError):
        ntnda.info_for_union_key("stringValue")
    with pytest.raises(FrameError):
        ntnda.info_for_pv_type(PvType.STRING)
    with pytest.raises(FrameError):
        ntnda.info_for_pv_type(42)
    # big-endian data maps to the member of its kind (p4p stores native order)
    assert ntnda.info_for_dtype(">u2").union_key == "ushortValue"


@pytest.mark.parametrize("dtype", IMAGE_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode", COLOR_MODES, ids=lambda m: m.name)
def test_round_trip_every_dtype_and_colour_mode(dtype, mode):
    image = make_image(dtype, mode)
    ts, dts = TimeStamp(1700000000, 123456789, 7), TimeStamp(1700000001, 5, 0)
    value = ntnda.value_from_image(image, 42, color_mode=mode, time_stamp=ts,
                                   data_time_stamp=dts, descriptor="test frame")
    # the wire layout is areaDetector's: dimension[0] is the fastest axis
    sizes = [d["size"] for d in value["dimension"]]
    expected = {ColorMode.MONO: [7, 5], ColorMode.RGB1: [3, 7, 5],
                ColorMode.RGB2: [7, 3, 5], ColorMode.RGB3: [7, 5, 3]}[mode]
    assert sizes == expected
    assert value["codec.parameters"] == ntnda.info_for_dtype(dtype).pv_type
    frame = ntnda.frame_from_value(value)
    assert frame.image.dtype == image.dtype
    np.testing.assert_array_equal(frame.image, image)
    assert (frame.unique_id, frame.color_mode, frame.codec) == (42, mode, "")
    assert frame.time_stamp == ts and frame.data_time_stamp == dts
    assert frame.descriptor == "test frame"
    assert (frame.nx, frame.ny, frame.nz) == (7, 5, None if mode == ColorMode.MONO else 3)
    assert frame.attribute("ColorMode") == mode


def test_ad_layouts_against_hand_built_frames():
    """RGB2 and RGB3 put the colour axis where areaDetector does."""
    rgb = make_image(np.uint8, ColorMode.RGB1, ny=2, nx=4)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # RGB2 (row-interleaved): each row holds the R row, the G row, the B row
    rgb2 = ntnda.value_from_image(rgb, color_mode=ColorMode.RGB2)["value"]
    np.testing.assert_array_equal(rgb2, np.concatenate([r[0], g[0], b[0], r[1], g[1], b[1]]))
    # RGB3 (planar): the whole R plane, then G, then B
    rgb3 = ntnda.value_from_image(rgb, color_mode=ColorMode.RGB3)["value"]
    np.testing.assert_array_equal(rgb3, np.concatenate([r.ravel(), g.ravel(), b.ravel()]))


def test_reading_is_zero_copy_for_uncompressed_frames():
    value = ntnda.value_from_image(make_image(np.uint16, ColorMode.MONO))
    flat, info = ntnda.payload(value)
    frame = ntnda.frame_from_value(value)
    assert info.union_key == "ushortValue"
    assert np.shares_memory(frame.image, flat)
    rgb = ntnda.value_from_image(make_image(np.uint8, ColorMode.RGB1), color_mode=ColorMode.RGB3)
    assert np.shares_memory(ntnda.frame_from_value(rgb).image, ntnda.payload(rgb)[0])


def test_frames_from_p4p_wrap_with_int64_color_mode():
    """p4p's own NTNDArray().wrap writes ColorMode as int64: accepted."""
    rgb = make_image(np.uint8, ColorMode.RGB1, ny=6, nx=4)
    value = NTNDArray().wrap(rgb)  # innermost axis of 3 => RGB1
    frame = ntnda.frame_from_value(value)
    assert frame.color_mode == ColorMode.RGB1
    np.testing.assert_array_equal(frame.image, rgb)


def test_metadata_survives_a_round_trip():
    image = make_image(np.uint16, ColorMode.MONO)
    attrs = [{"name": "ColorMode", "value": ("i", 0), "descriptor": "colour"},
             {"name": "Exposure", "value": ("d", 0.25), "source": "CAM:Exp", "sourceType": 2},
             {"name": "Label", "value": "sample A"},
             {"name": "Counter", "value": ("L", 2**40)}]
    dims = [{"size": 7, "offset": 16, "fullSize": 64, "binning": 2, "reverse": True},
            {"size": 5, "offset": 8, "fullSize": 32, "binning": 2, "reverse": False}]
    value = ntnda.value_from_image(image, 9, attributes=attrs, dimension=dims,
                                   time_stamp=TimeStamp(10, 20, 3),
                                   data_time_stamp=TimeStamp(11, 21, 4))
    again = ntnda.value_from_frame(ntnda.frame_from_value(value))
    assert again.tostr() == value.tostr()
    assert "int32_t = 0" in again["attribute"][0].tostr()
    assert "uint64_t = 1099511627776" in again["attribute"][3].tostr()
    assert again["dimension"][0]["offset"] == 16 and again["dimension"][0]["reverse"]


@pytest.mark.parametrize("codec", ["lz4", "bslz4", "blosc", "zlib", "lz4hdf5"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float64])
def test_codec_frames_round_trip(codec, dtype):
    image = make_image(dtype, ColorMode.MONO, ny=33, nx=40)
    value = ntnda.value_from_image(image, 3, codec=codec)
    assert value["codec.name"] == codec
    assert ntnda.payload(value)[1].union_key == "ubyteValue"
    assert value["compressedSize"] == ntnda.payload(value)[0].size
    assert value["uncompressedSize"] == image.nbytes
    assert value["codec.parameters"] == ntnda.info_for_dtype(dtype).pv_type
    frame = ntnda.frame_from_value(value)
    assert frame.codec == codec and frame.image.dtype == image.dtype
    np.testing.assert_array_equal(frame.image, image)


@pytest.mark.parametrize("mode", COLOR_MODES, ids=lambda m: m.name)
def test_jpeg_frames_keep_dims_and_colour_mode(mode):
    """NDPluginCodec interleaves RGB2/RGB3 for jpeg but keeps dims and ColorMode."""
    image = np.zeros((16, 24, 3) if mode != ColorMode.MONO else (16, 24), np.uint8)
    image[4:12, 8:16] = 200
    value = ntnda.value_from_image(image, 1, color_mode=mode, codec="jpeg",
                                   codec_options={"quality": 100})
    plain = ntnda.value_from_image(image, 1, color_mode=mode)
    assert [d["size"] for d in value["dimension"]] == [d["size"] for d in plain["dimension"]]
    frame = ntnda.frame_from_value(value)
    assert frame.image.shape == image.shape
    assert np.abs(frame.image.astype(int) - image).max() <= 8  # lossy, but the same picture


def test_dims_that_disagree_with_the_data_are_frame_errors():
    value = ntnda.value_from_image(make_image(np.uint8, ColorMode.MONO))
    value["dimension"] = ntnda.dimension_list((5, 8))
    with pytest.raises(FrameError, match="need 40 elements"):
        ntnda.frame_from_value(value)
    value["dimension"] = ntnda.dimension_list((5, 7, 1))
    with pytest.raises(FrameError, match="2 dimensions"):
        ntnda.frame_from_value(value)
    rgb = ntnda.value_from_image(make_image(np.uint8, ColorMode.RGB1))
    rgb["dimension"] = ntnda.dimension_list((5, 3, 7))  # colour axis in the wrong place
    with pytest.raises(FrameError, match="RGB1"):
        ntnda.frame_from_value(rgb)
    rgb["attribute"] = [{"name": "ColorMode", "value": ("i", 17)}]
    with pytest.raises(FrameError, match="not a colour mode"):
        ntnda.frame_from_value(rgb)


def test_codec_frames_with_bad_fields_are_codec_errors():
    image = make_image(np.uint16, ColorMode.MONO, ny=20, nx=20)
    value = ntnda.value_from_image(image, codec="lz4")
    bad = ntnda.value_from_image(image, codec="lz4")
    bad["codec.name"] = "zstd-but-unknown"
    with pytest.raises(UnknownCodecError, match="zstd-but-unknown"):
        ntnda.frame_from_value(bad)
    bad = ntnda.value_from_image(image, codec="lz4")
    bad["uncompressedSize"] = image.nbytes - 2
    with pytest.raises(CorruptPayloadError, match="uncompressedSize"):
        ntnda.frame_from_value(bad)
    bad = ntnda.value_from_image(image, codec="lz4")
    bad["compressedSize"] = value["compressedSize"] + 1
    with pytest.raises(CorruptPayloadError, match="compressedSize"):
        ntnda.frame_from_value(bad)
    bad = ntnda.value_from_image(image, codec="lz4")
    bad["value"] = ("ubyteValue", ntnda.payload(value)[0][:-5].copy())
    bad["compressedSize"] = value["compressedSize"] - 5
    with pytest.raises(CodecError):
        ntnda.frame_from_value(bad)
    bad = ntnda.value_from_image(image, codec="lz4")
    bad["codec.parameters"] = ("i", int(PvType.STRING))
    with pytest.raises(FrameError):
        ntnda.frame_from_value(bad)


def test_empty_union_is_an_empty_payload():
    value = Value(ntnda.NTNDARRAY_TYPE, {})
    flat, info = ntnda.payload(value)
    assert flat.size == 0 and info.union_key == "ubyteValue"


def test_with_extra_fields_sets_known_and_adds_new_fields():
    value = ntnda.value_from_image(make_image(np.uint8, ColorMode.MONO), 4)
    same = ntnda.with_extra_fields(value, {"uniqueId": 77, "descriptor": "x"})
    assert same["uniqueId"] == 77 and same["descriptor"] == "x"
    extra = Value(Type([("beamCurrent", "d"), ("uniqueId", "i")]),
                  {"beamCurrent": 101.5, "uniqueId": 5})
    wider = ntnda.with_extra_fields(value, extra)
    assert wider["beamCurrent"] == 101.5 and wider["uniqueId"] == 5
    np.testing.assert_array_equal(wider["value"], value["value"])
    with pytest.raises(FrameError, match="beam"):
        ntnda.with_extra_fields(value, {"beamCurrent": 1.0})


def test_timestamp_from_seconds_carries_into_the_next_second():
    assert TimeStamp.from_seconds(5.9999999999) == TimeStamp(6, 0, 0)
    assert TimeStamp.from_seconds(1700000000.25) == TimeStamp(1700000000, 250000000, 0)
    assert TimeStamp.from_seconds(1700000000.25).seconds == 1700000000.25
