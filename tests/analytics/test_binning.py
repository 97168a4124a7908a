"""Binning against a NumPy reference."""
import numpy as np
import pytest

from pvagpu.analytics import Binning
from pvagpu.errors import ConfigurationError

from .common import RNG, both_paths, image_of, run


def reference(image, by, bx, mode):
    ny, nx = image.shape[0] // by, image.shape[1] // bx
    out = np.zeros((ny, nx), np.float64)
    for j in range(by):
        for i in range(bx):
            out += image[j:ny * by:by, i:nx * bx:bx]
    return out / (by * bx) if mode == "mean" else out


@pytest.mark.parametrize("config", both_paths({}))
@pytest.mark.parametrize("by, bx, mode, dtype, out_dtype", [
    (2, 2, "sum", np.uint16, np.uint32), (3, 2, "sum", np.int16, np.int32),
    (2, 5, "mean", np.uint16, np.float32), (4, 3, "sum", np.float32, np.float32),
    (1, 4, "mean", np.float64, np.float64)])
def test_binning_matches_numpy(config, by, bx, mode, dtype, out_dtype):
    image = (RNG.poisson(1000, (25, 41)) * (1 if dtype != np.int16 else -1)).astype(dtype)
    _, values = run(Binning, {**config, "binX": bx, "binY": by, "mode": mode}, [image])
    out = image_of(values[0])
    assert out.dtype == out_dtype and out.shape == (25 // by, 41 // bx)
    np.testing.assert_allclose(out, reference(image, by, bx, mode), rtol=1e-6)


def test_colour_frames_are_binned_per_plane():
    image = RNG.integers(0, 255, (8, 10, 3), dtype=np.uint8)
    p, _ = run(Binning, {}, [])
    out = p.step.apply(image)
    assert out.shape == (4, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], reference(image[..., c], 2, 2, "sum"))


def test_bad_binning():
    with pytest.raises(ConfigurationError, match="binX"):
        Binning({"binX": 0})
    with pytest.raises(ConfigurationError, match="mode"):
        Binning({"mode": "median"})
