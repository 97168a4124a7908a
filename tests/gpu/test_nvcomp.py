"""The nvcomp binding (pvagpu.gpu.nvcomp): its version check and by-value
options struct against a fake library, and the host-only calls of the real
one when it is installed."""
import pytest

from pvagpu.errors import CorruptPayloadError
from pvagpu.gpu import nvcomp as nvcomp_module
from pvagpu.gpu.decode import DeviceDecoder

from .fakes import FakeCudaDevice, FakeFunction, fake_nvcomp_lib


def test_the_nvcomp_binding_refuses_another_major_version(monkeypatch):
    """nvcomp 5 has other LZ4 signatures (no ...DecompressGetTempSize): a
    library of another major is refused, and the device decoder then leaves
    lz4/bslz4 to the host instead of failing every frame."""
    Nvcomp = nvcomp_module.Nvcomp
    nv = Nvcomp(fake_nvcomp_lib(6000))
    assert nv.temp_bytes(3, 8192, 3 * 8192, 0) == 3 * 4096
    with pytest.raises(RuntimeError, match=r"nvcomp 5\.1\.2 .*6\.x"):
        Nvcomp(fake_nvcomp_lib(5102))
    import pvagpu.gpu.decode as decode_module
    monkeypatch.setattr(decode_module, "Nvcomp", lambda: Nvcomp(fake_nvcomp_lib(5000)))
    assert "RuntimeError: nvcomp 5.0.0" in DeviceDecoder(FakeCudaDevice()).nvcomp_problem()


def test_failed_calls_of_the_binding_raise():
    lib = fake_nvcomp_lib(6000)
    nv = nvcomp_module.Nvcomp(lib)
    lib.nvcompBatchedLZ4DecompressGetTempSize = FakeFunction(lambda *args: 10)
    with pytest.raises(RuntimeError, match="GetTempSize failed: status 10"):
        nv.temp_bytes(1, 8192, 8192, 0)
    calls = []
    lib.nvcompBatchedLZ4DecompressAsync = FakeFunction(lambda *args: calls.append(args) or 0)
    nv.decompress(1, 2, 3, 4, 5, 0, 0, 8, 9, 10)
    assert calls[0][5] is None and calls[0][8] is nv.opts     # no temp buffer: NULL
    lib.nvcompBatchedLZ4DecompressAsync = FakeFunction(lambda *args: 11)
    with pytest.raises(CorruptPayloadError, match="could not start: status 11"):
        nv.decompress(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)


def test_the_nvcomp_binding_against_the_installed_library():
    """Host-only calls of the real libnvcomp (no device needed): the symbol
    names, the version and the by-value options struct of the binding."""
    pytest.importorskip("nvidia.libnvcomp")
    nv = nvcomp_module.Nvcomp()
    assert nv.version // 1000 == 6
    assert nv.temp_bytes(4, 8192, 4 * 8192, 0) >= 0
