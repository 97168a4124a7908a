"""FrameStatistics against a NumPy reference, on the CPU kernels and the device code."""
import numpy as np
import pytest

from pvagpu.analytics import FrameStatistics
from pvagpu.errors import ConfigurationError

from .common import RNG, both_paths, run


def reference(image, threshold):
    img = image.astype(np.float64)
    ny, nx = img.shape
    total = img.sum()
    return {"sum": total, "min": img.min(), "max": img.max(), "mean": img.mean(),
            "std": img.std(), "nAbove": int((img > threshold).sum()),
            "centroidX": (img * np.arange(nx)[None, :]).sum() / total,
            "centroidY": (img * np.arange(ny)[:, None]).sum() / total}


@pytest.mark.parametrize("config", both_paths({"threshold": 7}))
@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32])
def test_statistics_match_numpy(config, dtype):
    images = [RNG.poisson(5, (37, 53)).astype(dtype) + 1000 * i for i in range(3)]
    images[1][4, 9] = 60000 if dtype == np.uint16 else -5      # an outlier
    p, values = run(FrameStatistics, config, images)
    assert len(values) == 3
    for image, value in zip(images, values):
        expect = reference(image, 7)
        for key, want in expect.items():
            assert value[key] == pytest.approx(want, rel=1e-9, abs=1e-9), key
    assert p.getStats()["lastMax"] == values[-1]["max"]
    assert p.getStats()["nFrames"] == 3
    assert set(p.getStatsPvaTypes()) == set(p.getStats())


def test_threshold_reconfigured_on_the_frame_path():
    image = RNG.poisson(5, (20, 30)).astype(np.uint16)
    p, values = run(FrameStatistics, {"threshold": 3}, [image])
    p.configure({"threshold": 8})
    assert p.step.threshold == 3                 # the next frame takes it
    from pvagpu import ntnda
    p.process(ntnda.value_from_image(image, 2))
    p.flush(wait=True)
    assert p.dataPublisher.values[-1]["nAbove"] == int((image > 8).sum())
    with pytest.raises(ConfigurationError, match="threshold"):
        p.configure({"threshold": "high"})
    with pytest.raises(ConfigurationError, match="treshold"):
        p.configure({"treshold": 4})
    assert p.args["threshold"] == 8


def test_zero_image_has_nan_centroid():
    _, values = run(FrameStatistics, {}, [np.zeros((4, 5), np.uint8)])
    assert values[0]["sum"] == 0 and np.isnan(values[0]["centroidX"])
