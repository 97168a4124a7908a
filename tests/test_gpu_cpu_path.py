"""The GPU data path, checked without a GPU (issue 5): backend choice, the
staging ring's bookkeeping through a fake device, the bslz4 block plan
that feeds nvcomp, GpuAdImageProcessor on the NumPy backend, and the two
examples end to end over PVA with every codec."""
import os
import types

import numpy as np
import pytest
from p4p.client.thread import Context
from p4p.server import Server
from p4p.server.thread import SharedPV

from conftest import wait_for
from pvagpu import codecs, ntnda
from pvagpu.consumer import Consumer, load_processor_class
from pvagpu.errors import ConfigurationError, CorruptPayloadError
from pvagpu.gpu import (FrameBatch, GpuAdImageProcessor, GPU_STATS_TYPES, HostDevice, SlotRing,
                        backend as gpu_backend, parse_gpu_spec, select_backend)
from pvagpu.gpu.decode import bslz4_blocks, decodes_on_device, lz4_blocks_on_host
from pvagpu.gpu.staging import slot_size_for
from pvagpu.kernels.bitunshuffle import bitunshuffle_reference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(5)
IMAGE16 = RNG.poisson(4, (24, 40)).astype(np.uint16)
CODECS = ["", "lz4", "bslz4", "blosc", "zlib", "lz4hdf5"]


# ---------------------------------------------------------------------------
# backend choice
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expect", [
    ("auto", "auto"), (None, "auto"), ("", "auto"), ("none", "none"), ("NONE", "none"),
    ("cpu", "none"), ("0", 0), (1, 1), ("  2 ", 2)])
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


# ---------------------------------------------------------------------------
# the staging ring, through a fake device
# ---------------------------------------------------------------------------

class FakeDevice(HostDevice):
    """Host memory, with events that complete only when the test says so."""

    def __init__(self):
        self.events = []
        self.copies = []
        self.allocations = 0
        self.waited = 0

    def new_stream(self):
        return f"stream{len(getattr(self, '_streams', []))}"

    def alloc_pinned(self, nbytes):
        self.allocations += 1
        return np.zeros(nbytes, np.uint8)

    def copy_to_device(self, dst, src, nbytes, stream):
        self.copies.append((stream, nbytes))
        dst[:nbytes] = src[:nbytes]

    def record_event(self, stream):
        event = {"done": False, "stream": stream}
        self.events.append(event)
        return event

    def event_done(self, event):
        return event["done"]

    def wait_event(self, event):
        self.waited += 1
        event["done"] = True

    def synchronize_stream(self, stream):
        self.waited += 1
        for event in self.events:
            if event["stream"] == stream:
                event["done"] = True

    def complete(self, n=None):
        for event in self.events[:n]:
            event["done"] = True


def _streams_named(device, n):
    names = iter(f"s{i}" for i in range(n))
    device.new_stream = lambda: next(names)


def test_ring_recycles_slots_only_after_their_copy_completed():
    dev = FakeDevice()
    _streams_named(dev, 2)
    ring = SlotRing(dev, n_slots=3, n_streams=2)
    frames = [np.full(100, i, np.uint8) for i in range(6)]
    staged = [ring.stage(f) for f in frames[:3]]
    assert all(s is not None for s in staged)
    assert [s.stream for s in staged] == ["s0", "s1", "s0"]      # round-robin over streams
    assert ring.occupancy == 3
    assert ring.stage(frames[3]) is None                          # full: an overrun, not a wait
    assert ring.n_overruns == 1 and dev.waited == 0
    dev.events[0]["done"] = True                                  # slot 0's copy completed
    again = ring.stage(frames[3])
    assert again is not None and again.slot.index == 0
    assert np.array_equal(again.device, frames[3]) and np.array_equal(again.host, frames[3])
    assert ring.stage(frames[4]) is None                          # slot 1 still busy
    assert ring.n_overruns == 2
    dev.complete()
    assert ring.stage(frames[4]).slot.index == 1
    stats = ring.stats()
    assert stats["nStaged"] == 5 and stats["nRingOverruns"] == 2
    assert stats["bytesToDevice"] == 500 and stats["ringSlots"] == 3
    ring.reset_stats()
    assert ring.stats()["nRingOverruns"] == 0


def test_ring_is_sized_from_the_first_frame_and_grows_when_the_image_grows():
    dev = FakeDevice()
    ring = SlotRing(dev, n_slots=2)
    small = np.arange(1000, dtype=np.uint8)
    ring.stage(small, uncompressed_bytes=4000)
    assert ring.slot_bytes == slot_size_for(1000, 4000) >= 4000 + 4000 // 255
    assert dev.allocations == 2
    # a compressed frame of the same image size always fits
    ring.stage(np.zeros(4000 + 4000 // 255, np.uint8), uncompressed_bytes=4000)
    assert ring.n_resizes == 0
    big = np.ones(3 * ring.slot_bytes, np.uint8)
    dev.complete(1)
    staged = ring.stage(big, uncompressed_bytes=big.size)
    assert staged is not None and ring.n_resizes == 1 and ring.slot_bytes >= big.size
    assert dev.waited >= 1                    # waited for the streams of the busy slots first
    assert all(event["done"] for event in dev.events[:-1])
    assert np.array_equal(staged.device, big)


def test_ring_with_a_fixed_slot_size_and_bad_configuration():
    dev = FakeDevice()
    ring = SlotRing(dev, n_slots=4, slot_bytes=8192, n_streams=8)
    assert ring.slot_bytes == 8192 and len(ring.streams) == 4 and dev.allocations == 4
    for bad in ({"n_slots": 0}, {"n_streams": 0}, {"slot_bytes": -1}):
        with pytest.raises(ConfigurationError):
            SlotRing(dev, **bad)


def test_ring_on_the_host_device_never_overruns():
    ring = SlotRing(HostDevice(), n_slots=1)
    for i in range(5):
        assert ring.stage(np.full(64, i, np.uint8)) is not None
    assert ring.n_overruns == 0 and ring.occupancy == 0


def test_ring_sized_from_the_first_frame_takes_an_empty_first_frame():
    ring = SlotRing(HostDevice(), n_slots=2)
    staged = ring.stage(np.zeros(0, np.uint8), uncompressed_bytes=0)
    assert staged is not None and staged.nbytes == 0 and ring.slot_bytes > 0
    assert np.array_equal(ring.stage(np.arange(10, dtype=np.uint8), 10).device, np.arange(10))
    assert ring.n_resizes == 0


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


def test_which_codecs_the_device_decodes():
    data = np.arange(64, dtype=np.uint16)
    assert decodes_on_device("", codecs.as_bytes(data), data.nbytes)
    assert decodes_on_device("bslz4", codecs.encode("bslz4", data), data.nbytes)
    assert decodes_on_device("lz4", codecs.encode("lz4", data), data.nbytes)
    assert not decodes_on_device("lz4", codecs.encode("lz4hdf5", data), data.nbytes)
    assert not decodes_on_device("blosc", codecs.encode("blosc", data), data.nbytes)


# ---------------------------------------------------------------------------
# GpuAdImageProcessor on the NumPy backend
# ---------------------------------------------------------------------------

class Recorder:
    def __init__(self):
        self.values = []

    def updateOutputChannel(self, value):
        self.values.append(value)


class Echo(GpuAdImageProcessor):
    """Returns each image doubled; keeps the frames it saw."""

    def __init__(self, configDict=None):
        GpuAdImageProcessor.__init__(self, configDict)
        self.seen = []

    def processFrame(self, frame):
        self.seen.append(frame)
        return frame.image * 2


class Scalars(GpuAdImageProcessor):
    def processFrame(self, frame):
        return {"total": float(self.xp.sum(frame.image)), "big": bool(frame.image.max() > 5)}

    def getOutputFieldTypes(self):
        return {"total": "d", "big": "?"}

    def getStats(self):
        return {"mine": 1}

    def getStatsPvaTypes(self):
        return {"mine": "I"}


def _started(cls, config=None):
    p = cls({"gpu": "none", **(config or {})})
    p.dataPublisher = Recorder()
    p.start()
    return p


@pytest.mark.parametrize("codec", CODECS)
def test_processor_sees_the_decoded_image_with_every_codec(codec):
    p = _started(Echo)
    value = ntnda.value_from_image(IMAGE16, 7, codec=codec)
    p.process(value)
    frame = p.seen[-1]
    assert np.array_equal(frame.image, IMAGE16) and frame.unique_id == 7
    assert frame.codec == codec
    out = p.dataPublisher.values[-1]
    back = ntnda.frame_from_value(out)
    assert np.array_equal(back.image, IMAGE16 * 2) and back.unique_id == 7
    assert p.getStats()["gpuBackend"] == "numpy" and p.getStats()["nGpuFrames"] == 1


def test_colour_frames_reach_processFrame_as_ny_nx_3():
    rgb = RNG.integers(0, 255, (6, 9, 3), dtype=np.uint8)
    p = _started(Echo)
    for mode in (ntnda.ColorMode.RGB1, ntnda.ColorMode.RGB2, ntnda.ColorMode.RGB3):
        p.process(ntnda.value_from_image(rgb, int(mode), color_mode=mode))
        assert p.seen[-1].image.shape == (6, 9, 3)
        assert np.array_equal(p.seen[-1].image, rgb)


def test_dict_results_are_published_as_a_structure_and_stats_merge():
    p = _started(Scalars)
    value = ntnda.value_from_image(IMAGE16, 3, codec="bslz4")
    out_type = p.getOutputPvObjectType(value)
    assert set(out_type.keys()) >= {"uniqueId", "timeStamp", "total", "big"}
    p.process(value)
    out = p.dataPublisher.values[-1]
    assert out["uniqueId"] == 3 and out["total"] == float(IMAGE16.sum()) and out["big"]
    stats = p.getStats()
    assert stats["mine"] == 1 and set(GPU_STATS_TYPES) <= set(stats)
    assert set(p.getStatsPvaTypes()) == set(GPU_STATS_TYPES) | {"mine"}
    p.resetStats()
    assert p.getStats()["nGpuFrames"] == 0


def test_a_corrupt_frame_costs_a_batch_only_itself():
    """processBatch: the frames around a corrupt one are processed and
    published; BatchFramesError names the corrupt one (and the count)."""
    from pvagpu.errors import BatchFramesError
    p = _started(Batched)
    values = [ntnda.value_from_image(IMAGE16 + i, i, codec="bslz4") for i in range(1, 6)]
    payload = np.array(values[2]["value"])
    payload[4:40] = 0xFF
    values[2]["value"] = ("ubyteValue", payload)
    with pytest.raises(BatchFramesError) as err:
        p.processBatch(values)
    assert err.value.n_processed == 4 and [oid for oid, _ in err.value.failures] == [3]
    assert isinstance(err.value.failures[0][1], CorruptPayloadError)
    assert [b.unique_ids for b in p.batches] == [[1, 2, 4, 5]]
    assert [v["sum"] for v in p.dataPublisher.values] == [
        float((IMAGE16 + i).sum()) for i in (1, 2, 4, 5)]


def test_corrupt_frames_raise_and_do_not_poison_the_next():
    p = _started(Echo)
    value = ntnda.value_from_image(IMAGE16, 1, codec="bslz4")
    bad = ntnda.value_from_image(IMAGE16, 2, codec="bslz4")
    payload = np.array(bad["value"])
    payload[4:40] = 0xFF
    bad["value"] = ("ubyteValue", payload)
    with pytest.raises(CorruptPayloadError):
        p.process(bad)
    p.process(value)
    assert np.array_equal(p.seen[-1].image, IMAGE16)


class Batched(GpuAdImageProcessor):
    def __init__(self, configDict=None):
        GpuAdImageProcessor.__init__(self, configDict)
        self.batches = []

    def processBatch(self, batch):
        self.batches.append(batch)
        return [{"sum": float(img.sum())} for img in batch.images]


def test_processBatch_gets_stacked_frames_grouped_by_shape():
    p = _started(Batched)
    small = np.ones((4, 5), np.uint16)
    values = [ntnda.value_from_image(IMAGE16, 1, codec="lz4"),
              ntnda.value_from_image(IMAGE16 + 1, 2),
              ntnda.value_from_image(small, 3, codec="bslz4")]
    p.processBatch(values)
    assert [len(b) for b in p.batches] == [2, 1]
    first = p.batches[0]
    assert isinstance(first, FrameBatch) and first.images.shape == (2, 24, 40)
    assert first.unique_ids == [1, 2] and np.array_equal(first.images[1], IMAGE16 + 1)
    assert [v["sum"] for v in p.dataPublisher.values] == [
        float(IMAGE16.sum()), float((IMAGE16 + 1).sum()), 20.0]
    assert p.getStats()["nGpuFrames"] == 3


def test_a_frame_without_dimensions_is_passed_over():
    p = _started(Echo)
    empty = ntnda.value_from_image(IMAGE16, 1)
    empty["dimension"] = []
    p.process(empty)
    assert p.seen == [] and p.dataPublisher.values == []


# ---------------------------------------------------------------------------
# the examples, end to end over PVA (NumPy backend), with every codec
# ---------------------------------------------------------------------------

def _example(name, cls):
    return load_processor_class(os.path.join(REPO, "examples", name), cls)


@pytest.fixture
def image_source(pva_env):
    pv = SharedPV(initial=ntnda.value_from_image(IMAGE16, 0))
    server = Server(providers=[{"gpu:image": pv}])
    yield pv
    server.stop()


@pytest.mark.pva
@pytest.mark.parametrize("codec", CODECS)
def test_frame_stats_example_over_pva(image_source, codec):
    cls = _example("gpu_frame_stats.py", "GpuFrameStats")
    processor = cls({"threshold": 4, "gpu": "none"})
    ctx = Context("pva", nt=False)
    outputs = []
    try:
        with Consumer("gpu:image", processor, output_channel="_", status_channel="_",
                      server_queue_size=16) as consumer:
            wait_for(lambda: consumer.receiver.connected, timeout=20, message="connected")
            sub = ctx.monitor("pvapy:consumer:1:output", outputs.append)
            try:
                images = [IMAGE16 + i for i in range(1, 6)]
                for i, image in enumerate(images, 1):
                    n = consumer.receiver.counters.n_received
                    image_source.post(ntnda.value_from_image(image, i, codec=codec))
                    wait_for(lambda: consumer.receiver.counters.n_received > n, timeout=10,
                             message=f"frame {i}")
                wait_for(lambda: consumer.stats()["processorStats"]["nProcessed"] >= 5,
                         timeout=20, message="5 frames processed")
                wait_for(lambda: any(o["uniqueId"] == 5 for o in outputs if "mean" in o),
                         timeout=10, message="the last result on the output channel")
            finally:
                sub.close()
            stats = consumer.stats()
    finally:
        ctx.close()
    assert stats["processorStats"]["nErrors"] == 0
    user = stats["userStats"]
    assert user["nFrames"] == 5 and user["gpuBackend"] == "numpy"
    last = [o for o in outputs if "mean" in o and o["uniqueId"] == 5][-1]
    assert last["mean"] == pytest.approx(float((IMAGE16 + 5).mean()))
    assert last["max"] == float((IMAGE16 + 5).max())
    assert last["nAbove"] == int(np.count_nonzero(IMAGE16 + 5 > 4))


@pytest.mark.pva
@pytest.mark.parametrize("codec", ["", "bslz4"])
def test_photon_counting_example_over_pva(image_source, codec):
    cls = _example("gpu_photon_counting.py", "GpuPhotonCounting")
    processor = cls({"threshold": 5, "publishEvery": 3, "gpu": "none"})
    ctx = Context("pva", nt=False)
    outputs = []
    frames = [RNG.poisson(4, IMAGE16.shape).astype(np.uint16) for _ in range(6)]
    try:
        with Consumer("gpu:image", processor, output_channel="_",
                      server_queue_size=16) as consumer:
            wait_for(lambda: consumer.receiver.connected, timeout=20, message="connected")
            sub = ctx.monitor("pvapy:consumer:1:output", outputs.append)
            try:
                for i, image in enumerate(frames, 1):
                    n = consumer.receiver.counters.n_received
                    image_source.post(ntnda.value_from_image(image, i, codec=codec))
                    wait_for(lambda: consumer.receiver.counters.n_received > n, timeout=10,
                             message=f"frame {i}")
                wait_for(lambda: any(o["uniqueId"] == 6 for o in outputs),
                         timeout=20, message="the sum after frame 6")
            finally:
                sub.close()
    finally:
        ctx.close()
    last = [o for o in outputs if o["uniqueId"] == 6][-1]
    image = ntnda.frame_from_value(last).image
    expect = sum((f.astype(np.float32) > 5).astype(np.uint32) for f in frames)
    assert image.dtype == np.uint32 and np.array_equal(image, expect)
    assert processor.nPhotons == int(expect.sum())


@pytest.mark.parametrize("flag, explicit_error", [("none", False), ("auto", False), ("7", True)])
def test_consumer_gpu_flag_reaches_the_processor(flag, explicit_error):
    """pvagpu-consumer --gpu is the processor's configDict['gpu']; without
    CuPy, auto falls back to NumPy and an explicit device is an error."""
    from pathlib import Path

    from pvagpu.cli.consumer import _consumer_from_args, build_parser
    from pvagpu.gpu.backend import select_backend

    have_gpu = select_backend("auto").is_gpu
    examples = Path(__file__).resolve().parents[1] / "examples"
    args = build_parser().parse_args([
        "-ic", "test:gpu:flag", "-pf", str(examples / "gpu_frame_stats.py"),
        "-pc", "GpuFrameStats", "--gpu", flag])
    consumer = _consumer_from_args(args)
    processor = consumer.processor
    assert processor.gpuSpec == flag
    if explicit_error and not have_gpu:
        with pytest.raises(ConfigurationError):
            processor.start()
        return
    processor.start()
    try:
        if not have_gpu:
            assert processor.xp is np and processor.getStats()["gpuBackend"].startswith("numpy")
    finally:
        processor.stop()


# ---------------------------------------------------------------------------
# the device path's stream ordering, through a fake CuPy that logs what is
# queued on which stream (the real one needs a device)
# ---------------------------------------------------------------------------

class _FakeCuda:
    """Just enough of ``cupy.cuda`` for _DevicePath: streams and events that
    log, in queue order, what would run on which stream."""

    def __init__(self):
        self.log = []
        self.clock = 0
        self.current = []
        self.n_streams = 0
        cuda = self

        class Event:
            def __init__(self, block=False, disable_timing=False):
                self.stream = None
                self.t = None
                self.done = True

            def record(self, stream=None):
                stream = stream or cuda.get_current_stream()
                cuda.clock += 1
                self.stream, self.t = stream, cuda.clock
                cuda.log.append((stream.name, "record", self))

            def synchronize(self):
                pass

        class Stream:
            def __init__(self, non_blocking=False, name=None):
                self.name = name or f"s{cuda.n_streams}"
                cuda.n_streams += 0 if name else 1

            def __enter__(self):
                cuda.current.append(self)
                return self

            def __exit__(self, *exc):
                cuda.current.pop()

            def wait_event(self, event):
                cuda.log.append((self.name, "wait", event))

            def record(self, event=None):
                event = event or Event()
                event.record(self)
                return event

        self.Event, self.Stream = Event, Stream
        self.null = Stream(name="null")

    def get_current_stream(self):
        return self.current[-1] if self.current else self.null

    @staticmethod
    def get_elapsed_time(a, b):
        return float(b.t - a.t)

    @staticmethod
    def Device(i):
        import contextlib
        return contextlib.nullcontext()

    @staticmethod
    def alloc_pinned_memory(n):
        return bytearray(n)

    def queued(self, what, stream=None):
        stream = stream or self.get_current_stream()
        self.log.append((stream.name, what, None))


def _fake_cupy():
    cuda = _FakeCuda()

    def asnumpy(a, stream=None, out=None, blocking=True):
        cuda.queued("copy to host", stream)
        out[...] = a
        return out

    return types.SimpleNamespace(cuda=cuda, asnumpy=asnumpy, asarray=np.asarray,
                                 ascontiguousarray=np.ascontiguousarray, stack=np.stack)


class _OnDevice:
    """Stands for a device array (not a numpy array: it is copied to the host)."""

    def __init__(self, array):
        self.array = array

    def __array__(self, dtype=None, copy=None):
        return self.array


class _Accumulate(GpuAdImageProcessor):
    """Keeps device state across frames and returns it: what must not race."""

    def processFrame(self, frame):
        self.xp.cuda.queued(f"user {frame.unique_id}")
        return _OnDevice(frame.image)

    def processBatch(self, batch):
        self.xp.cuda.queued(f"user {batch.unique_ids}")
        return None


def _fake_gpu_processor():
    cp = _fake_cupy()
    p = _Accumulate({})
    p.dataPublisher = Recorder()
    p.setBackend(gpu_backend.Backend("cupy", cp, device_id=0, device_name="fake"))
    path = p._device
    streams = path.ring.streams

    def frame(value):                       # decode, as queued on the frame's slot stream
        uid = int(value["uniqueId"])
        stream = streams[uid % len(streams)]
        start = path.event(stream)
        cp.cuda.queued(f"decode {uid}", stream)
        return ntnda.frame_from_value(value), (stream, start, path.event(stream))
    path.frame = frame
    return p, cp.cuda


def _at(log, stream, what):
    return next(i for i, (s, op, _) in enumerate(log) if s == stream and op == what)


def test_user_work_of_successive_frames_is_ordered_across_the_slot_streams():
    """processFrame of frame 2 runs on another stream than frame 1's: it must
    wait (on the device) for frame 1's processFrame and result copy, while
    frame 2's decode need not."""
    p, cuda = _fake_gpu_processor()
    for uid in (1, 2, 3):
        p.process(ntnda.value_from_image(IMAGE16, uid))
    p.flush(wait=True)
    log = cuda.log
    waits = [(i, s, ev) for i, (s, op, ev) in enumerate(log) if op == "wait"]
    assert [s for _, s, _ in waits] == ["s0", "s1"]          # frames 2 and 3 wait
    for (i, stream, ev), (before, after) in zip(waits, [(1, 2), (2, 3)]):
        prev = ev.stream.name
        assert prev != stream
        # the event waited for comes after the previous frame's work and copy ...
        done_at = log.index((prev, "record", ev))
        assert _at(log, prev, f"user {before}") < done_at
        assert max(j for j, e in enumerate(log[:done_at]) if e[:2] == (prev, "copy to host")) \
            > _at(log, prev, f"user {before}")
        # ... and the wait is queued after this frame's decode, before its work
        assert _at(log, stream, f"decode {after}") < i < _at(log, stream, f"user {after}")
    assert [v["uniqueId"] for v in p.dataPublisher.values] == [1, 2, 3]
    stats = p.getStats()
    assert stats["kernelTimeMs"] > 0 and stats["decodeTimeMs"] > 0


def test_a_batch_waits_for_the_frames_before_it_and_the_next_frame_for_the_batch():
    p, cuda = _fake_gpu_processor()
    p.process(ntnda.value_from_image(IMAGE16, 1))
    p.processBatch([ntnda.value_from_image(IMAGE16, 2), ntnda.value_from_image(IMAGE16, 3)])
    p.process(ntnda.value_from_image(IMAGE16, 4))
    log = cuda.log
    batch_wait = next(i for i, e in enumerate(log) if e[:2] == ("null", "wait")
                      and e[2].stream.name == "s1")          # frame 1 ran on s1
    assert batch_wait < _at(log, "null", "user [2, 3]")
    four = max(i for i, e in enumerate(log) if e[:2] == ("s0", "wait")
               and i < _at(log, "s0", "user 4"))
    assert log[four][2].stream.name == "null"
    assert _at(log, "null", "user [2, 3]") < log.index(("null", "record", log[four][2])) \
        < four < _at(log, "s0", "user 4")


def test_a_processFrame_that_raises_still_marks_the_end_of_its_work():
    p, cuda = _fake_gpu_processor()
    p.processFrame = lambda frame: 1 / 0
    with pytest.raises(ZeroDivisionError):
        p.process(ntnda.value_from_image(IMAGE16, 1))
    assert p._device._user_done is not None and p._device._user_done.stream.name == "s1"


def test_without_nvcomp_lz4_and_bslz4_frames_are_decoded_on_the_host(caplog):
    from pvagpu.gpu.processor import _DevicePath
    cp = _fake_cupy()
    backend = gpu_backend.Backend("cupy", cp, device_id=0)
    path = _DevicePath(backend, 2, 0, 2)
    path.decoder._nvcomp_problem = "OSError: libnvcomp.so.6: cannot open shared object file"
    for codec in ("bslz4", "lz4"):
        frame, timing = path.frame(ntnda.value_from_image(IMAGE16, 1, codec=codec))
        assert np.array_equal(frame.image, IMAGE16) and timing[0] in path.ring.streams
    assert path.n_host_decodes == 2 and path.n_device_decodes == 0
    assert sum("nvcomp cannot be used" in r.getMessage() for r in caplog.records) == 1


class _FakeFunction:
    def __init__(self, body=None):
        self.body = body or (lambda *args: 0)
        self.argtypes = self.restype = None

    def __call__(self, *args):
        return self.body(*args)


def _fake_nvcomp_lib(version):
    def properties(ref):
        ref._obj.version = version
        return 0

    def temp_size(n, max_chunk, opts, ref, total, stream):
        # nvcompBatchedLZ4DecompressOpts_t: 4 ints then 48 reserved bytes, all zero
        raw = bytes(opts)
        assert len(raw) == 64 and raw[:4] == (2).to_bytes(4, "little") and raw[4:] == bytes(60)
        ref._obj.value = 4096 * n
        return 0
    return types.SimpleNamespace(
        nvcompGetProperties=_FakeFunction(properties),
        nvcompBatchedLZ4DecompressGetTempSize=_FakeFunction(temp_size),
        nvcompBatchedLZ4DecompressAsync=_FakeFunction())


def test_the_nvcomp_binding_refuses_another_major_version(monkeypatch):
    """nvcomp 5 has other LZ4 signatures (no ...DecompressGetTempSize): a
    library of another major is refused, and the device path then decodes
    lz4/bslz4 on the host instead of failing every frame."""
    import pvagpu.gpu.decode as decode_module
    Nvcomp = decode_module.Nvcomp
    nv = Nvcomp(_fake_nvcomp_lib(6000))
    assert nv.temp_bytes(3, 8192, 3 * 8192, 0) == 3 * 4096
    with pytest.raises(RuntimeError, match=r"nvcomp 5\.1\.2 .*6\.x"):
        Nvcomp(_fake_nvcomp_lib(5102))
    monkeypatch.setattr(decode_module, "Nvcomp", lambda: Nvcomp(_fake_nvcomp_lib(5000)))
    assert "RuntimeError: nvcomp 5.0.0" in decode_module.DeviceDecoder(None).nvcomp_problem()


def test_the_nvcomp_binding_against_the_installed_library():
    """Host-only calls of the real libnvcomp (no device needed): the symbol
    names, the version and the by-value options struct of the binding."""
    pytest.importorskip("nvidia.libnvcomp")
    from pvagpu.gpu.decode import Nvcomp
    nv = Nvcomp()
    assert nv.version // 1000 == 6
    assert nv.temp_bytes(4, 8192, 4 * 8192, 0) >= 0


# ---------------------------------------------------------------------------
# DeviceDecoder through a fake device: host memory standing in for device
# memory, and a fake nvcomp that follows nvcompBatchedLZ4DecompressAsync's
# contract (arrays of chunk addresses, size_t sizes, int32 statuses, actual
# sizes) with python-lz4. Checks the pointer and size arrays the decoder
# builds, the tail, the dtype and the corrupt-payload checks.
# ---------------------------------------------------------------------------

class _DevArray(np.ndarray):
    """A numpy array with CuPy's ``.data.ptr``."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)


def _dev(a):
    return np.asarray(a).view(_DevArray)


class _FakeNvcomp:
    def __init__(self, corrupt_status=None):
        self.calls = []
        self.corrupt_status = corrupt_status

    def temp_bytes(self, n, max_chunk, total, stream_ptr):
        return 0

    def decompress(self, comp_ptrs, comp_sizes, out_sizes, actual_sizes, n, temp_ptr, temp_bytes,
                   out_ptrs, statuses, stream_ptr):
        import ctypes

        import lz4.block

        def array(ptr, ctype):
            return np.ctypeslib.as_array((ctype * n).from_address(ptr))
        comp, csize = array(comp_ptrs, ctypes.c_uint64), array(comp_sizes, ctypes.c_uint64)
        osize, actual = array(out_sizes, ctypes.c_uint64), array(actual_sizes, ctypes.c_uint64)
        out, status = array(out_ptrs, ctypes.c_uint64), array(statuses, ctypes.c_int32)
        self.calls.append(n)
        for i in range(n):
            src = ctypes.string_at(int(comp[i]), int(csize[i]))
            try:
                raw = lz4.block.decompress(src, uncompressed_size=int(osize[i]))
            except lz4.block.LZ4BlockError:
                status[i], actual[i] = 12, 0        # nvcompErrorCannotDecompress
                continue
            ctypes.memmove(int(out[i]), raw, len(raw))
            status[i], actual[i] = self.corrupt_status or 0, len(raw)


class _FakeStream:
    ptr = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def _fake_device_cupy():
    return types.SimpleNamespace(
        uint8=np.uint8, uint64=np.uint64, int32=np.int32,
        empty=lambda n, dtype: _dev(np.full(n, 0xA5, np.uint8).view(dtype)
                                    if np.dtype(dtype).itemsize == 1 else np.empty(n, dtype)),
        zeros=lambda n, dtype: _dev(np.zeros(n, dtype)),
        full=lambda n, v, dtype: _dev(np.full(n, v, dtype)),
        asarray=_dev, count_nonzero=np.count_nonzero, argmax=np.argmax,
        cuda=types.SimpleNamespace(get_current_stream=lambda: _FakeStream()))


def _decode_on_fake_device(name, payload, dtype, size, nvcomp=None):
    from pvagpu.gpu.decode import DeviceDecoder
    from pvagpu.gpu.staging import Slot, Staged

    class Decoder(DeviceDecoder):
        def _unshuffle(self, shuffled, out, plan, stream):
            out.view(np.uint8)[...] = bitunshuffle_reference(
                np.asarray(shuffled), plan.n_elements, plan.itemsize, plan.block_elements)

    payload = codecs.as_bytes(payload)
    slot_bytes = slot_size_for(payload.size, size)
    host = np.zeros(slot_bytes, np.uint8)
    host[:payload.size] = payload
    slot = Slot(0, host, _dev(host.copy()), _FakeStream())
    decoder = Decoder(_fake_device_cupy(), nvcomp or _FakeNvcomp())
    return decoder, decoder.decode(name, Staged(slot, payload.size), np.dtype(dtype), size)


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
        _decode_on_fake_device("bslz4", good, np.uint16, data.nbytes, _FakeNvcomp(15))
    raw = codecs.encode("lz4", data)
    with pytest.raises(CorruptPayloadError, match="nvcomp: 1 of 1"):
        _decode_on_fake_device("lz4", raw[:-16], np.uint16, data.nbytes)
    with pytest.raises(CorruptPayloadError, match="bslz4"):
        _decode_on_fake_device("bslz4", good[:-10], np.uint16, data.nbytes)
    with pytest.raises(CorruptPayloadError, match="uncompressedSize"):
        _decode_on_fake_device("", codecs.as_bytes(data), np.uint16, data.nbytes + 2)
    # and the next frame decodes
    _, out = _decode_on_fake_device("bslz4", good, np.uint16, data.nbytes)
    assert np.array_equal(np.asarray(out), data)


def test_a_frame_the_staging_ring_cannot_take_is_an_error_not_a_processed_frame():
    """With every staging slot still copying, the device path drops the frame:
    process() raises RingOverrunError, so the consumer counts an error instead
    of a processed frame. The device is made current around the work."""
    import contextlib

    from pvagpu.errors import RingOverrunError

    entered = []

    class Stats(GpuAdImageProcessor):
        def processFrame(self, frame):
            raise AssertionError("a dropped frame must not be processed")

    proc = Stats({"gpu": "none"})
    proc.start()
    proc._device = types.SimpleNamespace(frame=lambda value: (None, None), collect=lambda: None)
    proc.backend = types.SimpleNamespace(device_id=3)
    proc.xp = types.SimpleNamespace(cuda=types.SimpleNamespace(
        Device=lambda i: entered.append(i) or contextlib.nullcontext()))
    value = ntnda.value_from_image(np.zeros((4, 4), np.uint16), 7)
    with pytest.raises(RingOverrunError, match="frame 7 dropped"):
        proc.process(value)
    assert entered == [3]


def test_warm_up_launches_the_unshuffle_kernel_for_every_element_size_and_waits():
    """start() on a GPU compiles the kernel before the first frame."""
    from pvagpu.gpu.decode import DeviceDecoder
    log = []

    class Decoder(DeviceDecoder):
        def _unshuffle(self, shuffled, out, plan, stream):
            log.append(("launch", plan.itemsize, out.dtype.itemsize, plan.n_elements,
                        shuffled.nbytes))

    class Stream:
        def __init__(self, non_blocking=False):
            assert non_blocking

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def synchronize(self):
            log.append(("synchronize",))

    cp = types.SimpleNamespace(uint8=np.uint8, zeros=np.zeros, empty=np.empty,
                               cuda=types.SimpleNamespace(Stream=Stream))
    Decoder(cp, nvcomp=_FakeNvcomp()).warm_up()
    assert log == [("launch", k, k, 64, 64 * k) for k in (1, 2, 4, 8)] + [("synchronize",)]


def test_a_kernel_that_cannot_run_fails_start_with_a_clear_error():
    from pvagpu.errors import ConfigurationError
    p, _ = _fake_gpu_processor()

    def broken():
        raise RuntimeError("NVVM not found")
    p._device.decoder.warm_up = broken
    with pytest.raises(ConfigurationError, match="bit-unshuffle kernel does not run on cupy "
                                                 "on GPU 0.*NVVM not found.*--gpu none"):
        p.start()


@pytest.mark.pva
@pytest.mark.parametrize("example, cls, args, output_field", [
    ("gpu_frame_stats.py", "GpuFrameStats", {"threshold": 10}, "mean"),
    ("gpu_photon_counting.py", "GpuPhotonCounting", {"threshold": 5, "publishEvery": 4},
     "value"),
])
def test_gpu_examples_run_through_pvagpu_consumer_on_a_cpu_only_machine(
        processes, example, cls, args, output_field):
    """What a user without a GPU types: pvagpu-sim-server, and
    pvagpu-consumer with an example GPU processor (NumPy backend)."""
    import json
    import signal
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    # the server runs until the test stops it, so the consumer's start-up
    # time (imports, on a busy machine) does not matter
    sim = processes.start("pvagpu-sim-server", "-cn", "ex:image", "-nx", "64", "-ny", "48",
                          "-dt", "uint16", "-dist", "poisson", "-cdc", "bslz4", "-fps", "50",
                          "-nf", "10", "-rt", "300", "-std", "0", "-shd", "0", "-dc")
    proc = processes.start("pvagpu-consumer", "-ic", "ex:image", "-sc", "_", "-oc", "_",
                           "-pf", str(examples / example), "-pc", cls,
                           "-pa", json.dumps({**args, "gpu": "none"}), "-dc")
    ctx = Context("pva", nt=False)

    def status(condition, message):
        def check():
            value = ctx.get("pvapy:consumer:1:status", timeout=1, throw=False)
            return value if not isinstance(value, Exception) and condition(value) else None
        return wait_for(check, timeout=90, message=message)
    try:
        status(lambda v: v["processorStats.nProcessed"] >= 60, "60 frames processed")
        output = ctx.get("pvapy:consumer:1:output", timeout=10)
        sim.terminate()
        sim.communicate(timeout=30)
        final = status(lambda v: not v["receiverStats.connected"], "consumer saw the server go")
    finally:
        ctx.close()
    p = final["processorStats"]
    assert p["nProcessed"] >= 60 and p["nMissed"] == 0 and p["nErrors"] == 0
    assert final["userStats.nFrames"] == p["nProcessed"]
    assert final["userStats.gpuBackend"] == "numpy"
    assert final["userStats.nGpuFrames"] == p["nProcessed"]
    assert output_field in output
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out


def test_photon_counting_reset_zeroes_the_sum_in_place_on_the_frame_path():
    """configure({"reset": true}) (the control thread) only asks; the next
    frame zeroes the same array, so no device memory is freed under
    kernels of earlier frames."""
    cls = _example("gpu_photon_counting.py", "GpuPhotonCounting")
    p = cls({"threshold": 5, "publishEvery": 1, "gpu": "none"})
    p.dataPublisher = Recorder()
    p.start()
    frames = [RNG.poisson(4, IMAGE16.shape).astype(np.uint16) for _ in range(5)]
    for i, image in enumerate(frames[:3], 1):
        p.process(ntnda.value_from_image(image, i))
    total = p.sumImage
    p.configure({"reset": True})
    assert p.sumImage is total and p.resetRequested
    for i, image in enumerate(frames[3:], 4):
        p.process(ntnda.value_from_image(image, i))
    p.flush(wait=True)
    assert p.sumImage is total and not p.resetRequested
    expect = sum((f.astype(np.float32) > 5).astype(np.uint32) for f in frames[3:])
    last = ntnda.frame_from_value(p.dataPublisher.values[-1]).image
    assert np.array_equal(last, expect) and np.array_equal(total, expect)
