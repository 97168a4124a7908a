"""Corrections against a NumPy reference; calibration files in every format;
bad configuration and frames that do not match."""
import h5py
import numpy as np
import pytest
import tifffile

from pvagpu import ntnda
from pvagpu.analytics import Corrections
from pvagpu.errors import ConfigurationError, FrameError

from .common import RNG, both_paths, image_of, run

SHAPE = (24, 31)


@pytest.fixture
def calib(tmp_path):
    dark = RNG.normal(100, 5, SHAPE).astype(np.float32)
    flat = RNG.normal(2.0, 0.1, SHAPE).astype(np.float32)
    flat[3, 4] = 0                                          # a dead flat pixel
    mask = np.zeros(SHAPE, np.uint8)
    mask[5, 6] = mask[7, 8] = 1
    np.save(tmp_path / "dark.npy", dark)
    tifffile.imwrite(tmp_path / "flat.tif", flat)
    with h5py.File(tmp_path / "calib.h5", "w") as f:
        f["entry/mask"] = mask
    files = {"dark": str(tmp_path / "dark.npy"), "flat": str(tmp_path / "flat.tif"),
             "mask": f"{tmp_path / 'calib.h5'}:/entry/mask"}
    return files, dark, flat, mask


def reference(image, dark, flat, mask, mask_value=0.0):
    bad = (mask != 0) | (flat <= 0)
    norm = flat / flat[~bad].astype(np.float64).mean()
    out = (image.astype(np.float32) - dark) / np.where(bad, 1, norm).astype(np.float32)
    return np.where(bad, np.float32(mask_value), out).astype(np.float32)


@pytest.mark.parametrize("extra", both_paths({"maskValue": -1}))
def test_float_output_matches_numpy(calib, extra):
    files, dark, flat, mask = calib
    images = [RNG.poisson(300, SHAPE).astype(np.uint16) for _ in range(2)]
    p, values = run(Corrections, {**files, **extra}, images)
    for image, value in zip(images, values):
        out = image_of(value)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, reference(image, dark, flat, mask, -1), rtol=2e-6)
    assert p.getStats()["nBadPixels"] == 3


@pytest.mark.parametrize("extra", both_paths({"output": "input"}))
def test_input_dtype_is_rounded_and_clipped(calib, extra):
    files, dark, flat, mask = calib
    image = RNG.poisson(300, SHAPE).astype(np.uint16)
    image[0, :5] = [0, 1, 50, 65535, 200]                   # below the dark: clipped at 0
    _, values = run(Corrections, {"dark": files["dark"], **extra}, [image])
    out = image_of(values[0])
    expect = np.clip(np.rint(image.astype(np.float32) - dark), 0, 65535).astype(np.uint16)
    assert out.dtype == np.uint16 and np.array_equal(out, expect)


def test_bad_configuration_is_refused(calib, tmp_path):
    files, *_ = calib
    with pytest.raises(ConfigurationError, match="does not exist"):
        Corrections({"dark": str(tmp_path / "missing.npy")})
    np.save(tmp_path / "small.npy", np.zeros((3, 3), np.float32))
    with pytest.raises(ConfigurationError, match="differ in shape"):
        Corrections({"dark": files["dark"], "flat": str(tmp_path / "small.npy")})
    with pytest.raises(ConfigurationError, match="at least one"):
        Corrections({})
    with pytest.raises(ConfigurationError, match="no dataset"):
        Corrections({"mask": f"{tmp_path / 'calib.h5'}:/nope"})
    p, _ = run(Corrections, {"dark": files["dark"]}, [np.zeros(SHAPE, np.uint16)])
    with pytest.raises(ConfigurationError, match="does not exist"):
        p.configure({"flat": str(tmp_path / "missing.tif")})
    with pytest.raises(ConfigurationError, match="do not match"):
        p.configure({"dark": str(tmp_path / "small.npy")})   # frames of SHAPE seen
    assert p._pending is None and "flat" not in p.args


def test_a_frame_of_another_shape_is_skipped(calib):
    files, dark, *_ = calib
    p, values = run(Corrections, {"dark": files["dark"]}, [np.zeros(SHAPE, np.uint16)])
    with pytest.raises(FrameError, match="do not match"):
        p.process(ntnda.value_from_image(np.zeros((5, 5), np.uint16), 2))
    p.process(ntnda.value_from_image(np.full(SHAPE, 200, np.uint16), 3))
    p.flush(wait=True)
    assert len(p.dataPublisher.values) == 2 and p.nFrames == 2
    np.testing.assert_allclose(image_of(p.dataPublisher.values[-1]), 200 - dark, rtol=1e-6)
