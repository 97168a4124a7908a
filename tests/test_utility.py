"""pvagpu.utility: pvapy.utility's names with pvapy's behaviour (issue 13)."""
import json
import logging
import pickle

import numpy as np
import pytest

from pvagpu import codecs, ntnda, pva
from pvagpu.errors import FrameError, UnknownCodecError
from pvagpu.pva.status import StatusChannel, status_fields, fill
from pvagpu.utility import (AdImageUtility, FloatWithUnits, IntWithUnits, LoggingManager,
                            TimeUtility)


# ---------------------------------------------------------------------------
# FloatWithUnits, IntWithUnits
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, units, precision", [
    (1.23456789, "s", 4), (0, "fps", 4), (12.5, "", 2), (-3.25, "MB/s", 1)])
def test_float_with_units_prints_and_adds_as_pvapys(value, units, precision):
    theirs = pytest.importorskip("pvapy.utility.floatWithUnits").FloatWithUnits
    a, b = FloatWithUnits(value, units, precision), theirs(value, units, precision)
    assert (str(a), repr(a), float(a)) == (str(b), repr(b), float(b))
    assert str(a + 1) == str(b + 1) and str(a - 0.5) == str(b - 0.5)
    assert isinstance(a + 1, FloatWithUnits) and (a + 1).units == units


def test_int_with_units_prints_and_adds_as_pvapys():
    theirs = pytest.importorskip("pvapy.utility.intWithUnits").IntWithUnits
    a, b = IntWithUnits(1024, "B"), theirs(1024, "B")
    assert (str(a), repr(a), int(a)) == (str(b), repr(b), int(b))
    assert str(a + 1) == str(b + 1) and str(a - 24) == str(b - 24)


def test_numbers_with_units_are_numbers_everywhere():
    f, i = FloatWithUnits(2.5, "s"), IntWithUnits(7, "B")
    assert json.loads(json.dumps({"f": f, "i": i})) == {"f": 2.5, "i": 7}
    f2, i2 = pickle.loads(pickle.dumps(f)), pickle.loads(pickle.dumps(i))
    assert (str(f2), str(i2)) == ("2.5000s", "7B")
    assert f * 2 == 5.0 and i // 2 == 3 and max(f, 1.0) is f


def test_float_with_units_statistics_reach_the_status_channel():
    """getStats() values as pvapy's processors return them are converted to
    the status record's types: FloatWithUnits to a double, IntWithUnits to
    an unsigned integer, also where the declared type is an integer."""
    types = {"processingTime": pva.DOUBLE, "rate": pva.FLOAT, "nBytes": pva.ULONG,
             "nFrames": pva.UINT}
    stats = {"userStats": {"processingTime": FloatWithUnits(0.125, "s"),
                           "rate": FloatWithUnits(8.0, "fps"),
                           "nBytes": IntWithUnits(4096, "B"),
                           "nFrames": FloatWithUnits(3.0, "")}}

    class Server:
        def add(self, name, pv):
            return pv

    status = StatusChannel(Server(), "st", 1, "in", user_types=types)
    value = status.value_for(stats)
    assert value["userStats.processingTime"] == 0.125
    assert value["userStats.rate"] == 8.0
    assert value["userStats.nBytes"] == 4096 and value["userStats.nFrames"] == 3
    assert fill(status_fields(), {"objectTime": FloatWithUnits(1.5, "s")}) == {"objectTime": 1.5}


# ---------------------------------------------------------------------------
# TimeUtility
# ---------------------------------------------------------------------------

def test_time_stamp_as_float_from_values_dicts_and_fields():
    value = ntnda.value_from_image(np.zeros((2, 2), np.uint8), 1,
                                   time_stamp=ntnda.TimeStamp(100, 250_000_000),
                                   data_time_stamp=ntnda.TimeStamp(5, 0))
    assert TimeUtility.getTimeStampAsFloat(value["timeStamp"]) == 100.25
    assert TimeUtility.getTimeStampAsFloat(value, "dataTimeStamp") == 5.0
    assert TimeUtility.getTimeStampAsFloat({"secondsPastEpoch": 2, "nanoseconds": 5e8}) == 2.5
    assert TimeUtility.getTimeStampAsFloat(pva.PvTimeStamp(7.75)) == 7.75
    assert TimeUtility.getTimeStampAsFloat(ntnda.TimeStamp(3, 1)) == 3 + 1e-9
    with pytest.raises(pva.InvalidArgument, match="noSuchField"):
        TimeUtility.getTimeStampAsFloat(value, "noSuchField")
    with pytest.raises(FrameError, match="nanoseconds"):     # the runtime counts it as such
        TimeUtility.getTimeStampAsFloat({"secondsPastEpoch": 1})


def test_pvapy_exception_names_are_pvagpus_errors():
    """A ported processor's ``except pva.X`` lines: the names exist, form
    pvapy's hierarchy, and are the errors pvagpu raises and counts."""
    import queue

    from pvagpu import errors
    for name in ("InvalidArgument", "FieldNotFound", "InvalidDataType", "InvalidRequest",
                 "InvalidState", "ObjectAlreadyExists", "ObjectNotFound"):
        assert issubclass(getattr(pva, name), pva.PvaException), name
    assert issubclass(pva.PvaException, errors.PvagpuError)
    assert issubclass(pva.FieldNotFound, KeyError) and issubclass(pva.FieldNotFound, FrameError)
    assert str(pva.FieldNotFound("no field x")) == "no field x"
    assert pva.ConfigurationError is errors.ConfigurationError
    assert (pva.QueueEmpty, pva.QueueFull) == (queue.Empty, queue.Full)
    try:
        import pvaccess
    except ImportError:
        return
    assert {n for n in dir(pvaccess) if isinstance(getattr(pvaccess, n), type) and
            issubclass(getattr(pvaccess, n), BaseException)} <= set(dir(pva))


# ---------------------------------------------------------------------------
# LoggingManager
# ---------------------------------------------------------------------------

def test_logging_manager_shares_handlers_and_level(tmp_path, monkeypatch):
    monkeypatch.setattr(LoggingManager, "_handlerMap", {})
    monkeypatch.setattr(LoggingManager, "_loggerMap", {})
    monkeypatch.setattr(LoggingManager, "_logLevel", "ERROR")
    log_file = tmp_path / "lm.log"
    first = LoggingManager.getLogger("pvagpu.test.lm1", logFile=str(log_file))
    LoggingManager.setLogLevel("debug")
    second = LoggingManager.getLogger("pvagpu.test.lm2", logFile=str(log_file))
    try:
        assert first.level == second.level == logging.DEBUG
        assert LoggingManager.getLogger("pvagpu.test.lm1", logFile=str(log_file)) is first
        first.debug("one")
        second.info("two")
        for handler in LoggingManager._handlerMap.values():
            handler.flush()
        text = log_file.read_text()
        assert "pvagpu.test.lm1 DEBUG: one" in text and "pvagpu.test.lm2 INFO: two" in text
        LoggingManager.setLogLevel("WARNING")
        first.info("hidden")
        for handler in LoggingManager._handlerMap.values():
            handler.flush()
        assert "hidden" not in log_file.read_text()
    finally:
        for logger in (first, second):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
        for handler in LoggingManager._handlerMap.values():
            handler.close()


# ---------------------------------------------------------------------------
# AdImageUtility
# ---------------------------------------------------------------------------

def test_ad_image_utility_constants_and_maps_are_pvapys():
    theirs = pytest.importorskip("pvapy.utility.adImageUtility").AdImageUtility
    for name in ("COLOR_MODE_MONO", "COLOR_MODE_RGB1", "COLOR_MODE_RGB2", "COLOR_MODE_RGB3"):
        assert getattr(AdImageUtility, name) == getattr(theirs, name)
    assert AdImageUtility.COLOR_MODE_MAP == theirs.COLOR_MODE_MAP
    assert {int(k): v for k, v in AdImageUtility.NUMPY_DATA_TYPE_MAP.items()} == \
        {int(k): v for k, v in theirs.NUMPY_DATA_TYPE_MAP.items()}
    assert AdImageUtility.NTNDA_DATA_FIELD_KEY_MAP == theirs.NTNDA_DATA_FIELD_KEY_MAP
    assert {k: int(v) for k, v in AdImageUtility.PVA_DATA_TYPE_MAP.items()} == \
        {k: int(v) for k, v in theirs.PVA_DATA_TYPE_MAP.items()}


@pytest.mark.parametrize("mode", [0, 2, 3, 4])
def test_image_dimensions_are_pvapys(mode):
    theirs = pytest.importorskip("pvapy.utility.adImageUtility").AdImageUtility
    ours = [d.todict() for d in AdImageUtility.getImageDimensions(5, 4, mode)]
    assert ours == [d.toDict() for d in theirs.getImageDimensions(5, 4, mode)]
    assert all(isinstance(d, pva.PvDimension) for d in AdImageUtility.getImageDimensions(5, 4, mode))


@pytest.mark.parametrize("mode", [0, 2, 3, 4])
@pytest.mark.parametrize("codec", ["", "lz4"])
def test_generate_nt_nd_array_round_trips_every_colour_mode(mode, codec):
    rng = np.random.default_rng(mode)
    shape = (6, 5) if mode == 0 else (6, 5, 3)
    image = rng.integers(0, 60000, shape, dtype=np.uint16)
    extra = pva.PvObject({"tileIndexX": pva.INT}, {"tileIndexX": 9})
    if codec:
        # the compressed payload of the image in areaDetector order
        wire = AdImageUtility.generateNtNdArray(1, image, colorMode=mode)
        payload = codecs.encode(codec, ntnda.payload(wire)[0])
        value = AdImageUtility.generateNtNdArray(3, payload, nx=5, ny=6, colorMode=mode,
                                                 dtype=np.uint16, compressorName=codec,
                                                 extraFieldsPvObject=extra)
        assert value["codec.name"] == codec and value["uncompressedSize"] == image.nbytes
    else:
        value = AdImageUtility.generateNtNdArray(3, image, colorMode=mode,
                                                 extraFieldsPvObject=extra)
    image_id, out, nx, ny, nz, color_mode, key = AdImageUtility.reshapeNtNdArray(value)
    assert (image_id, nx, ny, nz, color_mode, key) == (
        3, 5, 6, None if mode == 0 else 3, mode, "ushortValue")
    np.testing.assert_array_equal(out, image)
    assert value["tileIndexX"] == 9
    assert [d["size"] for d in value["dimension"]] == \
        [d["size"] for d in AdImageUtility.getImageDimensions(5, 6, mode)]


def test_generate_nt_nd_array_refuses_what_it_cannot_build():
    with pytest.raises(FrameError, match="colour mode"):
        AdImageUtility.generateNtNdArray(1, np.zeros((2, 2), np.uint8), colorMode=1)
    with pytest.raises(FrameError, match="nx, ny and dtype"):
        AdImageUtility.generateNtNdArray(1, np.zeros(8, np.uint8), compressorName="lz4")
    with pytest.raises(UnknownCodecError):
        AdImageUtility.generateNtNdArray(1, np.zeros(8, np.uint8), nx=2, ny=2,
                                         dtype=np.uint8, compressorName="nope")


def test_two_d_helpers_are_the_processor_classes():
    """One implementation: AdImageUtility's 2-D helpers are AdImageProcessor's."""
    from pvagpu.hpc import AdImageProcessor
    image = np.arange(12, dtype=np.int32).reshape(3, 4)
    value = AdImageUtility.generateNtNdArray2D(4, image)
    assert AdImageUtility.getNtNdArrayDataFieldKey(image) == "intValue"
    replaced = AdImageUtility.replaceNtNdArrayImage2D(value, 5, image.T.copy())
    assert AdImageUtility.reshapeNtNdArray(replaced)[0] == 5
    np.testing.assert_array_equal(AdImageUtility.reshapeNtNdArray(replaced)[1], image.T)
    assert AdImageUtility.generateNtNdArray2D.__func__ is AdImageProcessor.generateNtNdArray2D.__func__
