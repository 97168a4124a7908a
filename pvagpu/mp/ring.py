"""A ring of shared-memory slots: how frame buffers cross to worker processes.

The process that creates the ring (the *owner*, which puts frames) copies a
frame's buffers into a free slot and sends only a small :class:`SlotRef`
through a queue; a worker maps the slot and reads the frame in place. Rules:

* every slot is its own ``multiprocessing.shared_memory`` segment, created
  when first needed and re-created larger when a frame does not fit, so
  memory is bounded by ``slots x the largest frame`` and never grows with
  the backlog;
* a slot's state lives in a small shared control segment, one int64 per
  slot: :data:`FREE`, :data:`QUEUED` (written, its message on the way) or
  the pid of the worker reading it. A slot is written again only after the
  worker released it (:meth:`ShmRing.release`); :meth:`ShmRing.reclaim`
  frees the slots of a worker that died;
* a bounded semaphore counts the free slots, so a full ring makes the owner
  wait without polling and a release wakes it. Every wait is counted
  (``nRingWaits``), and so is every put that found no slot in time
  (``nRingFull``, :class:`RingFullError`): nothing is dropped silently.

The owner must be one process (any number of its threads may put); any
number of worker processes may read. The owner is normally the process
that created the ring; a ring made for the other direction (a worker
writes, the parent reads) is created by the parent and taken over by the
worker with :meth:`ShmRing.adopt`. Slot segments are named after the
ring's control segment, so the creator removes those of a writer that
died (:meth:`ShmRing.close` unlinks every segment with the ring's prefix).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import weakref
from multiprocessing import shared_memory
from typing import NamedTuple

import numpy as np

from ..errors import PvagpuError

FREE = 0
QUEUED = -1
DEFAULT_SLOTS = 8
_MIN_SLOT_BYTES = 1 << 16
_SHM_DIR = "/dev/shm"


class RingFullError(PvagpuError, queue.Full):
    """No shared-memory slot became free in time: the object was not put
    (counted in ``nRingFull``). Also a ``queue.Full``, as from a full
    ``multiprocessing.Queue``."""


class SlotRef(NamedTuple):
    """Where a frame's buffers are: slot number and that slot's segment."""
    slot: int
    segment: str


def _unlink(segments: list, control, owner: int, prefix: str | None = None) -> None:
    """Owner-side cleanup (a weakref finalizer, so no reference to the ring);
    with ``prefix``, also the segments a writer elsewhere left."""
    if os.getpid() != owner:
        return
    for shm in [s for s in segments if s is not None] + ([control] if control else []):
        try:
            shm.close()
        except BufferError:  # a view is still alive; the mapping goes with the process
            pass
        try:
            shm.unlink()
        except FileNotFoundError:
            pass
    if prefix:
        _unlink_prefixed(prefix)


class ShmRing:
    """``slots`` shared-memory slots; see the module docstring.

    ``ctx`` is the multiprocessing context (or start-method name) of the
    processes that will read: its semaphore must match their start method.
    ``writer_elsewhere``: the ring is for another process to write (it
    calls :meth:`adopt`); this one only reads and cleans up.
    """

    def __init__(self, slots: int = DEFAULT_SLOTS, ctx=None, *, writer_elsewhere: bool = False):
        if int(slots) < 1:
            raise ValueError(f"a shared-memory ring needs at least 1 slot, got {slots}")
        ctx = mp.get_context(ctx) if ctx is None or isinstance(ctx, str) else ctx
        self.n_slots = int(slots)
        self._owner = self._creator = os.getpid()
        if writer_elsewhere:
            self._owner = None
        self._control = shared_memory.SharedMemory(create=True, size=8 * self.n_slots)
        self._prefix = f"{self._control.name.lstrip('/')}_"
        self._generation = 0
        self._states = np.ndarray((self.n_slots,), np.int64, buffer=self._control.buf)
        self._states[:] = FREE
        self._free = ctx.BoundedSemaphore(self.n_slots)
        self._segments = [None] * self.n_slots   # owner: SharedMemory per slot
        self._lock = threading.Lock()
        self._next = 0
        self._reader_init()
        self.reset_stats()
        self._finalizer = weakref.finalize(self, _unlink, self._segments, self._control,
                                           self._creator,
                                           self._prefix if writer_elsewhere else None)

    # -- pickling: a worker gets the control segment, the semaphore, no owner state

    def __getstate__(self):
        return {"n_slots": self.n_slots, "owner": self._owner, "creator": self._creator,
                "prefix": self._prefix, "control": self._control.name, "free": self._free}

    def __setstate__(self, state):
        self.n_slots = state["n_slots"]
        self._owner = state["owner"]
        self._creator = state["creator"]
        self._prefix = state["prefix"]
        self._free = state["free"]
        self._control = shared_memory.SharedMemory(name=state["control"])
        self._states = np.ndarray((self.n_slots,), np.int64, buffer=self._control.buf)
        self._reader_init()

    def _reader_init(self):
        self._closed = False
        self._attached = {}   # slot -> SharedMemory mapped by this process
        self._retired = []    # replaced mappings that still had live views

    # -- owner side --------------------------------------------------------

    @property
    def is_owner(self) -> bool:
        return os.getpid() == self._owner

    def adopt(self) -> None:
        """Make this process the ring's writer (call it in the worker process
        that a ring for results was handed to; nothing must have been put yet).
        The writer creates the slot segments; the creator keeps the control
        segment and unlinks the writer's segments at :meth:`close`."""
        if self.is_owner:
            return
        self._owner = os.getpid()
        self._segments = [None] * self.n_slots
        self._lock = threading.Lock()
        self._next = 0
        self._generation = 0
        self.reset_stats()
        self._finalizer = weakref.finalize(self, _unlink, self._segments, None, self._owner)

    def acquire(self, nbytes: int, block: bool = True, timeout=None):
        """A free slot with room for ``nbytes``: ``(SlotRef, memoryview)``.

        Waits for a release when the ring is full (``block``, at most
        ``timeout`` s); RingFullError when none came. The slot is QUEUED
        until a worker takes and releases it, or :meth:`abandon` frees it."""
        if not self.is_owner:
            raise RuntimeError("only the process that created a shared-memory ring may put "
                               "into it")
        if not self._free.acquire(False):
            if block:
                with self._lock:
                    self.n_waits += 1
            if not block or not self._free.acquire(True, timeout):
                with self._lock:
                    self.n_full += 1
                raise RingFullError(
                    f"all {self.n_slots} shared-memory slots are held by workers"
                    + (f" (waited {timeout} s)" if block else ""))
        with self._lock:
            slot = self._take_free_slot()
            try:
                shm = self._segment_for(slot, nbytes)
            except BaseException:
                self._states[slot] = FREE
                self._free.release()
                raise
            self.n_puts += 1
            self.n_bytes += int(nbytes)
            self._high_water = max(self._high_water, self.slots_in_use())
            return SlotRef(slot, shm.name), shm.buf

    def _take_free_slot(self) -> int:
        for k in range(self.n_slots):
            slot = (self._next + k) % self.n_slots
            if self._states[slot] == FREE:
                self._states[slot] = QUEUED
                self._next = slot + 1
                return slot
        raise RuntimeError("shared-memory ring: semaphore and slot states disagree")

    def _segment_for(self, slot: int, nbytes: int):
        shm = self._segments[slot]
        if shm is not None and shm.size >= nbytes:
            return shm
        size = max(_MIN_SLOT_BYTES, int(nbytes))
        _check_room(size - (shm.size if shm is not None else 0))
        self._generation += 1
        new = shared_memory.SharedMemory(name=f"{self._prefix}{slot}g{self._generation}",
                                         create=True, size=size)
        if shm is not None:
            shm.close()   # a reader that still maps it keeps its own mapping
            shm.unlink()
        self._segments[slot] = new
        return new

    def abandon(self, ref: SlotRef) -> None:
        """Free a slot acquired for a put that then failed."""
        self.release(ref.slot)

    def reclaim(self, pid: int) -> int:
        """Free the slots held by worker ``pid`` (it died); their number."""
        if self._closed:
            return 0
        with self._lock:
            held = [int(s) for s in np.flatnonzero(self._states == int(pid))]
            for slot in held:
                self.release(slot)
            return len(held)

    def slots_in_use(self) -> int:
        if self._closed:   # the control segment is unmapped
            return 0
        return int(np.count_nonzero(self._states != FREE))

    def stats(self) -> dict:
        """Ring statistics: slots, occupancy and (owner) what puts met."""
        if not self.is_owner:
            return {"ringSlots": self.n_slots, "ringSlotsInUse": self.slots_in_use()}
        sizes = [s.size for s in self._segments if s is not None]
        return {"ringSlots": self.n_slots, "ringSlotsInUse": self.slots_in_use(),
                "ringHighWater": self._high_water, "ringSlotBytes": max(sizes, default=0),
                "nRingPuts": self.n_puts, "nRingBytes": self.n_bytes,
                "nRingWaits": self.n_waits, "nRingFull": self.n_full}

    def reset_stats(self) -> None:
        self.n_puts = self.n_bytes = self.n_waits = self.n_full = 0
        self._high_water = self.slots_in_use()

    def close(self) -> None:
        """Owner: unlink every segment. Reader: unmap what it mapped. The
        creator of an adopted ring also unlinks the control segment and the
        segments its writer left (call it after the writer ended)."""
        if self.is_owner:
            self._closed = True
            self._finalizer()
            return
        for shm in list(self._attached.values()) + self._retired:
            try:
                shm.close()
            except BufferError:
                pass
        self._reader_init()
        if os.getpid() == self._creator:
            self._closed = True
            self._finalizer()

    # -- reader side -------------------------------------------------------

    def open(self, ref: SlotRef) -> memoryview:
        """Map the slot of ``ref`` in this process and mark it held by it."""
        self._states[ref.slot] = os.getpid()
        shm = self._attached.get(ref.slot)
        if shm is None or shm.name.lstrip("/") != ref.segment.lstrip("/"):
            if shm is not None:
                self._retired.append(shm)
            shm = self._attached[ref.slot] = shared_memory.SharedMemory(name=ref.segment)
            self._close_retired()
        return shm.buf

    def _close_retired(self) -> None:
        still = []
        for shm in self._retired:
            try:
                shm.close()
            except BufferError:   # a processor still holds an array of it
                still.append(shm)
        self._retired = still

    def release(self, slot: int) -> None:
        """The worker is done with ``slot``: it may be written again."""
        if self._closed:   # a frame outlived its ring
            return
        self._states[slot] = FREE
        self._free.release()


def _unlink_prefixed(prefix: str) -> None:
    """Unlink the segments whose names start with ``prefix`` (a writer's
    slots, left behind when it was killed)."""
    try:
        names = [n for n in os.listdir(_SHM_DIR) if n.startswith(prefix)]
    except OSError:   # no /dev/shm on this platform
        return
    for name in names:
        try:
            shared_memory.SharedMemory(name=name).unlink()
        except (FileNotFoundError, OSError):
            pass


def _check_room(nbytes: int) -> None:
    """A clear error instead of a SIGBUS when /dev/shm cannot hold ``nbytes``."""
    try:
        st = os.statvfs(_SHM_DIR)
    except OSError:
        return
    if nbytes > st.f_bavail * st.f_frsize:
        raise MemoryError(f"{_SHM_DIR} has {st.f_bavail * st.f_frsize} bytes free, a "
                          f"shared-memory slot needs {nbytes}; use fewer slots or a larger "
                          f"{_SHM_DIR}")
