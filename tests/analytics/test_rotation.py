"""Rotation, flips and transpose against NumPy."""
import numpy as np
import pytest

from pvagpu.analytics import Rotation
from pvagpu.errors import ConfigurationError

from .common import RNG, both_paths, image_of, run


@pytest.mark.parametrize("config", both_paths({}))
@pytest.mark.parametrize("rotate", [0, 90, 180, 270])
@pytest.mark.parametrize("transpose, flip_x, flip_y", [
    (False, False, False), (True, False, False), (False, True, False), (True, True, True)])
def test_orientation_matches_numpy(config, rotate, transpose, flip_x, flip_y):
    image = RNG.integers(0, 60000, (70, 131), dtype=np.uint16)
    args = {**config, "rotate": rotate, "transpose": transpose, "flipX": flip_x,
            "flipY": flip_y}
    _, values = run(Rotation, args, [image])
    expect = image.T if transpose else image
    expect = np.rot90(expect, rotate // 90)
    expect = expect[:, ::-1] if flip_x else expect
    expect = expect[::-1] if flip_y else expect
    assert np.array_equal(image_of(values[0]), expect)


def test_bad_rotation():
    with pytest.raises(ConfigurationError, match="rotate"):
        Rotation({"rotate": 45})
