"""The pinned staging ring: each received payload (compressed or not) is
copied once into a slot of page-locked host memory and sent to the device
asynchronously on a CUDA stream.

:class:`SlotRing` is the bookkeeping, in pure Python, written against the
device interface of :mod:`.device` (:class:`~.device.CupyDevice` on a GPU,
:class:`~.device.HostDevice` on the NumPy backend, where staging copies
nothing and events complete at once). Rules:

* slots are used round-robin; slot ``i`` always uses stream
  ``i % n_streams``, so successive frames go to different streams and
  their copy, decode and compute overlap;
* after the host-to-device copy of a slot, an event is recorded on its
  stream; the slot's *host* buffer is reused only once that event has
  completed. Its *device* buffer is reused by the next frame staged into
  the same slot, whose copy is queued on the same stream, so stream order
  makes it wait for everything queued before it (decode, compute of the
  previous frame of that slot);
* when the next slot is still busy, :meth:`SlotRing.stage` returns None and
  counts an overrun: it never blocks the caller (the p4p callback thread or
  the processing thread) and never drops a frame silently;
* slots are sized from the first frame by default: the larger of its
  payload and the LZ4 bound of its uncompressed size, so later compressed
  frames of the same image size always fit. A frame that does not fit
  (the image size changed) makes the ring wait for its slots and
  reallocate, counted in ``nResizes``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..errors import ConfigurationError

DEFAULT_SLOTS = 4
DEFAULT_STREAMS = 2
_ALIGN = 4096


def slot_size_for(payload_bytes: int, uncompressed_bytes: int) -> int:
    """Slot bytes for frames like one of ``payload_bytes`` that expands to
    ``uncompressed_bytes``: room for the worst-case LZ4 / bslz4 payload of
    that image size (LZ4 bound plus one 4-byte header per 8 KiB block)."""
    u = max(0, int(uncompressed_bytes))
    bound = u + u // 255 + 16 + 4 * (u // 8192 + 2) + 64
    size = max(int(payload_bytes), bound, 1)
    return -(-size // _ALIGN) * _ALIGN


@dataclass
class Slot:
    index: int
    host: Any            # 1-D uint8 pinned host buffer (numpy view)
    device: Any          # 1-D uint8 device buffer
    stream: Any
    event: Any = None    # recorded after the last host-to-device copy
    nbytes: int = 0      # bytes of the frame now in the slot


@dataclass(slots=True)
class Staged:
    """A payload on its way to the device: ``device`` (uint8, ``nbytes``) is
    valid in stream order on ``stream``; ``host`` is the host copy."""
    slot: Slot
    nbytes: int
    host: Any
    device: Any

    @property
    def stream(self):
        return self.slot.stream


class SlotRing:
    """A ring of ``n_slots`` pinned slots over ``n_streams`` streams;
    ``slot_bytes`` 0 = sized from the first frame."""

    def __init__(self, device, n_slots: int = DEFAULT_SLOTS, slot_bytes: int = 0,
                 n_streams: int = DEFAULT_STREAMS):
        if int(n_slots) < 1:
            raise ConfigurationError(f"the staging ring needs at least 1 slot, got {n_slots}")
        if int(n_streams) < 1:
            raise ConfigurationError(f"the staging ring needs at least 1 stream, got {n_streams}")
        if int(slot_bytes) < 0:
            raise ConfigurationError(f"slot size must be >= 0 bytes, got {slot_bytes}")
        self.device = device
        self.n_slots = int(n_slots)
        self.n_streams = min(int(n_streams), self.n_slots)
        self.slot_bytes = int(slot_bytes)
        self.streams = [device.new_stream() for _ in range(self.n_streams)]
        self.slots: list[Slot] = []
        self._next = 0
        self.n_staged = 0
        self.n_overruns = 0
        self.n_resizes = 0
        self.bytes_to_device = 0
        if self.slot_bytes:
            self._allocate(self.slot_bytes)

    def _allocate(self, slot_bytes: int) -> None:
        self.slots = []            # release the old buffers first
        self.slot_bytes = slot_bytes
        self.slots = [Slot(i, self.device.alloc_pinned(slot_bytes),
                           self.device.alloc_device(slot_bytes), self.streams[i % self.n_streams])
                      for i in range(self.n_slots)]
        self._next = 0

    def _busy(self, slot: Slot) -> bool:
        return slot.event is not None and not self.device.event_done(slot.event)

    @property
    def occupancy(self) -> int:
        """Slots whose host-to-device copy has not completed."""
        return sum(1 for slot in self.slots if self._busy(slot))

    def stage(self, payload, uncompressed_bytes: int = 0) -> Optional[Staged]:
        """Copy ``payload`` (1-D uint8) into the next slot and start its
        upload; None (an overrun, counted) when that slot is still busy."""
        nbytes = int(payload.nbytes)
        if nbytes > self.slot_bytes or not self.slots:   # (an empty first frame too)
            if self.slots:
                # an image-size change, rare: wait for everything queued on the
                # slot streams (copies AND the decodes reading the device
                # buffers) before those buffers go back to the memory pool
                for stream in self.streams:
                    self.device.synchronize_stream(stream)
                self.n_resizes += 1
            self._allocate(slot_size_for(nbytes, uncompressed_bytes))
        slot = self.slots[self._next]
        if self._busy(slot):
            self.n_overruns += 1
            return None
        self._next = (self._next + 1) % self.n_slots
        host, device = self.device.stage(slot.host, slot.device, payload, slot.stream)
        slot.event = self.device.record_event(slot.stream)
        slot.nbytes = nbytes
        self.n_staged += 1
        self.bytes_to_device += nbytes
        return Staged(slot, nbytes, host, device)

    def count_upload(self, nbytes: int) -> None:
        """Count bytes sent to the device outside the ring (host-decoded frames)."""
        self.bytes_to_device += int(nbytes)

    def synchronize(self) -> None:
        """Wait until every slot's copy has completed."""
        for slot in self.slots:
            if slot.event is not None:
                self.device.synchronize_event(slot.event)

    def stats(self) -> dict:
        return {"ringSlots": self.n_slots, "ringSlotBytes": self.slot_bytes,
                "ringOccupancy": self.occupancy, "nStaged": self.n_staged,
                "nRingOverruns": self.n_overruns, "nRingResizes": self.n_resizes,
                "bytesToDevice": self.bytes_to_device}

    def reset_stats(self) -> None:
        self.n_staged = self.n_overruns = self.n_resizes = self.bytes_to_device = 0

