"""Shared test doubles of the GPU path's tests: devices that behave like a
CUDA device where it matters to the code under test (events that complete
only when told, streams that log what is queued on them, device arrays
with CuPy's ``.data.ptr``), a fake nvcomp, and small processors."""
from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import types

import numpy as np

from pvagpu.gpu import GpuAdImageProcessor
from pvagpu.gpu.backend import Backend
from pvagpu.gpu.decode import HostDecoder
from pvagpu.gpu.device import HostDevice

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RNG = np.random.default_rng(5)
IMAGE16 = RNG.poisson(4, (24, 40)).astype(np.uint16)
CODECS = ["", "lz4", "bslz4", "blosc", "zlib", "lz4hdf5"]


def example(name, cls):
    """A class of the repository's examples/ directory."""
    path = os.path.join(REPO, "examples", name)
    spec = importlib.util.spec_from_file_location(f"example_{name[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, cls)


class Recorder:
    """Stands for the publisher: keeps what the processor published."""

    def __init__(self):
        self.values = []

    def updateOutputChannel(self, value):
        self.values.append(value)


def started(cls, config=None):
    """A processor of ``cls`` on the NumPy backend, started, publishing to a Recorder."""
    p = cls({"gpu": "none", **(config or {})})
    p.dataPublisher = Recorder()
    p.start()
    return p


# ---------------------------------------------------------------------------
# A device whose copies complete when the test says (for the staging ring)
# ---------------------------------------------------------------------------

class FakeDevice(HostDevice):
    """Host memory with a real staging copy (as CupyDevice makes), and
    events that complete only when the test says so."""

    def __init__(self, stream_names=None):
        super().__init__()
        self.events = []
        self.copies = []
        self.allocations = 0
        self.waited = 0
        self._names = iter(stream_names or (f"stream{i}" for i in range(1000)))

    def new_stream(self):
        return next(self._names)

    def alloc_pinned(self, nbytes):
        self.allocations += 1
        return np.zeros(nbytes, np.uint8)

    def stage(self, host, device, payload, stream):
        nbytes = payload.nbytes
        host[:nbytes] = payload
        device[:nbytes] = host[:nbytes]
        self.copies.append((stream, nbytes))
        return host[:nbytes], device[:nbytes]

    def record_event(self, stream, timing=False):
        event = {"done": False, "stream": stream}
        self.events.append(event)
        return event

    def event_done(self, event):
        return event["done"]

    def synchronize_event(self, event):
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


# ---------------------------------------------------------------------------
# A device that logs, in queue order, what would run on which stream
# ---------------------------------------------------------------------------

class LogStream:
    def __init__(self, device, name):
        self.device, self.name = device, name

    def __enter__(self):
        self.device.current.append(self)
        return self

    def __exit__(self, *exc):
        self.device.current.pop()


class LogEvent:
    def __init__(self, stream, t, done):
        self.stream, self.t, self.done = stream, t, done


class LoggingDevice(HostDevice):
    """Streams and events that log ``(stream name, what, event)`` in the
    order the work would be queued on a device; events are done when
    recorded unless ``events_done`` is False (then ``complete()``)."""

    def __init__(self, events_done=True):
        super().__init__()
        self.log = []
        self.clock = 0
        self.current = []
        self.n_streams = 0
        self.events_done = events_done
        self.events = []
        self.activations = 0
        self.null = LogStream(self, "null")

    def activate(self):
        self.activations += 1
        return contextlib.nullcontext()

    def decoder(self):
        return LoggingDecoder(self)

    def new_stream(self):
        stream = LogStream(self, f"s{self.n_streams}")
        self.n_streams += 1
        return stream

    def current_stream(self):
        return self.current[-1] if self.current else self.null

    def record_event(self, stream, timing=False):
        self.clock += 1
        event = LogEvent(stream, self.clock, self.events_done)
        self.events.append(event)
        self.log.append((stream.name, "record", event))
        return event

    def event_done(self, event):
        return event.done

    def synchronize_event(self, event):
        event.done = True

    def wait_event(self, stream, event):
        self.log.append((stream.name, "wait", event))

    def elapsed_ms(self, start, end):
        return float(end.t - start.t)

    def to_host_async(self, array, stream):
        self.queued("copy to host", stream)
        return np.array(array), self.record_event(stream)

    def queued(self, what, stream=None):
        stream = stream or self.current_stream()
        self.log.append((stream.name, what, None))

    def complete(self):
        for event in self.events:
            event.done = True

    def at(self, stream, what):
        """Index in the log of the first ``what`` queued on ``stream``."""
        return next(i for i, (s, op, _) in enumerate(self.log) if s == stream and op == what)


class LoggingDecoder(HostDecoder):
    """The host decoder, logging ``decode <n>`` (n = 1, 2, ...) on the
    payload's stream."""

    def __init__(self, device):
        self.device = device
        self.n = 0

    def decode(self, name, staged, dtype, uncompressed_size):
        self.n += 1
        self.device.queued(f"decode {self.n}", staged.stream)
        return super().decode(name, staged, dtype, uncompressed_size)


class OnDevice:
    """Stands for a device array (not a numpy array: it is copied to the host)."""

    def __init__(self, array):
        self.array = array

    def __array__(self, dtype=None, copy=None):
        return self.array


class Accumulate(GpuAdImageProcessor):
    """Logs its work on the device's current stream and returns device
    arrays: what must not race."""

    def processFrame(self, frame):
        self.pipeline.device.queued(f"user {frame.unique_id}")
        return OnDevice(frame.image)

    def processFrameBatch(self, batch):
        self.pipeline.device.queued(f"user {batch.unique_ids}")
        return None


def fake_gpu_processor(cls=Accumulate, config=None, **device_options):
    """A processor on a 'cupy' backend whose device is a LoggingDevice."""
    p = cls(dict(config or {}))
    p.dataPublisher = Recorder()
    device = LoggingDevice(**device_options)
    p.setBackend(Backend("cupy", np, device_id=0, device_name="fake"), device=device)
    return p, device


# ---------------------------------------------------------------------------
# Device arrays with CuPy's .data.ptr, a fake cupy module and nvcomp, for the
# DeviceDecoder: host memory standing in for device memory, and an nvcomp
# that follows nvcompBatchedLZ4DecompressAsync's contract (arrays of chunk
# addresses, size_t sizes, int32 statuses, actual sizes) with python-lz4
# ---------------------------------------------------------------------------

class DevArray(np.ndarray):
    """A numpy array with CuPy's ``.data.ptr``."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)


def dev(a):
    return np.asarray(a).view(DevArray)


class FakeStream:
    ptr = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def fake_cupy():
    """The array functions of cupy that DeviceDecoder uses, on DevArrays
    (new uint8 buffers are filled with 0xA5, so unwritten bytes show)."""
    return types.SimpleNamespace(
        uint8=np.uint8, uint64=np.uint64, int32=np.int32,
        empty=lambda n, dtype: dev(np.full(n, 0xA5, np.uint8).view(dtype)
                                   if np.dtype(dtype).itemsize == 1 else np.empty(n, dtype)),
        zeros=lambda n, dtype: dev(np.zeros(n, dtype)),
        full=lambda n, v, dtype: dev(np.full(n, v, dtype)),
        asarray=dev, count_nonzero=np.count_nonzero, argmax=np.argmax)


class FakeCudaDevice(HostDevice):
    """The host standing in for a CUDA device under DeviceDecoder: fake cupy
    arrays, FakeStreams, the CPU reference as the unshuffle kernel; logs
    kernel launches and stream synchronizations."""

    def __init__(self):
        super().__init__()
        self.xp = fake_cupy()
        self.log = []

    def new_stream(self):
        return FakeStream()

    def synchronize_stream(self, stream):
        self.log.append(("synchronize",))

    def bitunshuffle(self, shuffled, out, n, itemsize, block, stream):
        self.log.append(("launch", itemsize, out.dtype.itemsize, n, shuffled.nbytes))
        super().bitunshuffle(np.asarray(shuffled), out, n, itemsize, block, stream)


class FakeNvcomp:
    def __init__(self, corrupt_status=None):
        self.calls = []
        self.corrupt_status = corrupt_status

    def temp_bytes(self, n, max_chunk, total, stream_ptr):
        return 0

    def decompress(self, comp_ptrs, comp_sizes, out_sizes, actual_sizes, n, temp_ptr, temp_bytes,
                   out_ptrs, statuses, stream_ptr):
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


class FakeFunction:
    """A ctypes function of a fake library."""

    def __init__(self, body=None):
        self.body = body or (lambda *args: 0)
        self.argtypes = self.restype = None

    def __call__(self, *args):
        return self.body(*args)


def fake_nvcomp_lib(version):
    """A libnvcomp of ``version`` (major * 1000 + minor * 100 + patch)."""
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
        nvcompGetProperties=FakeFunction(properties),
        nvcompBatchedLZ4DecompressGetTempSize=FakeFunction(temp_size),
        nvcompBatchedLZ4DecompressAsync=FakeFunction())
