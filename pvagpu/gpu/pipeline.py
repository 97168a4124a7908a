"""The frame pipeline of GPU processors, one code path for both backends.

Written only against the device interface (:mod:`.device`), so the NumPy
backend (:class:`~.device.HostDevice`) runs exactly this code, ring,
events and ordering included, and only the calls inside
:class:`~.device.CupyDevice` and :mod:`.nvcomp` need a GPU. For each frame:

1. **stage**: a payload that the device's decoder decodes (see
   :func:`.decode.decodes_on_device`) is copied once into a slot of the
   pinned :class:`~.staging.SlotRing` and uploaded on the slot's stream; a
   full ring drops the frame with :class:`~pvagpu.errors.RingOverrunError`
   (counted in ``nRingOverruns``). Any other payload is decoded on the host
   and uploaded (``nHostDecodes``).
2. **decode and reshape** on the slot's stream (``nDeviceDecodes``), between
   two timing events (``decodeTimeMs``).
3. **user work**: ``processFrame`` (or ``processFrameBatch`` for a stack
   of frames) runs on the frame's stream, in device order after the
   previous frame's user work and its result copy (see
   :meth:`FramePipeline._begin_user_work`), timed from the end of that wait
   (``kernelTimeMs``).
4. **results**: an image comes back through an asynchronous device-to-host
   copy into pinned memory; results are published in frame order, each as
   soon as its copy completed (:meth:`FramePipeline.flush`; at the latest
   when the processor stops). A dict result is converted at once and
   waits only for the results before it.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .. import codecs, ntnda
from ..errors import BatchFramesError, CodecError, FrameError, RingOverrunError
from .staging import SlotRing


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


@dataclass(slots=True)
class Decoded:
    """A decoded frame: valid in stream order on ``stream``, decoded between
    the timing events ``start`` and ``end``."""
    frame: ntnda.Frame
    stream: Any
    start: Any
    end: Any


def unique_id(value):
    """The uniqueId of a Value, None when it has none that reads as an int."""
    try:
        return int(value["uniqueId"])
    except (KeyError, TypeError, ValueError):
        return None


class FrameTimes:
    """Decode and user-work times, read from each frame's events once they
    completed (the device never waits for them)."""

    def __init__(self, device):
        self.device = device
        self._queue = deque()      # (decode start, decode end, work start, work end)
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.decode_ms = self.kernel_ms = 0.0

    def add(self, decode_start, decode_end, work_start, work_end) -> None:
        self._queue.append((decode_start, decode_end, work_start, work_end))

    def collect(self) -> None:
        elapsed = self.device.elapsed_ms
        while self._queue and self.device.event_done(self._queue[0][3]):
            decode_start, decode_end, work_start, work_end = self._queue.popleft()
            self.decode_ms += elapsed(decode_start, decode_end)
            self.kernel_ms += elapsed(work_start, work_end)
            self.n += 1


class FramePipeline:
    """Stage -> decode -> reshape -> user work -> results, on ``device``
    with its ``decoder``. ``outputs`` (:class:`~.results.ResultValues`)
    builds the Values that ``publish`` sends out."""

    def __init__(self, device, decoder, outputs, publish, n_slots: int, slot_bytes: int,
                 n_streams: int):
        self.device = device
        self.decoder = decoder
        self.outputs = outputs
        self.publish = publish
        self.ring = SlotRing(device, n_slots, slot_bytes, n_streams)
        self.times = FrameTimes(device)
        self._pending = deque()    # (result, copy event or None, frame or None)
        # recorded after the last user work (and its result copies), on
        # whichever stream it ran
        self._user_done = None
        self.reset_stats()

    def reset_stats(self) -> None:
        self.n_frames = self.n_device_decodes = self.n_host_decodes = 0
        self.times.reset()
        self.ring.reset_stats()

    def warm_up(self) -> None:
        with self.device.activate():
            self.decoder.warm_up()

    # -- stage, decode, reshape -------------------------------------------------

    def decode(self, value) -> Decoded:
        """Decode ``value`` onto the device (the device current)."""
        name = value["codec.name"]
        if name:
            payload, dtype, size = ntnda.compressed_payload(value)
        else:
            flat, info = ntnda.payload(value)
            dtype, payload, size = info.dtype, codecs.as_bytes(flat), flat.nbytes
        device = self.device
        if not self.decoder.decodes(name, payload, size):
            # blosc, jpeg, zlib, lz4hdf5 (and lz4 and bslz4 when the device
            # decoder cannot take them): decoded on the host, uploaded
            frame = ntnda.frame_from_value(value)
            streams = self.ring.streams
            stream = streams[self.n_host_decodes % len(streams)]
            start = device.record_event(stream, timing=True)
            frame.image = device.upload(frame.image, stream)
            self.ring.count_upload(frame.image.nbytes)
            self.n_host_decodes += 1
            return Decoded(frame, stream, start, device.record_event(stream, timing=True))
        staged = self.ring.stage(payload, size)
        if staged is None:
            raise RingOverrunError(
                f"frame {unique_id(value)} dropped: all {self.ring.n_slots} staging slots are "
                f"still copying (raise gpuSlots, or process faster)")
        stream = staged.stream
        start = device.record_event(stream, timing=True)
        flat = self.decoder.decode(name, staged, dtype, size)
        self.n_device_decodes += 1
        end = device.record_event(stream, timing=True)
        with stream:
            image, mode = ntnda.image_from_pixels(flat, value, xp=device.xp)
        return Decoded(ntnda.frame_of(value, image, mode), stream, start, end)

    def decode_frame(self, value):
        """The frame of ``value``, usable on the calling thread's current
        stream; None when the staging ring had no room for it (counted)."""
        with self.device.activate():
            try:
                decoded = self.decode(value)
            except RingOverrunError:
                return None
            self.device.wait_event(self.device.current_stream(), decoded.end)
            return decoded.frame

    # -- user work, in device order ------------------------------------------------

    def _begin_user_work(self, stream):
        """Queue on ``stream`` a wait for the previous user work, and return
        a timing event marking where this work starts.

        Successive frames run on different (non-blocking) streams, so without
        this wait the device would run one frame's processFrame concurrently
        with the previous frame's: a processor that keeps device state
        (``self.total += frame.image``) would lose updates, and the
        asynchronous copy of a returned state array could see the next
        frame's changes. The decode of this frame, queued before the wait,
        still overlaps the previous frame's work."""
        if self._user_done is not None:
            self.device.wait_event(stream, self._user_done)
        return self.device.record_event(stream, timing=True)

    def _end_user_work(self, stream) -> None:
        """Mark the end of this user work (after its result copies)."""
        self._user_done = self.device.record_event(stream)

    def run_frame(self, value, process_frame):
        """Decode ``value`` and run ``process_frame(frame)`` on it; queue its
        result for publication. RingOverrunError for a dropped frame."""
        device = self.device
        with device.activate():
            decoded = self.decode(value)
            stream = decoded.stream
            begun = self._begin_user_work(stream)
            try:
                with stream:
                    result = process_frame(decoded.frame)
                    self.times.add(decoded.start, decoded.end, begun,
                                   device.record_event(stream, timing=True))
                    self.n_frames += 1
                    self._emit(result, decoded.frame, stream)
            finally:
                self._end_user_work(stream)
            self._publish_completed(False)
        return result

    def run_batches(self, values, process_batch) -> list:
        """Decode ``values`` into FrameBatches (consecutive frames of one shape
        and dtype, stacked) and run ``process_batch(batch)`` on each, on the
        calling thread's current stream; queue the results (a list: one per
        frame; else one for the batch's last frame). Frames that cannot be
        decoded or staged are left out; BatchFramesError afterwards names
        them (the others count as processed). Frames without dimensions are
        passed over."""
        device = self.device
        with device.activate():
            failures, decoded = [], []
            for value in values:
                if len(value["dimension"]) == 0:
                    continue
                try:
                    decoded.append(self.decode(value))
                except (FrameError, CodecError, RingOverrunError) as exc:
                    failures.append((unique_id(value), exc))
            stream = device.current_stream()
            batches = self._stack(decoded, stream)
            self._begin_user_work(stream)
            results = []
            try:
                for batch in batches:
                    result = process_batch(batch)
                    self.n_frames += len(batch)
                    if isinstance(result, list):
                        for one, frame in zip(result, batch.frames):
                            self._emit(one, frame, stream)
                    else:
                        self._emit(result, batch.frames[-1], stream)
                    results.append(result)
            finally:
                self._end_user_work(stream)
            self._publish_completed(False)
        if failures:
            raise BatchFramesError(failures, len(values) - len(failures))
        return results

    def _stack(self, decoded: list, stream) -> list:
        """FrameBatches of ``decoded``, stacked on ``stream`` (current)."""
        device, xp = self.device, self.device.xp
        groups, key = [], None
        for d in decoded:
            device.wait_event(stream, d.end)       # the stack reads every decode
            k = (d.frame.image.shape, d.frame.image.dtype)
            if not groups or k != key:
                groups.append([])
            groups[-1].append(d.frame)
            key = k
        batches = []
        for frames in groups:
            images = xp.stack([f.image for f in frames])
            for i, f in enumerate(frames):
                f.image = images[i]
            batches.append(FrameBatch(images, frames))
        if decoded:
            # the decoded buffers go back to the slot streams' memory pool once
            # dropped here: later decodes on those streams wait for the stack
            stacked = device.record_event(stream)
            for slot_stream in self.ring.streams:
                device.wait_event(slot_stream, stacked)
        return batches

    # -- results, published in order ---------------------------------------------

    def _emit(self, result, frame, stream) -> None:
        """Queue ``result`` (on ``stream``, current, after the work that made it)."""
        if result is None:
            return
        if isinstance(result, dict):
            self._pending.append((self.outputs.scalar_value(result, frame), None, None))
            return
        host, event = self.device.to_host_async(result, stream)
        self._pending.append((host, event, frame))

    def flush(self, wait: bool = False) -> None:
        """Publish the results whose copy has completed (all of them with
        ``wait``), in order, and collect the times of completed frames."""
        with self.device.activate():
            self._publish_completed(wait)

    def _publish_completed(self, wait: bool) -> None:
        """:meth:`flush`, with the device current."""
        device = self.device
        pending = self._pending
        while pending:
            result, event, frame = pending[0]
            if event is not None and not device.event_done(event):
                if not wait:
                    break
                device.synchronize_event(event)
            pending.popleft()
            self.publish(result if frame is None else self.outputs.image_value(result, frame))
        self.times.collect()

    # -- statistics -----------------------------------------------------------------

    @property
    def n_pending(self) -> int:
        return len(self._pending)

    def stats(self) -> dict:
        """The pipeline's part of :data:`~.processor.GPU_STATS_TYPES`. Only
        reads (it may run on the status thread), with the device current
        (a CUDA call from a thread without one would use GPU 0)."""
        with self.device.activate():
            ring = self.ring.stats()
        per = max(self.times.n, 1)
        return {"nGpuFrames": self.n_frames, "nPending": self.n_pending,
                "bytesToDevice": ring["bytesToDevice"],
                "decodeTimeMs": self.times.decode_ms / per,
                "kernelTimeMs": self.times.kernel_ms / per, "ringSlots": ring["ringSlots"],
                "ringOccupancy": ring["ringOccupancy"], "nRingOverruns": ring["nRingOverruns"],
                "nDeviceDecodes": self.n_device_decodes, "nHostDecodes": self.n_host_decodes}
