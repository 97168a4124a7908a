"""Roi against NumPy slicing; a rectangle outside the frames."""
import numpy as np
import pytest

from pvagpu import ntnda
from pvagpu.analytics import RegionOfInterest, Roi
from pvagpu.errors import ConfigurationError, FrameError

from .common import RNG, image_of, run


def test_roi_is_the_rectangle():
    image = RNG.integers(0, 4000, (30, 40), dtype=np.uint16)
    p, values = run(Roi, {"x": 5, "y": 7, "width": 20, "height": 9}, [image])
    assert np.array_equal(image_of(values[0]), image[7:16, 5:25])
    assert RegionOfInterest is Roi


def test_roi_outside_the_image():
    image = np.zeros((30, 40), np.uint16)
    p, _ = run(Roi, {"x": 30, "y": 0, "width": 10, "height": 5}, [image])
    with pytest.raises(ConfigurationError, match="outside"):
        p.configure({"width": 11})
    assert p.args["width"] == 10
    with pytest.raises(FrameError, match="outside"):
        p.process(ntnda.value_from_image(np.zeros((30, 39), np.uint16), 2))
    with pytest.raises(ConfigurationError, match="width"):
        Roi({"x": 1})
    with pytest.raises(ConfigurationError, match="'x'"):
        Roi({"x": -1, "width": 1, "height": 1})
