"""Every device path against the CPU path, bit for bit (needs a CUDA device
with CuPy and nvcomp; skips cleanly without one): the CupyDevice interface,
device decode of every codec, the frame pipeline's ordering on real
streams, batches, statistics and the kernel warm-up."""
import numpy as np
import pytest

cp = pytest.importorskip("cupy")

from pvagpu import codecs, ntnda  # noqa: E402
from pvagpu.errors import CorruptPayloadError  # noqa: E402
from pvagpu.gpu import (GpuAdImageProcessor, processor_stats,  # noqa: E402
                        select_backend)
from pvagpu.gpu.device import CupyDevice  # noqa: E402

pytestmark = pytest.mark.gpu


def _has_device():
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


if not _has_device():
    pytest.skip("no CUDA device", allow_module_level=True)

RNG = np.random.default_rng(11)
DTYPES = [np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.float32, np.int64, np.float64]


def _image(dtype, shape=(123, 517)):
    return (RNG.poisson(5, shape) * 3).astype(dtype)


@pytest.fixture(scope="module")
def backend():
    return select_backend("auto")


class Keep(GpuAdImageProcessor):
    def __init__(self, configDict=None):
        GpuAdImageProcessor.__init__(self, configDict)
        self.images = []

    def processFrame(self, frame):
        self.images.append(self.xp.asnumpy(frame.image))
        return frame.image


from gpu.fakes import Recorder  # noqa: E402


def _processor(backend, **config):
    p = Keep(config)
    p.setBackend(backend)
    p.dataPublisher = Recorder()
    return p


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("codec", ["", "lz4", "bslz4", "blosc", "zlib", "lz4hdf5"])
def test_device_decode_matches_the_cpu(backend, dtype, codec):
    image = _image(dtype)
    value = ntnda.value_from_image(image, 5, codec=codec)
    cpu = ntnda.frame_from_value(value).image
    p = _processor(backend)
    p.process(value)
    p.flush(wait=True)
    assert p.images[-1].dtype == cpu.dtype and np.array_equal(p.images[-1], cpu)
    published = ntnda.frame_from_value(p.dataPublisher.values[-1]).image
    assert np.array_equal(published, cpu)


@pytest.mark.parametrize("n", [7, 8, 1000, 8192, 8192 * 5 + 1003])
def test_bslz4_partial_blocks_and_tails(backend, n):
    image = _image(np.uint16, (1, n))
    p = _processor(backend)
    p.process(ntnda.value_from_image(image, 1, codec="bslz4"))
    assert np.array_equal(p.images[-1], image)


def test_bslz4_hdf5_chunks(backend):
    image = _image(np.uint16, (64, 100))
    payload = codecs.encode("bslz4", image, block_size=512, hdf5_header=True)
    value = ntnda.value_from_compressed(payload, 2, nx=100, ny=64, dtype=np.uint16, codec="bslz4")
    p = _processor(backend)
    p.process(value)
    assert np.array_equal(p.images[-1], image)


@pytest.mark.parametrize("mode", [ntnda.ColorMode.RGB1, ntnda.ColorMode.RGB2,
                                  ntnda.ColorMode.RGB3])
def test_colour_modes(backend, mode):
    rgb = RNG.integers(0, 255, (30, 41, 3), dtype=np.uint8)
    p = _processor(backend)
    p.process(ntnda.value_from_image(rgb, 1, color_mode=mode, codec="bslz4"))
    assert np.array_equal(p.images[-1], rgb)


def _corrupted(image, codec):
    """A payload whose corruption only the LZ4 decoder (nvcomp) can see: the
    bslz4 framing stays intact. (Flipping bytes at random is not enough: LZ4
    has no checksum, and flipped literals decode to wrong data without error.)"""
    payload = codecs.encode(codec, image)
    if codec == "lz4":
        payload = payload[:-16]           # the last literals run past the input
    else:
        clen = int.from_bytes(payload[:4].tobytes(), "big")
        payload[4:4 + clen] = 0xFF        # block 0: a literal length past its end
    ny, nx = image.shape
    return ntnda.value_from_compressed(payload, 1, nx=nx, ny=ny, dtype=image.dtype, codec=codec)


def test_corrupt_payloads_are_caught_by_nvcomp_and_do_not_poison(backend):
    image = _image(np.uint16, (64, 512))
    p = _processor(backend)
    for codec in ("lz4", "bslz4"):
        with pytest.raises(CorruptPayloadError, match="nvcomp"):
            p.process(_corrupted(image, codec))
        p.process(ntnda.value_from_image(image, 2, codec=codec))
        assert np.array_equal(p.images[-1], image)


def test_fast_and_simple_unshuffle_kernels_agree_on_the_device():
    import bitshuffle
    from numba import cuda
    from pvagpu.kernels import bitunshuffle as bu
    for dtype in DTYPES:
        data = _image(dtype, (1, 8192 * 3 + 333)).reshape(-1)
        shuffled = cp.asarray(bitshuffle.bitshuffle(data).view(np.uint8))
        fast = cp.empty(data.size, dtype)
        bu.launch_bitunshuffle(cuda.as_cuda_array(shuffled), cuda.as_cuda_array(fast),
                               data.size, data.dtype.itemsize)
        simple = cp.empty(data.nbytes, cp.uint8)
        bu.launch_bitunshuffle_bytes(cuda.as_cuda_array(shuffled), cuda.as_cuda_array(simple),
                                     data.size, data.dtype.itemsize)
        cuda.synchronize()
        assert np.array_equal(cp.asnumpy(fast), data)
        assert np.array_equal(cp.asnumpy(simple).view(dtype), data)


class RunningSum(GpuAdImageProcessor):
    """Device state updated without any synchronization, returned as is."""

    def __init__(self, configDict=None):
        GpuAdImageProcessor.__init__(self, configDict)
        self.total = None

    def processFrame(self, frame):
        if self.total is None:
            self.total = self.xp.zeros(frame.image.shape, self.xp.float32)
        self.total += frame.image
        self.total *= 1.0000001          # more work, so that frames would overlap
        self.total /= 1.0000001
        return self.total                # copied to the host asynchronously


def test_device_state_is_updated_in_frame_order_across_the_slot_streams(backend):
    """Successive frames run on different streams; their processFrame calls
    must still see each other's updates in order, and each published copy
    must be the state after its own frame (not the next one's)."""
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 100, (1024, 2048)).astype(np.float32) for _ in range(12)]
    p = RunningSum({})
    p.setBackend(backend)
    p.dataPublisher = Recorder()
    for i, image in enumerate(images, 1):
        p.process(ntnda.value_from_image(image, i))      # uncompressed: no sync in decode
    p.flush(wait=True)
    assert [v["uniqueId"] for v in p.dataPublisher.values] == list(range(1, len(images) + 1))
    expect = np.zeros_like(images[0])
    for image, value in zip(images, p.dataPublisher.values):
        expect = (expect + image) * np.float32(1.0000001) / np.float32(1.0000001)
        got = ntnda.frame_from_value(value).image
        np.testing.assert_allclose(got, expect, rtol=1e-5)


def test_gpu_statistics(backend):
    p = _processor(backend)
    image = _image(np.uint16)
    for i in range(5):
        p.process(ntnda.value_from_image(image, i + 1, codec="bslz4"))
    p.flush(wait=True)
    stats = processor_stats(p)
    assert stats["gpuBackend"] == "cupy" and stats["nDeviceDecodes"] == 5
    assert stats["bytesToDevice"] > 0 and stats["decodeTimeMs"] > 0
    assert stats["ringSlots"] == 4


def test_start_compiles_the_unshuffle_kernel_for_every_element_size(backend):
    from pvagpu.kernels.bitunshuffle import bitunshuffle_kernel
    p = _processor(backend)
    p.start()
    assert len(bitunshuffle_kernel.overloads) >= 4       # uint8/16/32/64 outputs
    image = _image(np.uint32)
    p.process(ntnda.value_from_image(image, 1, codec="bslz4"))
    p.flush(wait=True)
    assert np.array_equal(p.images[-1], image)


def test_the_cupy_device_interface(backend):
    """Each call of the interface on the real device: staging through pinned
    memory, events and their times, stream waits, uploads and the
    asynchronous copy back."""
    dev = CupyDevice(cp, backend.device_id)
    assert dev.is_gpu and dev.xp is cp
    with dev.activate():
        stream, other = dev.new_stream(), dev.new_stream()
        host, device = dev.alloc_pinned(8192), dev.alloc_device(8192)
        payload = RNG.integers(0, 255, 5000, dtype=np.uint8)
        start = dev.record_event(stream, timing=True)
        staged_host, staged = dev.stage(host, device, payload, stream)
        with stream:
            doubled = staged.astype(cp.uint16) * 2
        end = dev.record_event(stream, timing=True)
        dev.wait_event(other, end)                 # other waits for stream on the device
        with other:
            total = doubled.sum()
        dev.synchronize_stream(other)
        assert dev.event_done(end) and dev.elapsed_ms(start, end) >= 0
        assert np.array_equal(staged_host, payload) and np.array_equal(cp.asnumpy(staged), payload)
        assert int(total) == int(payload.astype(np.int64).sum() * 2)
        up = dev.upload(np.arange(12, dtype=np.int32).reshape(3, 4), stream)
        back, event = dev.to_host_async(up.T * 3, stream)
        dev.synchronize_event(event)
        assert np.array_equal(back, np.arange(12).reshape(3, 4).T * 3)
        array = np.ones(3)
        assert dev.to_host_async(array, stream) == (array, None)
        assert dev.current_stream() is not None


class Sums(GpuAdImageProcessor):
    """One result per frame, from a stacked batch or one by one."""

    def processFrame(self, frame):
        return {"sum": float(frame.image.astype(self.xp.float64).sum())}

    def processFrameBatch(self, batch):
        sums = batch.images.astype(self.xp.float64).sum(axis=(1, 2))
        return [{"sum": float(s)} for s in sums]


@pytest.mark.parametrize("codec", ["", "lz4", "bslz4", "zlib"])
def test_batches_on_the_device_match_frames_on_the_cpu(backend, codec):
    images = [_image(np.uint16, (64, 96)) for _ in range(5)]
    values = [ntnda.value_from_image(image, i, codec=codec) for i, image in enumerate(images, 1)]
    gpu = Sums({})
    gpu.setBackend(backend)
    gpu.dataPublisher = Recorder()
    gpu.processBatch(values)
    cpu = Sums({"gpu": "none"})
    cpu.dataPublisher = Recorder()
    cpu.start()
    for value in values:
        cpu.process(value)
    gpu.flush(wait=True)
    assert [v.todict() for v in gpu.dataPublisher.values] == \
        [v.todict() for v in cpu.dataPublisher.values]
    assert processor_stats(gpu)["nGpuFrames"] == 5
