"""UserDataProcessor and AdImageProcessor: the seed's API on p4p Values."""
import inspect
import re
from pathlib import Path

import numpy as np
import pytest
from p4p import Type, Value

from pvagpu import codecs, ntnda
from pvagpu.errors import FrameError, UnknownCodecError
from pvagpu.hpc import AdImageProcessor, UserDataProcessor
from pvagpu.ntnda import ColorMode

SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "pvapy-hpc-api-reference.txt"


def seed_methods(class_name):
    """Public method names the seed lists for ``class_name``."""
    blocks = re.split(r"^- class pvapy\.hpc\.\w+\.", SEED.read_text(), flags=re.M)
    block = next(b for b in blocks[1:] if b.startswith(class_name + "\n"))
    return set(re.findall(r"^- (?:classmethod |static )?([a-zA-Z]\w*)\(", block, re.M))


@pytest.mark.skipif(not SEED.exists(), reason="seed reference not beside the checkout")
@pytest.mark.parametrize("cls", [UserDataProcessor, AdImageProcessor])
def test_every_seed_method_exists(cls):
    names = seed_methods(cls.__name__)
    assert names, "seed parsing found no methods"
    missing = [n for n in names if not callable(getattr(cls, n, None))]
    assert not missing


def test_classmethods_are_classmethods():
    for name in ("generateNtNdArray2D", "replaceNtNdArrayImage2D", "reshapeNtNdArray",
                 "getNtNdArrayDataFieldKey"):
        assert inspect.ismethod(getattr(AdImageProcessor, name)), name


class Publisher:
    def __init__(self):
        self.published = []

    def updateOutputChannel(self, value):
        self.published.append(value)


def test_user_data_processor_defaults_and_publishing():
    proc = UserDataProcessor({"processorId": 3, "inputChannel": "in", "outputChannel": "out"})
    assert (proc.processorId, proc.inputChannel, proc.outputChannel) == (3, "in", "out")
    assert proc.objectIdField == "uniqueId" and proc.metadataQueueMap == {}
    assert proc.getStats() == {} and proc.getStatsPvaTypes() == {}
    value = ntnda.value_from_image(np.zeros((2, 2), np.uint8), 1)
    assert proc.process(value) is value  # no publisher: nothing happens, no error
    proc.dataPublisher = Publisher()
    assert proc.process(value) is value
    assert proc.dataPublisher.published == [value]
    assert proc.getOutputPvObjectType(value) is value


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.uint32,
                                   np.int32, np.uint64, np.int64, np.float32, np.float64])
def test_generate_then_reshape(dtype):
    image = (np.arange(6 * 9) % 100).astype(dtype).reshape(6, 9)
    value = AdImageProcessor.generateNtNdArray2D(17, image)
    assert value["uniqueId"] == 17 and value["descriptor"]
    assert value["timeStamp.secondsPastEpoch"] > 0
    imageId, out, nx, ny, nz, colorMode, fieldKey = AdImageProcessor.reshapeNtNdArray(value)
    assert (imageId, nx, ny, nz, colorMode) == (17, 9, 6, None, AdImageProcessor.COLOR_MODE_MONO)
    assert fieldKey == AdImageProcessor.getNtNdArrayDataFieldKey(image)
    np.testing.assert_array_equal(out, image)


def test_generate_with_already_compressed_data():
    image = np.random.default_rng(1).poisson(3, (40, 50)).astype(np.uint16)
    for name in ("lz4", "bslz4", "blosc"):
        compressed = codecs.encode(name, image)
        value = AdImageProcessor.generateNtNdArray2D(
            5, compressed, nx=50, ny=40, dtype=np.uint16, compressorName=name)
        assert value["codec.name"] == name
        assert value["codec.parameters"] == ntnda.PvType.USHORT
        assert value["compressedSize"] == compressed.size
        assert value["uncompressedSize"] == image.nbytes
        _, out, nx, ny, _, _, key = AdImageProcessor.reshapeNtNdArray(value)
        assert (nx, ny, key) == (50, 40, "ushortValue")
        np.testing.assert_array_equal(out, image)
    with pytest.raises(FrameError, match="nx, ny and dtype"):
        AdImageProcessor.generateNtNdArray2D(1, compressed, compressorName="lz4")
    with pytest.raises(UnknownCodecError):
        AdImageProcessor.generateNtNdArray2D(1, compressed, 50, 40, np.uint16, "nope")


def test_generate_with_extra_fields():
    extra = Value(Type([("beamline", "s"), ("uniqueId", "i")]), {"beamline": "8-ID", "uniqueId": 9})
    value = AdImageProcessor.generateNtNdArray2D(1, np.ones((2, 3), np.uint8),
                                                 extraFieldsPvObject=extra)
    assert value["beamline"] == "8-ID" and value["uniqueId"] == 9
    assert AdImageProcessor.reshapeNtNdArray(value)[1].shape == (2, 3)


def test_replace_image():
    value = AdImageProcessor.generateNtNdArray2D(1, np.zeros((4, 4), np.uint16))
    value["attribute"] = [{"name": "ColorMode", "value": ("i", 0)}, {"name": "Gain", "value": 2.5}]
    new = np.arange(12, dtype=np.uint16).reshape(3, 4)
    same = AdImageProcessor.replaceNtNdArrayImage2D(value, 2, new)
    assert same is value
    imageId, out, nx, ny, *_ = AdImageProcessor.reshapeNtNdArray(value)
    assert (imageId, nx, ny) == (2, 4, 3)
    np.testing.assert_array_equal(out, new)
    assert value["uncompressedSize"] == new.nbytes
    assert [a["name"] for a in value["attribute"]] == ["ColorMode", "Gain"]
    # a compressed frame replaced by raw pixels is raw afterwards
    lz = AdImageProcessor.generateNtNdArray2D(1, codecs.encode("lz4", new), 4, 3, np.uint16, "lz4")
    AdImageProcessor.replaceNtNdArrayImage2D(lz, 3, new + 1)
    np.testing.assert_array_equal(AdImageProcessor.reshapeNtNdArray(lz)[1], new + 1)


@pytest.mark.parametrize("mode", [ColorMode.RGB1, ColorMode.RGB2, ColorMode.RGB3])
def test_reshape_accepts_colour_frames(mode):
    """pvapy 5.6 rejects every colour frame; pvagpu returns (ny, nx, 3)."""
    rgb = np.random.default_rng(2).integers(0, 255, (5, 8, 3), dtype=np.uint8)
    value = ntnda.value_from_image(rgb, 8, color_mode=mode, codec="bslz4")
    imageId, image, nx, ny, nz, colorMode, key = AdImageProcessor.reshapeNtNdArray(value)
    assert (imageId, nx, ny, nz, colorMode, key) == (8, 8, 5, 3, int(mode), "ubyteValue")
    np.testing.assert_array_equal(image, rgb)


def test_reshape_of_an_empty_frame():
    empty = Value(ntnda.NTNDARRAY_TYPE, {"uniqueId": 0})
    assert AdImageProcessor.reshapeNtNdArray(empty) == (0, None, None, None, None, None, None)


def test_reshape_of_a_frame_from_a_pvapy_ported_processor():
    """A frame written by pvapy's own generateNtNdArray2D has the same fields."""
    from pvapy.utility.adImageUtility import AdImageUtility
    image = np.arange(20, dtype=np.uint16).reshape(4, 5)
    theirs = AdImageUtility.generateNtNdArray2D(3, image)
    ours = AdImageProcessor.generateNtNdArray2D(3, image)
    for field in ("uniqueId", "compressedSize", "uncompressedSize"):
        assert theirs[field] == ours[field]
    assert [d["size"] for d in theirs["dimension"]] == [d["size"] for d in ours["dimension"]]
    assert theirs.getSelectedUnionFieldName() == AdImageProcessor.getNtNdArrayDataFieldKey(image)
