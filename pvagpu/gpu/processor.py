"""GpuAdImageProcessor: the processor class users subclass for GPU work.

A subclass implements ``processFrame(frame)`` and, optionally,
``processBatch(frames)``::

    class Threshold(GpuAdImageProcessor):
        def processFrame(self, frame):
            xp = self.xp                   # cupy on a GPU, numpy otherwise
            return {"nAbove": int(xp.count_nonzero(frame.image > 10))}

``frame`` is a :class:`pvagpu.ntnda.Frame` whose ``image`` is the decoded
image as a device array (``(ny, nx)`` or ``(ny, nx, 3)``; a NumPy array on
the NumPy backend), with ``unique_id``, ``attributes``, ``time_stamp``,
``data_time_stamp``, ``color_mode`` and ``codec``. ``processBatch(frames)``
gets a :class:`FrameBatch` (``images`` stacked on a new first axis, plus
the frames) when the consumer accumulates objects (``-ao``); without it,
batches are processed frame by frame.

What ``processFrame`` returns is published on the output channel:

* an image (an array): as an NTNDArray with the frame's uniqueId,
  timestamps and attributes; on a GPU it comes back through an asynchronous
  device-to-host copy into pinned memory and is published once that copy
  has completed (in order, at the latest when the processor stops);
* a dict of scalars: as a structure ``{uniqueId, timeStamp, <keys>}``, whose
  field types come from :meth:`getOutputFieldTypes` (declare them so the
  output channel has that structure from its first update);
* None: nothing.

For ``processBatch`` a list (one result per frame) or one result.

On a GPU, successive frames are staged and decoded on different CUDA
streams, but each ``processFrame``/``processBatch`` call runs on the device
after the previous one and the copy of its result, so state that a
processor keeps on the device is updated in frame order.

The backend is chosen at ``start()`` from ``configDict['gpu']`` (``auto``,
``none`` or a device number; the consumer's ``--gpu``), unless the runtime
called :meth:`setBackend` first. Ring options: ``gpuSlots`` (4),
``gpuSlotBytes`` (0 = from the first frame), ``gpuStreams`` (2).
Statistics gain the GPU fields of :data:`GPU_STATS_TYPES`, merged into what a
subclass's ``getStats`` returns.
"""
from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass, field

import numpy as np
from p4p import Type, Value

from .. import codecs, ntnda
from ..errors import (BatchFramesError, CodecError, ConfigurationError, FrameError,
                      RingOverrunError)
from ..hpc.ad_image_processor import AdImageProcessor
from .backend import Backend, numpy_backend, select_backend
from .staging import DEFAULT_SLOTS, DEFAULT_STREAMS, SlotRing

#: the GPU statistics: key -> p4p type code
GPU_STATS_TYPES = {
    "gpuBackend": "s", "gpuDevice": "s", "nGpuFrames": "I", "bytesToDevice": "L",
    "decodeTimeMs": "d", "kernelTimeMs": "d", "ringSlots": "I", "ringOccupancy": "I",
    "nRingOverruns": "I", "nDeviceDecodes": "I", "nHostDecodes": "I", "nPending": "I",
}

_SCALAR_CODES = ((bool, "?"), (int, "l"), (float, "d"), (str, "s"))

_log = logging.getLogger(__name__)


@dataclass
class FrameBatch:
    """Frames of one shape and dtype: ``images`` stacked (``(n, ny, nx)`` or
    ``(n, ny, nx, 3)``), ``frames`` their metadata (``frames[i].image`` is
    ``images[i]``)."""
    images: object
    frames: list = field(default_factory=list)

    @property
    def unique_ids(self) -> list:
        return [f.unique_id for f in self.frames]

    def __len__(self) -> int:
        return len(self.frames)


class _DevicePath:
    """Stage -> decode -> reshape on a CUDA device (device-only code)."""

    def __init__(self, backend: Backend, n_slots, slot_bytes, n_streams):
        from .decode import DeviceDecoder
        from .staging import CupyDevice
        self.cp = backend.xp
        self.ring = SlotRing(CupyDevice(self.cp), n_slots, slot_bytes, n_streams)
        self.decoder = DeviceDecoder(self.cp)
        self.n_device_decodes = self.n_host_decodes = 0
        self.decode_ms = self.kernel_ms = 0.0
        self.n_timed = 0
        self._timing = []          # (decode start, decode end, kernel start, kernel end) events
        # recorded after the last frame's user work (processFrame/processBatch
        # and the copy of its result) on whichever stream it ran
        self._user_done = None
        self._nvcomp_warned = False

    def event(self, stream):
        ev = self.cp.cuda.Event()  # timing enabled
        ev.record(stream)
        return ev

    def frame(self, value: Value):
        """``(frame, (stream, start event, decoded event))``, or ``(None, None)``
        for a frame the staging ring had no free slot for (counted)."""
        from .decode import decodes_on_device
        name = value["codec.name"]
        if name:
            payload, dtype, size = ntnda.compressed_payload(value)
        else:
            flat, info = ntnda.payload(value)
            dtype, payload, size = info.dtype, codecs.as_bytes(flat), flat.nbytes
        cp = self.cp
        if not decodes_on_device(name, payload, size) or (name and self._without_nvcomp()):
            # blosc, jpeg, zlib, lz4hdf5 (and lz4, bslz4 when nvcomp cannot be
            # used): decoded and reshaped on the host, uploaded
            frame = ntnda.frame_from_value(value)
            stream = self.ring.streams[self.n_host_decodes % len(self.ring.streams)]
            start = self.event(stream)
            with stream:
                # a pageable source is consumed before cupy.asarray returns
                frame.image = cp.asarray(np.ascontiguousarray(frame.image))
            self.ring.bytes_to_device += frame.image.nbytes
            self.n_host_decodes += 1
            return frame, (stream, start, self.event(stream))
        staged = self.ring.stage(payload, size)
        if staged is None:
            return None, None
        stream = staged.stream
        start = self.event(stream)
        flat_dev = self.decoder.decode(name, staged, dtype, size)
        self.n_device_decodes += 1
        decoded = self.event(stream)
        with stream:
            image, mode = ntnda.image_from_pixels(flat_dev, value, xp=cp)
        return ntnda.frame_of(value, image, mode), (stream, start, decoded)

    def begin_user_work(self, stream):
        """Queue on ``stream`` a wait for the previous frame's user work, and
        return an event marking where this frame's starts.

        Successive frames run on different (non-blocking) streams, so without
        this wait the device would run one frame's processFrame concurrently
        with the previous frame's: a processor that keeps device state
        (``self.total += frame.image``) would lose updates, and the
        asynchronous copy of a returned state array could see the next
        frame's changes. The decode of this frame, queued before the wait,
        still overlaps the previous frame's work."""
        if self._user_done is not None:
            stream.wait_event(self._user_done)
        return self.event(stream)

    def end_user_work(self, stream) -> None:
        """Mark the end of this frame's user work (after its result copy)."""
        ev = self.cp.cuda.Event(block=False, disable_timing=True)
        ev.record(stream)
        self._user_done = ev

    def _without_nvcomp(self) -> bool:
        problem = self.decoder.nvcomp_problem()
        if problem and not self._nvcomp_warned:
            self._nvcomp_warned = True
            _log.warning("nvcomp cannot be used (%s): lz4 and bslz4 frames are decoded on the "
                         "host", problem)
        return problem is not None

    def finished(self, timing, begun) -> None:
        stream, start, decoded = timing
        self._timing.append((start, decoded, begun, self.event(stream)))
        self.collect()

    def collect(self) -> None:
        """Accumulate the times of frames whose events have completed."""
        cp = self.cp
        while self._timing and self._timing[0][3].done:
            start, decoded, begun, end = self._timing.pop(0)
            self.decode_ms += cp.cuda.get_elapsed_time(start, decoded)
            # from after the wait for the previous frame, not from the decode
            self.kernel_ms += cp.cuda.get_elapsed_time(begun, end)
            self.n_timed += 1

    def to_host_async(self, array, stream):
        """Start a device-to-host copy into pinned memory; ``(host, event)``."""
        cp = self.cp
        with stream:                 # in stream order after the processFrame that made it
            array = cp.ascontiguousarray(array)
            mem = cp.cuda.alloc_pinned_memory(array.nbytes)
            # the numpy array holds the pinned memory (buffer protocol) until published
            host = np.frombuffer(mem, array.dtype, array.size).reshape(array.shape)
            cp.asnumpy(array, stream=stream, out=host, blocking=False)
            ev = cp.cuda.Event(block=False, disable_timing=True)
            ev.record(stream)
        return host, ev


class GpuAdImageProcessor(AdImageProcessor):
    """Base class of GPU processors (see the module docstring)."""

    def __init__(self, configDict=None):
        configDict = dict(configDict or {})
        AdImageProcessor.__init__(self, configDict)
        self.gpuSpec = configDict.get("gpu", "auto")
        self.gpuSlots = int(configDict.get("gpuSlots", DEFAULT_SLOTS))
        self.gpuSlotBytes = int(configDict.get("gpuSlotBytes", 0))
        self.gpuStreams = int(configDict.get("gpuStreams", DEFAULT_STREAMS))
        self.backend = None
        self.xp = np
        self._device = None
        self._pending = []          # (host image, event, frame) awaiting publication
        self._output_type = None
        self._reset_gpu_counters()

    # -- subclass hooks wrapped so that the GPU statistics are always there --

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        if "processBatch" in own and not getattr(own["processBatch"], "_pvagpu_wrapped", False):
            cls.processBatch = _wrap_batch(own["processBatch"])
        if "getStats" in own and not getattr(own["getStats"], "_pvagpu_wrapped", False):
            cls.getStats = _wrap_merge(own["getStats"], GpuAdImageProcessor.getStats)
        if ("getStatsPvaTypes" in own
                and not getattr(own["getStatsPvaTypes"], "_pvagpu_wrapped", False)):
            cls.getStatsPvaTypes = _wrap_merge(own["getStatsPvaTypes"],
                                               GpuAdImageProcessor.getStatsPvaTypes)
        if "resetStats" in own and not getattr(own["resetStats"], "_pvagpu_wrapped", False):
            cls.resetStats = _wrap_reset(own["resetStats"])

    # -- backend --------------------------------------------------------------

    def setBackend(self, backend: Backend) -> None:
        """Use ``backend`` (the runtime calls this, or ``start()`` selects one)."""
        self.backend = backend
        self.xp = backend.xp
        self._device = None
        if backend.is_gpu:
            # streams and buffers belong to the device current when they are
            # made: make it the backend's, whatever thread calls this
            with backend.xp.cuda.Device(backend.device_id):
                self._device = _DevicePath(backend, self.gpuSlots, self.gpuSlotBytes,
                                           self.gpuStreams)
        self.logger.info("backend: %s", backend.describe())

    def start(self):
        if self.backend is None:
            self.setBackend(select_backend(self.gpuSpec))
        if self._device is not None:
            try:
                with self._on_device():
                    self._device.decoder.warm_up()
            except Exception as exc:  # noqa: BLE001 - any compile or launch failure
                raise ConfigurationError(
                    f"the bit-unshuffle kernel does not run on {self.backend.describe()} "
                    f"({type(exc).__name__}: {exc}); check the numba-cuda install, or run "
                    f"with --gpu none") from exc

    def stop(self):
        self.flush(wait=True)

    # -- the frame path -------------------------------------------------------

    def processFrame(self, frame):
        """Override: process one decoded frame; return an image, a dict or None."""
        return None

    def decodeFrame(self, pvObject):
        """The :class:`~pvagpu.ntnda.Frame` of an NTNDArray on the backend
        (None for a frame the staging ring had no room for; counted)."""
        if self.backend is None:
            self.setBackend(numpy_backend("no backend selected before the first frame"))
        if self._device is None:
            return ntnda.frame_from_value(pvObject), None
        return self._device.frame(pvObject)

    def _on_device(self):
        """The backend's device made current in the calling thread: frames
        arrive on the PVA or processing thread, not on the thread that ran
        start(), and a CUDA device choice holds per thread."""
        if self._device is None:
            return contextlib.nullcontext()
        return self.xp.cuda.Device(self.backend.device_id)

    def process(self, pvObject):
        if len(pvObject["dimension"]) == 0:
            return pvObject
        with self._on_device():
            return self._process_on_device(pvObject)

    def _process_on_device(self, pvObject):
        self.flush()
        frame, timing = self.decodeFrame(pvObject)
        if frame is None:
            raise self._overrun(pvObject)
        stream = timing[0] if timing else None
        if stream is None:
            result = self.processFrame(frame)
            self.nGpuFrames += 1
            self._publish(result, frame, stream)
            return pvObject
        begun = self._device.begin_user_work(stream)
        try:
            with stream:
                result = self.processFrame(frame)
            self._device.finished(timing, begun)
            self.nGpuFrames += 1
            self._publish(result, frame, stream)
        finally:
            self._device.end_user_work(stream)
        return pvObject

    def _overrun(self, pvObject) -> RingOverrunError:
        """The error for a frame the staging ring had no free slot for."""
        return RingOverrunError(
            f"frame {_unique_id(pvObject)} dropped: all {self.gpuSlots} staging slots are "
            f"still copying (raise gpuSlots, or process faster)")

    def _batch_frames(self, pvObjects, failures: list):
        """Decode ``pvObjects`` and group consecutive frames of one shape and
        dtype into FrameBatches. A frame that cannot be decoded, or finds the
        staging ring full, is left out and added to ``failures`` as
        ``(uniqueId, exception)``."""
        xp = self.xp
        groups, current, key, streams = [], [], None, []
        for value in pvObjects:
            if len(value["dimension"]) == 0:
                continue
            try:
                frame, timing = self.decodeFrame(value)
            except (FrameError, CodecError) as exc:
                failures.append((_unique_id(value), exc))
                continue
            if frame is None:
                failures.append((_unique_id(value), self._overrun(value)))
                continue
            if timing is not None:
                streams.append(timing)
            k = (frame.image.shape, frame.image.dtype)
            if current and k != key:
                groups.append(current)
                current = []
            current.append(frame)
            key = k
        if current:
            groups.append(current)
        if self._device is not None:
            # the stack runs on the current stream: wait for every decode
            for stream, _, decoded in streams:
                self.xp.cuda.get_current_stream().wait_event(decoded)
        batches = []
        for frames in groups:
            images = xp.stack([f.image for f in frames])
            for i, f in enumerate(frames):
                f.image = images[i]
            batches.append(FrameBatch(images, frames))
        if self._device is not None:
            # the decoded buffers go back to the slot streams' memory pool once
            # dropped here: later decodes on those streams wait for the stack
            stacked = self.xp.cuda.get_current_stream().record()
            for stream in self._device.ring.streams:
                stream.wait_event(stacked)
        return batches

    # -- publication ----------------------------------------------------------

    def getOutputFieldTypes(self):
        """Override when ``processFrame`` returns dicts: ``{key: type}`` with
        pvapy-style constants (``pva.DOUBLE``) or p4p codes (``'d'``)."""
        return {}

    def getOutputPvObjectType(self, pvObject):
        """The scalar structure when :meth:`getOutputFieldTypes` declares
        fields, else pvagpu's NTNDArray type (the exact type of the images
        this class publishes: p4p posts only Values of the type a record was
        opened with)."""
        types = self.getOutputFieldTypes()
        if types:
            return self._scalar_type(types)
        return ntnda.NTNDARRAY_TYPE

    def _scalar_type(self, types: dict) -> Type:
        if self._output_type is None:
            fields = [("uniqueId", "i"), ("timeStamp", ntnda.TIME_T)]
            fields += [(str(k), ntnda.p4p_code(t)) for k, t in types.items()]
            self._output_type = Type(fields)
        return self._output_type

    def _publish(self, result, frame, stream) -> None:
        if result is None:
            return
        if isinstance(result, dict):
            self.updateOutputChannel(self._scalar_value(result, frame))
            return
        if self._device is not None and not isinstance(result, np.ndarray):
            host, event = self._device.to_host_async(result, stream)
            self._pending.append((host, event, frame))
            return
        self.updateOutputChannel(self._image_value(np.asarray(result), frame))

    def flush(self, wait: bool = False) -> None:
        """Publish the images whose device-to-host copy has completed (all of
        them with ``wait``), in order."""
        if self._device is not None:
            self._device.collect()
        while self._pending:
            host, event, frame = self._pending[0]
            if not event.done:
                if not wait:
                    return
                event.synchronize()
            self._pending.pop(0)
            self.updateOutputChannel(self._image_value(host, frame))

    def _image_value(self, image, frame) -> Value:
        mode = frame.color_mode if image.ndim == 3 else ntnda.ColorMode.MONO
        return ntnda.value_from_image(
            image, frame.unique_id, color_mode=mode, time_stamp=frame.time_stamp,
            data_time_stamp=frame.data_time_stamp, attributes=frame.attributes,
            descriptor=self.DESCRIPTOR)

    def _scalar_value(self, result: dict, frame) -> Value:
        scalars = {str(k): _scalar(v) for k, v in result.items()}
        declared = self.getOutputFieldTypes()
        if declared:
            vtype = self._scalar_type(declared)
        else:
            vtype = Type([("uniqueId", "i"), ("timeStamp", ntnda.TIME_T)]
                         + [(k, _code(v)) for k, v in scalars.items()])
        value = Value(vtype, {"uniqueId": frame.unique_id,
                              "timeStamp": frame.time_stamp._asdict()})
        for k, v in scalars.items():
            if k in value:
                value[k] = v
        return value

    # -- statistics -------------------------------------------------------------

    def _reset_gpu_counters(self) -> None:
        self.nGpuFrames = 0
        if self._device is not None:
            self._device.ring.reset_stats()
            d = self._device
            d.n_device_decodes = d.n_host_decodes = d.n_timed = 0
            d.decode_ms = d.kernel_ms = 0.0

    def resetStats(self):
        self._reset_gpu_counters()

    def getStats(self):
        backend = self.backend or numpy_backend()
        stats = {"gpuBackend": backend.name,
                 "gpuDevice": backend.describe(), "nGpuFrames": self.nGpuFrames,
                 "nPending": len(self._pending)}
        d = self._device
        if d is None:
            stats.update(bytesToDevice=0, decodeTimeMs=0.0, kernelTimeMs=0.0, ringSlots=0,
                         ringOccupancy=0, nRingOverruns=0, nDeviceDecodes=0, nHostDecodes=0)
        else:
            # times are collected by the processing thread (flush); this may run
            # in the status thread, so it only reads, with the backend's device
            # current (a CUDA call from a thread without one would create a
            # context on GPU 0)
            with self._on_device():
                ring = d.ring.stats()
            per = max(d.n_timed, 1)
            stats.update(bytesToDevice=ring["bytesToDevice"], decodeTimeMs=d.decode_ms / per,
                         kernelTimeMs=d.kernel_ms / per, ringSlots=ring["ringSlots"],
                         ringOccupancy=ring["ringOccupancy"], nRingOverruns=ring["nRingOverruns"],
                         nDeviceDecodes=d.n_device_decodes, nHostDecodes=d.n_host_decodes)
        return stats

    def getStatsPvaTypes(self):
        return dict(GPU_STATS_TYPES)


def _unique_id(value):
    try:
        return int(value["uniqueId"])
    except (KeyError, TypeError, ValueError):
        return None


def _scalar(v):
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        v = v.item()            # a 0-d device array: one small synchronizing copy
    if isinstance(v, (np.generic,)):
        v = v.item()
    return v


def _code(v) -> str:
    for kind, code in _SCALAR_CODES:
        if isinstance(v, kind):
            return code
    raise FrameError(f"processFrame returned a {type(v).__name__}; a dict result holds "
                     f"bool, int, float or str values")


def _wrap_batch(user_method):
    @functools.wraps(user_method)
    def processBatch(self, objects):
        if isinstance(objects, FrameBatch):
            return user_method(self, objects)
        with self._on_device():
            return _process_batches(self, user_method, objects)
    processBatch._pvagpu_wrapped = True
    return processBatch


def _process_batches(self, user_method, objects):
    """Decode ``objects`` into FrameBatches, run ``user_method`` on each and
    publish its results. Frames that could not be decoded or staged are left
    out of the batches; BatchFramesError afterwards names them (the consumer
    counts each as an error, the others as processed)."""
    self.flush()
    results, failures = [], []
    batches = self._batch_frames(objects, failures)
    stream = self.xp.cuda.get_current_stream() if self._device is not None else None
    if stream is not None:
        # in order after the user work of earlier frames (see begin_user_work)
        self._device.begin_user_work(stream)
    try:
        for batch in batches:
            result = user_method(self, batch)
            self.nGpuFrames += len(batch)
            if isinstance(result, list):
                for r, frame in zip(result, batch.frames):
                    self._publish(r, frame, stream)
            else:
                self._publish(result, batch.frames[-1], stream)
            results.append(result)
    finally:
        if stream is not None:
            self._device.end_user_work(stream)
    if failures:
        raise BatchFramesError(failures, len(objects) - len(failures))
    return results


def _wrap_merge(user_method, base_method):
    @functools.wraps(user_method)
    def merged(self):
        out = dict(base_method(self))
        out.update(user_method(self) or {})
        return out
    merged._pvagpu_wrapped = True
    return merged


def _wrap_reset(user_method):
    @functools.wraps(user_method)
    def reset(self):
        GpuAdImageProcessor._reset_gpu_counters(self)
        return user_method(self)
    reset._pvagpu_wrapped = True
    return reset
