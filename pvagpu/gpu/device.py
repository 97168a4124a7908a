"""The device interface: everything the frame pipeline (:mod:`.pipeline`)
and the staging ring (:mod:`.staging`) ask of the memory they stage into
and compute on. Two implementations, both shipped:

* :class:`CupyDevice`: a CUDA device through CuPy. The only code of the
  GPU path that needs a device (allocation, pinned memory, streams,
  events, copies, the kernel launch) is in this class.
* :class:`HostDevice`: the host, for the NumPy backend. Memory is NumPy
  arrays, the host is its own device (staging and uploads copy nothing),
  streams are no-op contexts and events complete when recorded (they keep
  the time they were recorded at, so the pipeline's timings are the host's
  wall-clock times).

The interface (same names and meaning on both):

``xp``, ``is_gpu``
    the array module (cupy / numpy) and whether it is a GPU.
``activate()``
    a context in which this device is current in the calling thread.
``new_stream()``, ``current_stream()``
    a new stream / the calling thread's current one; a stream is a context
    manager that makes it current for array operations.
``alloc_pinned(n)``, ``alloc_device(n)``
    1-D uint8 buffers: page-locked host memory / device memory.
``stage(host, device, payload, stream)``
    put ``payload`` (1-D uint8) into a staging slot whose buffers are
    ``host`` and ``device`` and start its upload on ``stream``; returns the
    ``(host, device)`` views of the staged bytes.
``upload(array, stream)``
    a host array on the device (in stream order).
``to_host_async(array, stream)``
    start a device-to-host copy of a result: ``(host array, event)``, the
    event None when there is nothing to wait for.
``record_event(stream, timing=False)``, ``event_done(event)``,
``synchronize_event(event)``, ``wait_event(stream, event)``,
``synchronize_stream(stream)``, ``elapsed_ms(start, end)``
    events: record one on a stream, ask whether it completed, wait for it
    on the host, make a stream wait for it on the device, wait for a whole
    stream, and the milliseconds between two timing events.
``bitunshuffle(shuffled, out, n, itemsize, block, stream)``
    launch the bit-unshuffle kernel (:mod:`pvagpu.kernels.bitunshuffle`).
``decoder()``
    a new decoder of staged payloads for this device (:mod:`.decode`).
"""
from __future__ import annotations

import contextlib
import time

import numpy as np


class HostStream:
    """A stream of :class:`HostDevice`: work runs when it is called, so
    entering it changes nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class HostEvent:
    """An event of :class:`HostDevice`: complete when recorded, at ``time`` (s)."""
    __slots__ = ("time",)

    def __init__(self, t: float = 0.0):
        self.time = t


#: what every event without timing is on the host: complete
_COMPLETE = HostEvent()


class HostDevice:
    """The device interface on the host (NumPy); see the module docstring."""

    xp = np
    is_gpu = False

    def __init__(self):
        self._stream = HostStream()

    def decoder(self):
        from .decode import HostDecoder
        return HostDecoder()

    def activate(self):
        return contextlib.nullcontext()

    def new_stream(self) -> HostStream:
        return HostStream()

    def current_stream(self) -> HostStream:
        return self._stream

    def alloc_pinned(self, nbytes: int) -> np.ndarray:
        return np.empty(nbytes, np.uint8)

    def alloc_device(self, nbytes: int) -> np.ndarray:
        return np.empty(nbytes, np.uint8)

    def stage(self, host, device, payload, stream):
        """The payload is in host memory already, which is this device's
        memory: nothing is copied (the slot buffers stay untouched), and the
        payload stays valid as long as its frame."""
        return payload, payload

    def upload(self, array, stream):
        return array

    def to_host_async(self, array, stream):
        return np.asarray(array), None

    def record_event(self, stream, timing: bool = False) -> HostEvent:
        return HostEvent(time.perf_counter()) if timing else _COMPLETE

    def event_done(self, event) -> bool:
        return True

    def synchronize_event(self, event) -> None:
        pass

    def wait_event(self, stream, event) -> None:
        pass

    def synchronize_stream(self, stream) -> None:
        pass

    def elapsed_ms(self, start: HostEvent, end: HostEvent) -> float:
        return (end.time - start.time) * 1e3

    def bitunshuffle(self, shuffled, out, n, itemsize, block, stream) -> None:
        from ..kernels.bitunshuffle import bitunshuffle_reference
        out.view(np.uint8)[...] = bitunshuffle_reference(shuffled, n, itemsize, block)


class CupyDevice:
    """The device interface on CUDA device ``device_id`` with CuPy
    (device-only code; see the module docstring).

    Pinned buffers come from ``cupy.cuda.alloc_pinned_memory`` (page-locked,
    so ``cudaMemcpyAsync`` from them is truly asynchronous); the numpy array
    made with ``np.frombuffer`` holds the PinnedMemoryPointer through the
    buffer protocol, so the pinned memory lives exactly as long as that
    array. Device buffers are ``cupy.empty`` arrays (CuPy's memory pool)."""

    is_gpu = True

    def __init__(self, cupy, device_id: int = 0):
        self.xp = self.cp = cupy
        self.device_id = device_id

    def decoder(self):
        from .decode import DeviceDecoder
        return DeviceDecoder(self)

    def activate(self):
        # a CUDA device choice holds per thread: frames arrive on the PVA or
        # processing thread, statistics are read on the status thread
        return self.cp.cuda.Device(self.device_id)

    def new_stream(self):
        return self.cp.cuda.Stream(non_blocking=True)

    def current_stream(self):
        return self.cp.cuda.get_current_stream()

    def alloc_pinned(self, nbytes: int) -> np.ndarray:
        mem = self.cp.cuda.alloc_pinned_memory(nbytes)
        return np.frombuffer(mem, dtype=np.uint8, count=nbytes)

    def alloc_device(self, nbytes: int):
        return self.cp.empty(nbytes, dtype=self.cp.uint8)

    def stage(self, host, device, payload, stream):
        nbytes = int(payload.nbytes)
        host = host[:nbytes]
        host[...] = payload                      # the one host copy
        # cudaMemcpyAsync host -> device on `stream`; the source is pinned, so
        # the call returns at once and the copy runs on the copy engine
        self.cp.cuda.runtime.memcpyAsync(device.data.ptr, host.ctypes.data, nbytes,
                                         self.cp.cuda.runtime.memcpyHostToDevice, stream.ptr)
        return host, device[:nbytes]

    def upload(self, array, stream):
        with stream:
            # a pageable source is consumed before cupy.asarray returns
            return self.cp.asarray(np.ascontiguousarray(array))

    def to_host_async(self, array, stream):
        cp = self.cp
        if isinstance(array, np.ndarray):
            return array, None
        with stream:                 # in stream order after the work that made it
            array = cp.ascontiguousarray(array)
            mem = cp.cuda.alloc_pinned_memory(array.nbytes)
            # the numpy array holds the pinned memory (buffer protocol) until published
            host = np.frombuffer(mem, array.dtype, array.size).reshape(array.shape)
            cp.asnumpy(array, stream=stream, out=host, blocking=False)
        return host, self.record_event(stream)

    def record_event(self, stream, timing: bool = False):
        event = self.cp.cuda.Event(block=False, disable_timing=not timing)
        event.record(stream)
        return event

    def event_done(self, event) -> bool:
        return event.done

    def synchronize_event(self, event) -> None:
        event.synchronize()

    def wait_event(self, stream, event) -> None:
        stream.wait_event(event)

    def synchronize_stream(self, stream) -> None:
        stream.synchronize()

    def elapsed_ms(self, start, end) -> float:
        return self.cp.cuda.get_elapsed_time(start, end)

    def bitunshuffle(self, shuffled, out, n, itemsize, block, stream) -> None:
        from numba import cuda
        from ..kernels.bitunshuffle import launch_bitunshuffle
        # sync=False: numba must not synchronize CuPy's stream on import
        launch_bitunshuffle(cuda.as_cuda_array(shuffled, sync=False),
                            cuda.as_cuda_array(out, sync=False), n, itemsize, block,
                            stream=cuda.external_stream(stream.ptr))


def device_for(backend):
    """The device of a :class:`~pvagpu.gpu.backend.Backend`."""
    if backend.is_gpu:
        return CupyDevice(backend.xp, backend.device_id)
    return HostDevice()
