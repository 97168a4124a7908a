"""Decoding staged payloads: the dispatch rule, the bslz4 block plan that
feeds nvcomp (THE block walk of pvagpu.codecs), the host decoder, and the
device decoder on a fake device (host memory standing in for device
memory, a fake nvcomp following the C API's contract)."""
import logging

import numpy as np
import pytest

from pvagpu import codecs
from pvagpu.errors import CorruptPayloadError
from pvagpu.gpu.decode import (DeviceDecoder, HostDecoder, bslz4_blocks, decodes_on_device,
                               lz4_blocks_on_host)
from pvagpu.gpu.staging import Slot, Staged, slot_size_for
from pvagpu.kernels.bitunshuffle import bitunshuffle_reference

from .fakes import RNG, FakeCudaDevice, FakeNvcomp, FakeStream, dev

# ---------------------------------------------------------------------------
# the bslz4 block plan (what nvcomp is given) and corrupt payloads
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, n", [(np.uint8, 8192 * 3 + 1000 + 5), (np.uint16, 4096 + 3),
                                      (np.int32, 100), (np.float64, 1024 * 2), (np.uint16, 7)])
def test_block_plan_decodes_like_the_host_codec(dtype, n):
    data = (RNG.poisson(3, n) * 3).astype(dtype)
    payload = codecs.encode("bslz4", data)
    plan = bslz4_blocks(payload, data.dtype, data.nbytes)
    shuffled = lz4_blocks_on_host(payload, plan)
    out = bitunshuffle_reference(shuffled, n, data.dtype.itemsize, plan.block_elements)
    assert np.array_equal(out.view(dtype), data)
    assert plan.tail_bytes == (n % 8) * data.dtype.itemsize
    assert int(plan.out_sizes.sum()) + plan.tail_bytes == data.nbytes
    assert list(plan.out_offsets) == list(np.cumsum(plan.out_sizes) - plan.out_sizes)


def test_block_plan_reads_the_hdf5_header_and_its_block_size():
    data = RNG.integers(0, 1000, 5000).astype(np.uint16)
    payload = codecs.encode("bslz4", data, block_size=512, hdf5_header=True)
    plan = bslz4_blocks(payload, data.dtype, data.nbytes)
    assert plan.block_elements == 512 and plan.comp_offsets[0] == 12 + 4
    out = bitunshuffle_reference(lz4_blocks_on_host(payload, plan), data.size, 2, 512)
    assert np.array_equal(out.view(np.uint16), data)


def _corruptions():
    data = RNG.poisson(2, 20000).astype(np.uint16)
    good = codecs.encode("bslz4", data)
    yield "truncated", good[:-10], data
    yield "extended", np.concatenate([good, np.zeros(3, np.uint8)]), data
    bad_len = good.copy()
    bad_len[0:4] = np.frombuffer((10 ** 6).to_bytes(4, "big"), np.uint8)
    yield "length past the end", bad_len, data
    zero = good.copy()
    zero[0:4] = 0
    yield "zero length", zero, data


@pytest.mark.parametrize("what, payload, data", list(_corruptions()),
                         ids=[c[0] for c in _corruptions()])
def test_block_plan_rejects_corrupt_framing(what, payload, data):
    with pytest.raises(CorruptPayloadError, match="bslz4"):
        bslz4_blocks(payload, data.dtype, data.nbytes)
    # ... exactly as the host codec does: one block walk
    with pytest.raises(CorruptPayloadError, match="bslz4"):
        codecs.decode("bslz4", payload, data.dtype, data.nbytes)


def test_which_codecs_the_device_decodes():
    data = np.arange(64, dtype=np.uint16)
    assert decodes_on_device("", codecs.as_bytes(data), data.nbytes)
    assert decodes_on_device("bslz4", codecs.encode("bslz4", data), data.nbytes)
    assert decodes_on_device("lz4", codecs.encode("lz4", data), data.nbytes)
    assert not decodes_on_device("lz4", codecs.encode("lz4hdf5", data), data.nbytes)
    assert not decodes_on_device("blosc", codecs.encode("blosc", data), data.nbytes)


# ---------------------------------------------------------------------------
# the decoders
# ---------------------------------------------------------------------------

def _staged(payload, size, device_array=np.array):
    payload = codecs.as_bytes(payload)
    host = np.zeros(slot_size_for(payload.size, size), np.uint8)
    host[:payload.size] = payload
    slot = Slot(0, host, device_array(host.copy()), FakeStream())
    return Staged(slot, payload.size, host[:payload.size], slot.device[:payload.size])


@pytest.mark.parametrize("name", ["", "lz4", "bslz4"])
def test_host_decoder_is_the_host_codec(name):
    data = (RNG.poisson(3, 5000)).astype(np.int32)
    payload = codecs.encode(name, data) if name else codecs.as_bytes(data)
    decoder = HostDecoder()
    assert decoder.decodes(name, payload, data.nbytes)
    decoder.warm_up()
    out = decoder.decode(name, _staged(payload, data.nbytes), data.dtype, data.nbytes)
    assert out.dtype == data.dtype and np.array_equal(out, data)
    assert not decoder.decodes("zlib", payload, data.nbytes)


def test_host_decoder_checks_the_size_of_uncompressed_payloads():
    data = np.arange(10, dtype=np.uint16)
    with pytest.raises(CorruptPayloadError, match="uncompressedSize 22"):
        HostDecoder().decode("", _staged(codecs.as_bytes(data), 22), data.dtype, 22)


def _decode_on_fake_device(name, payload, dtype, size, nvcomp=None):
    decoder = DeviceDecoder(FakeCudaDevice(), nvcomp or FakeNvcomp())
    return decoder, decoder.decode(name, _staged(payload, size, dev), np.dtype(dtype), size)


@pytest.mark.parametrize("dtype, n", [(np.uint8, 8192 * 2 + 1000 + 5), (np.uint16, 4096 * 3 + 8),
                                      (np.int32, 2048 + 7), (np.float64, 1024 * 2 + 100 + 3),
                                      (np.uint16, 5), (np.float32, 0)])
def test_device_decoder_on_a_fake_device(dtype, n):
    data = (RNG.poisson(3, n) * 3).astype(dtype)
    for name in ("bslz4", "lz4", ""):
        payload = codecs.encode(name, data) if name else codecs.as_bytes(data)
        decoder, out = _decode_on_fake_device(name, payload, dtype, data.nbytes)
        assert out.dtype == data.dtype and out.shape == data.shape, name
        assert np.array_equal(np.asarray(out), data), name
    # one nvcomp call for all the blocks of a bslz4 frame
    decoder, out = _decode_on_fake_device("bslz4", codecs.encode("bslz4", data), dtype,
                                          data.nbytes)
    assert decoder.nvcomp.calls == ([] if n < 8 else
                                    [bslz4_blocks(codecs.encode("bslz4", data), data.dtype,
                                                  data.nbytes).n_blocks])


def test_device_decoder_on_a_fake_device_with_an_hdf5_header():
    data = RNG.integers(0, 1000, 5000).astype(np.uint16)
    payload = codecs.encode("bslz4", data, block_size=512, hdf5_header=True)
    _, out = _decode_on_fake_device("bslz4", payload, np.uint16, data.nbytes)
    assert np.array_equal(np.asarray(out), data)


def test_device_decoder_checks_every_status_and_size():
    data = (RNG.poisson(3, 20000) * 3).astype(np.uint16)
    good = codecs.encode("bslz4", data)
    bad = good.copy()
    clen = int.from_bytes(bad[:4].tobytes(), "big")
    bad[4:4 + clen] = 0xFF                      # framing intact, block 0 undecodable
    with pytest.raises(CorruptPayloadError, match=r"nvcomp: 1 of 5 LZ4 blocks failed "
                                                  r"\(first: block 0, status 12"):
        _decode_on_fake_device("bslz4", bad, np.uint16, data.nbytes)
    with pytest.raises(CorruptPayloadError, match="nvcomp: 5 of 5"):
        _decode_on_fake_device("bslz4", good, np.uint16, data.nbytes, FakeNvcomp(15))
    raw = codecs.encode("lz4", data)
    with pytest.raises(CorruptPayloadError, match="nvcomp: 1 of 1"):
        _decode_on_fake_device("lz4", raw[:-16], np.uint16, data.nbytes)
    with pytest.raises(CorruptPayloadError, match="bslz4"):
        _decode_on_fake_device("bslz4", good[:-10], np.uint16, data.nbytes)
    with pytest.raises(CorruptPayloadError, match="uncompressedSize"):
        _decode_on_fake_device("", codecs.as_bytes(data), np.uint16, data.nbytes + 2)
    with pytest.raises(CorruptPayloadError, match="'zlib' is not decoded on the device"):
        _decode_on_fake_device("zlib", codecs.encode("zlib", data), np.uint16, data.nbytes)
    # and the next frame decodes
    _, out = _decode_on_fake_device("bslz4", good, np.uint16, data.nbytes)
    assert np.array_equal(np.asarray(out), data)


def test_device_decoder_asks_nvcomp_for_its_temporary_buffer():
    class Temp(FakeNvcomp):
        def temp_bytes(self, n, max_chunk, total, stream_ptr):
            self.asked = (n, max_chunk, total)
            return 1024

    data = (RNG.poisson(3, 20000)).astype(np.uint16)
    nvcomp = Temp()
    _, out = _decode_on_fake_device("bslz4", codecs.encode("bslz4", data), np.uint16,
                                    data.nbytes, nvcomp)
    assert np.array_equal(np.asarray(out), data)
    assert nvcomp.asked == (5, 8192, data.nbytes)          # 20000 % 8 == 0: no raw tail


def test_warm_up_launches_the_unshuffle_kernel_for_every_element_size_and_waits():
    """start() on a GPU compiles the kernel before the first frame."""
    device = FakeCudaDevice()
    DeviceDecoder(device, nvcomp=FakeNvcomp()).warm_up()
    assert device.log == [("launch", k, k, 64, 64 * k) for k in (1, 2, 4, 8)] + [("synchronize",)]


def test_without_nvcomp_lz4_and_bslz4_are_left_to_the_host(caplog, monkeypatch):
    """nvcomp that cannot be loaded is found out once and logged once; the
    pipeline then decodes lz4 and bslz4 on the host instead of failing every
    frame."""
    import pvagpu.gpu.decode as decode_module

    def missing():
        raise OSError("libnvcomp.so.6: cannot open shared object file")
    monkeypatch.setattr(decode_module, "Nvcomp", missing)
    decoder = DeviceDecoder(FakeCudaDevice())
    data = np.arange(64, dtype=np.uint16)
    with caplog.at_level(logging.WARNING):
        for name in ("bslz4", "lz4", "bslz4"):
            assert not decoder.decodes(name, codecs.encode(name, data), data.nbytes)
    assert decoder.decodes("", codecs.as_bytes(data), data.nbytes)
    assert not decoder.decodes("zlib", codecs.encode("zlib", data), data.nbytes)
    assert decoder.nvcomp_problem().startswith("OSError: libnvcomp.so.6")
    assert sum("nvcomp cannot be used" in r.getMessage() for r in caplog.records) == 1


def test_with_nvcomp_the_device_decodes_lz4_and_bslz4(monkeypatch):
    import pvagpu.gpu.decode as decode_module
    monkeypatch.setattr(decode_module, "Nvcomp", FakeNvcomp)
    assert isinstance(DeviceDecoder(FakeCudaDevice()).nvcomp, FakeNvcomp)   # made on first use
    decoder = DeviceDecoder(FakeCudaDevice())
    data = np.arange(64, dtype=np.uint16)
    assert decoder.decodes("bslz4", codecs.encode("bslz4", data), data.nbytes)
    assert decoder.nvcomp_problem() is None and isinstance(decoder.nvcomp, FakeNvcomp)
