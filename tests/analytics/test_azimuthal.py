"""AzimuthalIntegrator against pyFAI's integrate1d (no pixel splitting, CSR,
cython) on the same PONI geometry, mask, dark, flat and image; the PONI
parser; bad configuration."""
import numpy as np
import pytest
from pyFAI.detectors import Detector
from pyFAI.integrator.azimuthal import AzimuthalIntegrator as PyFAI

from pvagpu import ntnda
from pvagpu.analytics import AzimuthalIntegrator
from pvagpu.analytics.poni import parse_poni, read_poni
from pvagpu.errors import ConfigurationError, FrameError

from .common import RNG, both_paths, run

SHAPE = (150, 210)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("azim")
    det = Detector(100e-6, 120e-6, max_shape=SHAPE)
    ai = PyFAI(dist=0.08, poni1=0.004, poni2=0.015, rot1=0.03, rot2=-0.02, rot3=0.2,
               detector=det, wavelength=1.2e-10)
    ai.save(str(tmp / "geometry.poni"))
    mask = (RNG.random(SHAPE) < 0.03).astype(np.int8)
    dark = RNG.normal(20, 2, SHAPE).astype(np.float32)
    flat = RNG.normal(1, 0.05, SHAPE).astype(np.float32)
    for name, a in (("mask", mask), ("dark", dark), ("flat", flat)):
        np.save(tmp / f"{name}.npy", a)
    return tmp, ai, mask, dark, flat


def pyfai(ai, image, npt, unit, **kw):
    return ai.integrate1d(image, npt, unit=unit, method=("no", "csr", "cython"), **kw)


def check(value, ref):
    filled = value["count"] > 0
    assert np.array_equal(value["count"], ref.count)       # the same pixels in each bin
    np.testing.assert_allclose(value["radial"], ref.radial, rtol=1e-12)
    got, want = value["value"][filled], ref.intensity[filled]
    assert np.all(np.abs(got - want) <= 1e-4 * np.abs(want))
    assert np.all(ref.intensity[~filled] == 0) and np.all(value["value"][~filled] == 0)


@pytest.mark.parametrize("config", both_paths({}))
@pytest.mark.parametrize("unit", ["q_nm^-1", "2th_deg"])
@pytest.mark.parametrize("corrections", [False, True])
def test_matches_pyfai_integrate1d(setup, config, unit, corrections):
    tmp, ai, mask, dark, flat = setup
    images = [RNG.poisson(200, SHAPE).astype(np.uint16) for _ in range(2)]
    args = {**config, "poni": str(tmp / "geometry.poni"), "npt": 300, "unit": unit}
    kw = {}
    if corrections:
        args.update(mask=str(tmp / "mask.npy"), dark=str(tmp / "dark.npy"),
                    flat=str(tmp / "flat.npy"))
        kw = {"mask": mask, "dark": dark, "flat": flat}
    _, values = run(AzimuthalIntegrator, args, images)
    for image, value in zip(images, values):
        check(value, pyfai(ai, image, 300, unit, **kw))


def test_radial_range_and_no_solid_angle(setup):
    tmp, ai, *_ = setup
    image = RNG.poisson(50, SHAPE).astype(np.float32)
    args = {"poni": str(tmp / "geometry.poni"), "npt": 100, "unit": "2th_deg",
            "radialRange": [3.0, 12.0], "solidAngle": False}
    _, values = run(AzimuthalIntegrator, args, [image])
    check(values[0], ai.integrate1d(image, 100, unit="2th_deg", radial_range=(3.0, 12.0),
                                    correctSolidAngle=False, method=("no", "csr", "cython")))


def test_poni_parser_reads_pyfai_files(setup):
    tmp, ai, *_ = setup
    g = read_poni(str(tmp / "geometry.poni"))
    assert (g.dist, g.poni1, g.poni2) == (ai.dist, ai.poni1, ai.poni2)
    assert (g.rot1, g.rot2, g.rot3, g.wavelength) == (ai.rot1, ai.rot2, ai.rot3, ai.wavelength)
    assert (g.pixel1, g.pixel2, g.shape) == (100e-6, 120e-6, SHAPE)
    np.testing.assert_allclose(g.tth(SHAPE), ai.array_from_unit(SHAPE, "center", "2th_rad",
                                                                scale=False), rtol=1e-14)
    np.testing.assert_allclose(g.chi(SHAPE), ai.array_from_unit(SHAPE, "center", "chi_rad",
                                                                scale=False), atol=1e-12)
    assert np.array_equal(g.solid_angle(SHAPE), ai.solidAngleArray(SHAPE))
    v1 = parse_poni("PixelSize1: 5e-5\nPixelSize2: 6e-5\nDistance: 0.1\nPoni1: 0.01\n"
                    "Poni2: 0.02\nRot1: 0\nRot2: 0\nRot3: 0\nWavelength: 1e-10\n")
    assert (v1.pixel1, v1.pixel2, v1.shape) == (5e-5, 6e-5, None)


@pytest.mark.parametrize("text, match", [
    ("Distance: 0.1\nPoni1: x\n", "not a number"),
    ("garbage\n", "Key: value"),
    ("Distance: 0.1\n", "no poni1, poni2"),
    ("Detector_config: {pixel1: 1}\nDistance: 1\nPoni1: 0\nPoni2: 0\n", "not JSON"),
])
def test_unparsable_poni_is_a_configuration_error(tmp_path, text, match):
    (tmp_path / "bad.poni").write_text(text)
    with pytest.raises(ConfigurationError, match=match):
        AzimuthalIntegrator({"poni": str(tmp_path / "bad.poni"), "pixel1": 1e-4,
                             "pixel2": 1e-4, "unit": "2th_deg"})


def test_bad_configuration_and_frames(setup, tmp_path):
    tmp, *_ = setup
    poni = str(tmp / "geometry.poni")
    with pytest.raises(ConfigurationError, match="does not exist"):
        AzimuthalIntegrator({"poni": poni, "mask": str(tmp_path / "none.npy")})
    np.save(tmp_path / "small.npy", np.zeros((5, 5)))
    with pytest.raises(ConfigurationError, match="shapes disagree"):
        AzimuthalIntegrator({"poni": poni, "dark": str(tmp_path / "small.npy")})
    with pytest.raises(ConfigurationError, match="cannot read PONI"):
        AzimuthalIntegrator({"poni": str(tmp_path / "missing.poni")})
    p, _ = run(AzimuthalIntegrator, {"poni": poni, "npt": 50}, [np.ones(SHAPE, np.uint16)])
    with pytest.raises(FrameError, match="do not match"):
        p.process(ntnda.value_from_image(np.ones((10, 10), np.uint16), 2))
    with pytest.raises(ConfigurationError, match="npt"):
        p.configure({"npt": 0})
    p.configure({"npt": 60})
    p.process(ntnda.value_from_image(np.ones(SHAPE, np.uint16), 3))
    p.flush(wait=True)
    assert len(p.dataPublisher.values[-1]["value"]) == 60
