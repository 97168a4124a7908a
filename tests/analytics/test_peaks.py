"""PeakFinder against a NumPy reference of the peak rule; its kernel under
the CUDA simulator and compiled to PTX; hit counting."""
import os
import subprocess
import sys

import numpy as np
import pytest

from pvagpu.analytics import PeakFinder
from pvagpu.errors import ConfigurationError
from pvagpu.kernels import peaks

from .common import RNG, both_paths, run

HERE = os.path.dirname(os.path.abspath(__file__))


def reference(image, d, threshold):
    """Peaks by the rule, with shifted NumPy comparisons: larger than every
    earlier pixel of the window, not smaller than every later one."""
    img = image.astype(np.float64)
    ny, nx = img.shape
    pad = np.full((ny + 2 * d, nx + 2 * d), -np.inf)
    pad[d:d + ny, d:d + nx] = img
    ok = img > threshold
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            if dy == dx == 0:
                continue
            other = pad[d + dy:d + dy + ny, d + dx:d + dx + nx]
            earlier = dy < 0 or (dy == 0 and dx < 0)
            ok &= (img > other) if earlier else (img >= other)
    y, x = np.nonzero(ok)
    return x, y, img[y, x]


def frame_with_peaks(shape=(60, 80), n=25):
    image = RNG.poisson(3, shape).astype(np.uint16)
    ys, xs = RNG.integers(2, shape[0] - 2, n), RNG.integers(2, shape[1] - 2, n)
    image[ys, xs] += RNG.integers(50, 500, n).astype(np.uint16)
    image[10, 10] = image[10, 11] = 999                       # a plateau
    return image


@pytest.mark.parametrize("config", both_paths({"threshold": 30, "minDistance": 2,
                                               "minPeaks": 15}))
def test_peaks_match_the_reference(config):
    images = [frame_with_peaks(), frame_with_peaks(n=3)]
    p, values = run(PeakFinder, config, images)
    for image, value in zip(images, values):
        x, y, intensity = reference(image, 2, 30)
        assert value["nPeaks"] == len(x)
        assert np.array_equal(value["x"], x) and np.array_equal(value["y"], y)
        assert np.array_equal(value["intensity"], intensity)
        assert value["hit"] == (len(x) >= 15)
    assert (10, 10) in zip(values[0]["y"], values[0]["x"])
    assert (10, 11) not in zip(values[0]["y"], values[0]["x"])
    stats = p.getStats()
    assert stats["nHits"] == 1 and stats["hitRate"] == 0.5
    assert stats["lastNPeaks"] == values[1]["nPeaks"]


def test_max_peaks_limits_the_lists():
    image = frame_with_peaks()
    _, values = run(PeakFinder, {"threshold": 30, "maxPeaks": 4}, [image])
    x, y, _ = reference(image, 3, 30)
    assert values[0]["nPeaks"] == len(x) > 4
    assert np.array_equal(values[0]["x"], x[:4]) and np.array_equal(values[0]["y"], y[:4])


def test_bad_configuration():
    with pytest.raises(ConfigurationError, match="threshold"):
        PeakFinder({})
    with pytest.raises(ConfigurationError, match="minDistance"):
        PeakFinder({"threshold": 1, "minDistance": 0})


def test_peak_kernel_under_the_cuda_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, os.path.join(HERE, "_peaks_sim_cases.py")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ALL OK" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("cc", [(8, 0), (9, 0)], ids=["sm_80", "sm_90"])
@pytest.mark.parametrize("sig", [s for _, sigs in peaks.PTX_SIGNATURES for s in sigs])
def test_peak_kernel_compiles_to_ptx(sig, cc):
    from numba import cuda
    from test_kernels import _compiling_for
    with _compiling_for(cc):
        ptx, _ = cuda.compile_ptx(peaks.peak_mask_kernel.py_func, sig, cc=cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx


def test_cpu_scan_matches_the_reference_on_a_large_frame():
    image = frame_with_peaks((300, 257), n=400)
    mask = peaks.peak_mask_cpu(image, 3, 40.0)
    x, y, _ = reference(image, 3, 40.0)
    assert np.array_equal(np.argwhere(mask)[:, ::-1], np.stack([x, y], 1))
