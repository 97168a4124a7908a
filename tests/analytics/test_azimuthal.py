"""AzimuthalIntegrator against pyFAI's integrate1d and, for the 2-D cake,
integrate2d (no pixel splitting, CSR, cython) on the same PONI geometry,
mask, dark, flat, polarisation factor and image; the PONI parser; bad
configuration and reconfiguration."""
import numpy as np
import pyFAI
import pytest
from pyFAI.detectors import Detector
from pyFAI.integrator.azimuthal import AzimuthalIntegrator as PyFAI

from pvagpu import ntnda
from pvagpu.analytics import AzimuthalIntegrator, Chain
from pvagpu.analytics.poni import parse_poni, read_poni
from pvagpu.errors import ConfigurationError, FrameError

from .common import RNG, both_paths, image_of, run

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


#: no polarisation correction, a synchrotron's horizontal polarisation, a vertical one
POLARIZATIONS = [None, 0.99, -0.5]


@pytest.mark.parametrize("config", both_paths({}))
@pytest.mark.parametrize("unit", ["q_nm^-1", "2th_deg"])
@pytest.mark.parametrize("corrections", [False, True])
@pytest.mark.parametrize("polarization", POLARIZATIONS)
def test_matches_pyfai_integrate1d(setup, config, unit, corrections, polarization):
    tmp, ai, mask, dark, flat = setup
    images = [RNG.poisson(200, SHAPE).astype(np.uint16) for _ in range(2)]
    args = {**config, "poni": str(tmp / "geometry.poni"), "npt": 300, "unit": unit,
            "polarizationFactor": polarization}
    kw = {"polarization_factor": polarization}
    if corrections:
        args.update(mask=str(tmp / "mask.npy"), dark=str(tmp / "dark.npy"),
                    flat=str(tmp / "flat.npy"))
        kw.update(mask=mask, dark=dark, flat=flat)
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


def test_polarization_offset_matches_pyfai(setup):
    """``polarizationOffset`` is pyFAI's axis offset (rad): the profile
    matches pyFAI's with ``polarization_factor=[factor, offset]`` and
    differs from the one without the offset."""
    tmp, ai, *_ = setup
    image = RNG.poisson(100, SHAPE).astype(np.float32)
    args = {"poni": str(tmp / "geometry.poni"), "npt": 100, "unit": "2th_deg",
            "polarizationFactor": 0.9, "azimuthalRange": [-90, 0]}
    _, values = run(AzimuthalIntegrator, {**args, "polarizationOffset": 0.6}, [image, image])
    check(values[0], pyfai(ai, image, 100, "2th_deg", polarization_factor=[0.9, 0.6],
                           azimuth_range=(-90, 0)))
    _, plain = run(AzimuthalIntegrator, args, [image])
    filled = values[0]["count"] > 0
    assert np.max(np.abs(values[0]["value"][filled] / plain[0]["value"][filled] - 1)) > 1e-3


@pytest.mark.parametrize("bad, match", [
    ({"polarizationFactor": 1.5}, "'polarizationFactor' must be <= 1"),
    ({"polarizationFactor": -1.01}, "'polarizationFactor' must be >= -1"),
    ({"polarizationFactor": "0.99"}, "'polarizationFactor' must be a number"),
    ({"polarizationFactor": True}, "'polarizationFactor' must be a number"),
    ({"polarizationFactor": float("nan")}, "'polarizationFactor' must be finite"),
    ({"polarizationOffset": "90deg"}, "'polarizationOffset' must be a number"),
])
def test_bad_polarization_is_refused_and_keeps_the_running_one(setup, bad, match):
    tmp, ai, *_ = setup
    args = {"poni": str(tmp / "geometry.poni"), "npt": 50, "unit": "2th_deg",
            "polarizationFactor": 0.99}
    with pytest.raises(ConfigurationError, match=match):
        AzimuthalIntegrator({**args, **bad})
    images = [RNG.poisson(100, SHAPE).astype(np.float32) for _ in range(2)]
    p, values = run(AzimuthalIntegrator, args, images[:1])
    with pytest.raises(ConfigurationError, match=match):
        p.configure(bad)
    p.process(ntnda.value_from_image(images[1], 2))
    p.flush(wait=True)
    assert len(values) == 2
    for image, value in zip(images, values):
        check(value, pyfai(ai, image, 50, "2th_deg", polarization_factor=0.99))


def test_polarization_reconfigured_while_frames_flow(setup):
    tmp, ai, *_ = setup
    images = [RNG.poisson(100, SHAPE).astype(np.float32) for _ in range(3)]
    p, values = run(AzimuthalIntegrator, {"poni": str(tmp / "geometry.poni"), "npt": 50,
                                          "unit": "q_nm^-1"}, images[:1])
    for unique_id, factor in ((2, -0.5), (3, None)):
        p.configure({"polarizationFactor": factor})
        p.process(ntnda.value_from_image(images[unique_id - 1], unique_id))
        p.flush(wait=True)
    assert len(values) == 3
    for image, value, factor in zip(images, values, (None, -0.5, None)):
        check(value, pyfai(ai, image, 50, "q_nm^-1", polarization_factor=factor))


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
    for factor, offset in ((0.99, 0.0), (-0.5, 0.0), (0.9, 0.4)):
        mine = g.polarization(SHAPE, factor, offset)
        assert mine.dtype == np.float32
        np.testing.assert_allclose(mine, ai.polarization(SHAPE, factor, axis_offset=offset),
                                   rtol=1e-6)
        assert np.ptp(mine) > 0.01                     # not a vacuous comparison
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


# -- the 2-D cake ---------------------------------------------------------------------------

def pyfai_at(poni, chi_from_zero):
    """A pyFAI integrator of ``poni`` with chi in [0, 360) (else [-180, 180))."""
    ai = pyFAI.load(poni)
    if chi_from_zero:
        ai.setChiDiscAtZero()
    return ai


def check_cake(value, ref, step):
    """The published cake against pyFAI's Integrate2dResult ``ref``."""
    frame = ntnda.frame_from_value(value)
    image = frame.image
    assert image.dtype == np.float32 and image.shape == ref.intensity.shape
    count = step.table(SHAPE).count.reshape(image.shape)
    assert np.array_equal(count, ref.count)                 # the same pixels in each bin
    filled = count > 0
    assert filled.mean() > 0.2                              # not a vacuous comparison
    np.testing.assert_allclose(frame.attribute("radial"), ref.radial, rtol=1e-12)
    np.testing.assert_allclose(frame.attribute("azimuthal"), ref.azimuthal, rtol=1e-12,
                               atol=1e-9)
    assert frame.attribute("radialUnit") == str(ref.radial_unit)
    assert frame.attribute("azimuthalUnit") == "chi_deg"
    got, want = image[filled], ref.intensity[filled]
    assert np.all(np.abs(got - want) <= 1e-4 * np.abs(want))
    assert np.all(ref.intensity[~filled] == 0) and np.all(image[~filled] == 0)


@pytest.mark.parametrize("config", both_paths({}))
@pytest.mark.parametrize("unit", ["q_nm^-1", "2th_deg"])
@pytest.mark.parametrize("corrections", [False, True])
@pytest.mark.parametrize("polarization", POLARIZATIONS)
def test_cake_matches_pyfai_integrate2d(setup, config, unit, corrections, polarization):
    tmp, ai, mask, dark, flat = setup
    images = [RNG.poisson(200, SHAPE).astype(np.uint16) for _ in range(2)]
    args = {**config, "poni": str(tmp / "geometry.poni"), "npt": 60, "nAzimuthal": 36,
            "unit": unit, "polarizationFactor": polarization}
    kw = {"polarization_factor": polarization}
    if corrections:
        args.update(mask=str(tmp / "mask.npy"), dark=str(tmp / "dark.npy"),
                    flat=str(tmp / "flat.npy"))
        kw.update(mask=mask, dark=dark, flat=flat)
    p, values = run(AzimuthalIntegrator, args, images)
    assert len(values) == 2
    for image, value in zip(images, values):
        check_cake(value, ai.integrate2d(image, 60, 36, unit=unit,
                                         method=("no", "csr", "cython"), **kw), p.step)


def test_cake_ending_a_chain_keeps_its_axis_attributes(setup):
    """A Chain whose last step is the cake publishes the same cake, axes
    included, as the processor alone (the axes follow the shape the
    previous steps give: Rotation 180 keeps it)."""
    tmp, ai, *_ = setup
    image = RNG.poisson(80, SHAPE).astype(np.uint16)
    cake = {"type": "AzimuthalIntegrator", "poni": str(tmp / "geometry.poni"), "npt": 30,
            "nAzimuthal": 12, "unit": "q_nm^-1"}
    p, values = run(Chain, {"steps": [{"type": "Rotation", "rotate": 180}, cake]},
                    [image[::-1, ::-1]])
    check_cake(values[0], ai.integrate2d(image, 30, 12, unit="q_nm^-1",
                                         method=("no", "csr", "cython")), p.step.steps[-1])


@pytest.mark.parametrize("azimuthal_range", [[-90.0, 135.0], [-180, 180], [90.0, 300.0],
                                             [0, 360]])
def test_cake_ranges_match_pyfai(setup, azimuthal_range):
    tmp, _, mask, *_ = setup
    poni = str(tmp / "geometry.poni")
    ai = pyfai_at(poni, azimuthal_range[1] > 180)
    image = RNG.poisson(50, SHAPE).astype(np.float32)
    args = {"poni": poni, "npt": 40, "unit": "2th_deg", "radialRange": [4.0, 14.0],
            "nAzimuthal": 20, "azimuthalRange": azimuthal_range, "solidAngle": False,
            "mask": str(tmp / "mask.npy")}
    p, values = run(AzimuthalIntegrator, args, [image])
    check_cake(values[0], ai.integrate2d(
        image, 40, 20, unit="2th_deg", radial_range=(4.0, 14.0), azimuth_range=azimuthal_range,
        correctSolidAngle=False, mask=mask, method=("no", "csr", "cython")), p.step)


@pytest.mark.parametrize("azimuthal_range", [[-60.0, 90.0], [100.0, 250.0]])
def test_sector_profile_matches_pyfai_integrate1d(setup, azimuthal_range):
    tmp, *_ = setup
    poni = str(tmp / "geometry.poni")
    ai = pyfai_at(poni, azimuthal_range[1] > 180)
    image = RNG.poisson(80, SHAPE).astype(np.uint16)
    args = {"poni": poni, "npt": 80, "unit": "q_nm^-1", "azimuthalRange": azimuthal_range}
    _, values = run(AzimuthalIntegrator, args, [image])
    check(values[0], pyfai(ai, image, 80, "q_nm^-1", azimuth_range=azimuthal_range))


@pytest.mark.parametrize("bad, match", [
    ({"nAzimuthal": 0}, "'nAzimuthal' must be >= 1"),
    ({"nAzimuthal": 2.5}, "'nAzimuthal' must be an integer"),
    ({"azimuthalRange": [-200, 0]}, "-180 <= min < max <= 360"),
    ({"azimuthalRange": [0, 400]}, "-180 <= min < max <= 360"),
    ({"azimuthalRange": [30, 10]}, "min < max"),
    ({"azimuthalRange": [-10, 200]}, "crosses both chi discontinuities"),
    ({"azimuthalRange": "0:90"}, "must be \\[min, max\\]"),
])
def test_bad_cake_configuration_is_refused_and_keeps_the_running_one(setup, bad, match):
    tmp, *_ = setup
    args = {"poni": str(tmp / "geometry.poni"), "npt": 30, "nAzimuthal": 12}
    with pytest.raises(ConfigurationError, match=match):
        AzimuthalIntegrator({**args, **bad})
    p, values = run(AzimuthalIntegrator, args, [np.ones(SHAPE, np.uint16)])
    with pytest.raises(ConfigurationError, match=match):
        p.configure(bad)
    p.process(ntnda.value_from_image(np.ones(SHAPE, np.uint16), 2))
    p.flush(wait=True)
    assert [image_of(v).shape for v in values] == [(12, 30), (12, 30)]


def test_cake_reconfigured_while_frames_flow(setup):
    tmp, *_ = setup
    poni = str(tmp / "geometry.poni")
    p, values = run(AzimuthalIntegrator, {"poni": poni, "npt": 30, "nAzimuthal": 12},
                    [RNG.poisson(20, SHAPE).astype(np.uint16)])
    p.configure({"nAzimuthal": 18, "azimuthalRange": [0, 360]})
    attributes = [{"name": "Exposure", "value": ("d", 0.5)},
                  {"name": "radial", "value": ("s", "the detector's, replaced")}]
    p.process(ntnda.value_from_image(RNG.poisson(20, SHAPE).astype(np.uint16), 2,
                                     attributes=attributes))
    p.flush(wait=True)
    first, second = (ntnda.frame_from_value(v) for v in values)
    assert (first.image.shape, second.image.shape) == ((12, 30), (18, 30))
    names = [a["name"] for a in second.attributes]
    assert second.attribute("Exposure") == 0.5 and names.count("radial") == 1
    assert second.attribute("radial").shape == (30,)
    np.testing.assert_allclose(second.attribute("azimuthal"), np.arange(10, 360, 20.0), rtol=1e-6)
    with pytest.raises(ConfigurationError, match="output channel's type"):
        p.configure({"nAzimuthal": None})               # the cake -> the 1-D profile
    profile = AzimuthalIntegrator({"poni": poni, "npt": 30, "gpu": "none"})
    with pytest.raises(ConfigurationError, match="output channel's type"):
        profile.configure({"nAzimuthal": 12})           # even before the first frame
    assert profile.getOutputFieldTypes() == {"radial": "ad", "value": "ad", "count": "ad"}
