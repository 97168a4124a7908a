"""Backend choice: --gpu parsing (the one parser) and select_backend."""
import types
from pathlib import Path

import numpy as np
import pytest

from pvagpu.errors import ConfigurationError
from pvagpu.gpu import backend as gpu_backend, parse_gpu_spec, processor_stats, select_backend


@pytest.mark.parametrize("spec, expect", [
    ("auto", "auto"), (None, "auto"), ("", "auto"), ("none", "none"), ("NONE", "none"),
    ("cpu", "none"), ("0", 0), (1, 1), ("  2 ", 2), (True, "auto"), (False, "none")])
def test_parse_gpu_spec(spec, expect):
    assert parse_gpu_spec(spec) == expect


@pytest.mark.parametrize("bad", ["gpu0", "-1", -3, "1.5"])
def test_parse_gpu_spec_rejects(bad):
    with pytest.raises(ConfigurationError, match="--gpu"):
        parse_gpu_spec(bad)


def test_backend_without_cupy(monkeypatch):
    monkeypatch.setattr(gpu_backend, "_probe_cupy", lambda: (None, "cupy is not available"))
    auto = select_backend("auto")
    assert auto.name == "numpy" and auto.xp is np and not auto.is_gpu
    assert "cupy is not available" in auto.describe()
    assert select_backend("none").describe().startswith("numpy")
    with pytest.raises(ConfigurationError, match="--gpu 0: cupy is not available"):
        select_backend("0")


def test_backend_with_a_fake_device(monkeypatch):
    used = []
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        Device=lambda i: types.SimpleNamespace(use=lambda: used.append(i)),
        runtime=types.SimpleNamespace(
            getDeviceProperties=lambda i: {"name": b"Fake GPU", "major": 9, "minor": 0})))
    monkeypatch.setattr(gpu_backend, "_probe_cupy", lambda: (fake, 2))
    b = select_backend("1")
    assert b.is_gpu and b.xp is fake and b.device_id == 1 and used == [1]
    assert b.describe() == "cupy on GPU 1 (Fake GPU, sm_90)"
    assert select_backend("auto").device_id == 0
    with pytest.raises(ConfigurationError, match="no CUDA device 2 .*has 2"):
        select_backend(2)


def test_the_real_probe_says_why_there_is_no_gpu():
    backend = select_backend("auto")
    if backend.is_gpu:
        pytest.skip("this machine has a GPU")
    assert backend.reason


def test_asnumpy_of_a_host_array_is_no_copy():
    a = np.arange(4)
    assert select_backend("none").asnumpy(a) is a


# 99: certainly more devices than any machine running the tests has
@pytest.mark.parametrize("flag, explicit_error", [("none", False), ("auto", False), ("99", True)])
def test_consumer_gpu_flag_reaches_the_processor(flag, explicit_error):
    """pvagpu-consumer --gpu is the processor's configDict['gpu']; without
    CuPy, auto falls back to NumPy and an explicit device that is not
    there is an error."""
    from pvagpu.cli.consumer import _consumer_from_args, build_parser

    have_gpu = select_backend("auto").is_gpu
    examples = Path(__file__).resolve().parents[2] / "examples"
    args = build_parser().parse_args([
        "-ic", "test:gpu:flag", "-pf", str(examples / "gpu_frame_stats.py"),
        "-pc", "GpuFrameStats", "--gpu", flag])
    consumer = _consumer_from_args(args)
    processor = consumer.processor
    assert processor.gpuSpec == flag
    if explicit_error:
        with pytest.raises(ConfigurationError):
            processor.start()
        return
    processor.start()
    try:
        if not have_gpu:
            assert processor.xp is np
            assert processor_stats(processor)["gpuBackend"].startswith("numpy")
    finally:
        processor.stop()
