"""Accumulation: sums and means of N frames against NumPy; reset on the frame path."""
import numpy as np
import pytest

from pvagpu import ntnda
from pvagpu.analytics import Accumulation
from pvagpu.errors import FrameError

from .common import RNG, both_paths, image_of, run


@pytest.mark.parametrize("config", both_paths({}))
@pytest.mark.parametrize("mode, cumulative", [("sum", False), ("mean", False), ("sum", True)])
def test_published_every_n_frames(config, mode, cumulative):
    images = [RNG.poisson(50, (12, 17)).astype(np.uint16) for _ in range(7)]
    p, values = run(Accumulation, {**config, "nFrames": 3, "mode": mode,
                                   "cumulative": cumulative}, images)
    assert [v["uniqueId"] for v in values] == [3, 6]
    for k, value in enumerate(values):
        frames = images[:3 * (k + 1)] if cumulative else images[3 * k:3 * (k + 1)]
        total = np.sum(np.stack(frames).astype(np.int64), axis=0)
        out = image_of(value)
        if mode == "sum":
            assert out.dtype == np.int64 and np.array_equal(out, total)
        else:
            assert out.dtype == np.float32
            np.testing.assert_allclose(out, total / len(frames), rtol=1e-6)
    assert p.getStats()["nPublished"] == 2


def test_reset_and_mismatched_frames():
    images = [RNG.poisson(50, (12, 17)).astype(np.uint16) for _ in range(4)]
    p, values = run(Accumulation, {"nFrames": 2}, images[:1])
    acc = p.step.acc
    with pytest.raises(FrameError, match="running sum"):
        p.process(ntnda.value_from_image(np.zeros((3, 3), np.uint16), 2))
    p.configure({"reset": True})            # the next frame starts a new sum
    for i, image in enumerate(images[1:3], 3):
        p.process(ntnda.value_from_image(image, i))
    p.flush(wait=True)
    out = image_of(p.dataPublisher.values[-1])
    assert p.step.acc is acc                                 # zeroed in place
    assert np.array_equal(out, images[1].astype(np.int64) + images[2])
