"""ShmQueue: a ``multiprocessing.Queue`` whose frames travel through shared memory.

Give it to :class:`~pvagpu.hpc.UserMpWorkerController` (or any worker
process) where pvapy takes a ``multiprocessing.Queue``. ``put`` copies the
buffer of a NumPy array, or the numeric arrays of a p4p Value (NTNDArray or
any other), once into a slot of a :class:`~.ring.ShmRing`; only a small
message (slot, segment name, dtype and shape) goes through the underlying
queue. A Value is written into its slot as pvagpu's plaintext
(:mod:`pvagpu.pva.serialize`: header, JSON type and fields, raw arrays)
and read back with the checked decoder of :mod:`pvagpu.pva.deserialize`. ``get`` gives
back what was put:

* a NumPy array: same dtype, shape and values, a writable view of the slot
  (C order). The slot is released when the last reference to the array (or
  to any view of it) goes away, so a processor may keep frames: the ring
  then fills, and further puts wait, rather than overwrite them;
* a p4p Value: same Type and content (every field marked as changed;
  an anonymous structure or union comes back with the ID ``"structure"``,
  as p4p's ``Type.aspy()`` describes it), built by p4p (which copies the
  arrays), so its slot is released at once.

Anything else (ints, dicts, arrays of objects, NumPy subclasses) is pickled
by the underlying queue, as ``multiprocessing.Queue`` does.

Tags: ``put(obj, tag=t)`` sends a small picklable ``t`` with the object
(a frame's sequence number and uniqueId, say); ``get`` then returns
``Tagged(t, obj)``. Objects put without a tag come back as they are.

Direction: the process that creates the queue writes and its workers read.
For results flowing back, create it with ``writer_elsewhere=True`` and
call :meth:`ShmQueue.become_writer` in the worker before its first put
(see :meth:`~.ring.ShmRing.adopt`).

Full ring: ``put(obj, block=True, timeout=None)`` has the meaning it has
for ``multiprocessing.Queue``: it waits for a free slot (at most ``timeout``
seconds), counted in ``nRingWaits``; when none came, or with
``block=False``, it raises :class:`~.ring.RingFullError` (a ``queue.Full``)
and counts it in ``nRingFull``. Memory is bounded by ``slots`` frames.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import time
import weakref
from typing import NamedTuple

import numpy as np
from p4p import Value

from ..pva.deserialize import deserialize_value
from ..pva.serialize import serialize_value
from .ring import DEFAULT_SLOTS, ShmRing, SlotRef

class ArrayMessage(NamedTuple):
    ref: SlotRef
    dtype: str
    shape: tuple


class ValueMessage(NamedTuple):
    ref: SlotRef
    nbytes: int      # the plaintext's length at the start of the slot


class TaggedMessage(NamedTuple):
    tag: object
    message: object  # an ArrayMessage, a ValueMessage or the object itself


class Tagged(NamedTuple):
    """What ``get`` returns for an object put with a tag."""
    tag: object
    obj: object


_NO_TAG = object()


def _shareable(obj) -> bool:
    """True for a plain NumPy array whose buffer can live in shared memory."""
    return type(obj) is np.ndarray and not obj.dtype.hasobject and obj.dtype.fields is None


class ShmQueue:
    """``multiprocessing.Queue(maxsize)`` with a ring of ``slots`` shared-memory
    slots (see the module docstring). ``start_method`` ('fork', 'spawn',
    'forkserver', a context, or None for the default) must be that of the
    processes that read the queue; workers use it as their default."""

    def __init__(self, maxsize: int = 0, *, slots: int = DEFAULT_SLOTS, start_method=None,
                 writer_elsewhere: bool = False):
        ctx = start_method if hasattr(start_method, "Process") else mp.get_context(start_method)
        self.start_method = ctx.get_start_method()
        self._queue = ctx.Queue(maxsize)
        self.ring = ShmRing(slots, ctx, writer_elsewhere=writer_elsewhere)

    # -- producer ------------------------------------------------------------

    def become_writer(self) -> None:
        """Make this (worker) process the one that puts (see the module docstring)."""
        self.ring.adopt()

    def put(self, obj, block: bool = True, timeout=None, *, tag=_NO_TAG) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        ref = None
        if _shareable(obj):
            ref, buf = self.ring.acquire(obj.nbytes, block, timeout)
            message = self._write_array(ref, buf, obj)
        elif isinstance(obj, Value):
            message = self._write_value(obj, block, timeout)
            ref = message.ref
        else:
            message = obj
        if tag is not _NO_TAG:
            message = TaggedMessage(tag, message)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            self._queue.put(message, block, left)
        except BaseException:
            if ref is not None:
                self.ring.abandon(ref)
            raise

    def put_nowait(self, obj) -> None:
        self.put(obj, False)

    @staticmethod
    def _write_array(ref: SlotRef, buf, array: np.ndarray) -> ArrayMessage:
        dest = np.ndarray(array.shape, array.dtype, buffer=buf)
        np.copyto(dest, array, casting="no")
        del dest
        return ArrayMessage(ref, array.dtype.str, array.shape)

    def _write_value(self, value: Value, block: bool, timeout) -> ValueMessage:
        parts = [memoryview(p).cast("B") for p in serialize_value(value)]
        nbytes = sum(len(p) for p in parts)
        ref, buf = self.ring.acquire(nbytes, block, timeout)
        try:
            dest = memoryview(buf).cast("B")
            offset = 0
            for part in parts:
                dest[offset:offset + len(part)] = part
                offset += len(part)
        except BaseException:
            self.ring.abandon(ref)
            raise
        return ValueMessage(ref, nbytes)

    # -- consumer ------------------------------------------------------------

    def get(self, block: bool = True, timeout=None):
        item = self._queue.get(block, timeout)
        if isinstance(item, TaggedMessage):
            return Tagged(item.tag, self._read(item.message))
        return self._read(item)

    def _read(self, item):
        if isinstance(item, ArrayMessage):
            return self._read_array(item)
        if isinstance(item, ValueMessage):
            return self._read_value(item)
        return item

    def get_nowait(self):
        return self.get(False)

    def _read_array(self, message: ArrayMessage):
        buf = self.ring.open(message.ref)
        dtype = np.dtype(message.dtype)
        count = math.prod(message.shape)
        base = np.frombuffer(buf, dtype, count)
        # every view of the frame keeps ``base`` alive: the slot is free when all are gone
        weakref.finalize(base, self.ring.release, message.ref.slot)
        return base.reshape(message.shape)

    def _read_value(self, message: ValueMessage) -> Value:
        buf = self.ring.open(message.ref)
        try:
            # p4p copies the arrays into the Value it builds: the slot is free after
            return deserialize_value(memoryview(buf).cast("B")[:message.nbytes])
        finally:
            self.ring.release(message.ref.slot)

    # -- the rest of multiprocessing.Queue's API ------------------------------

    def qsize(self) -> int:
        return self._queue.qsize()

    def empty(self) -> bool:
        return self._queue.empty()

    def full(self) -> bool:
        return self._queue.full()

    def ring_stats(self) -> dict:
        """Statistics of the shared-memory ring (:meth:`ShmRing.stats`)."""
        return self.ring.stats()

    def reset_ring_stats(self) -> None:
        self.ring.reset_stats()

    def close(self) -> None:
        """Close the queue; the creating process also frees the shared memory."""
        self._queue.close()
        self.ring.close()

    def join_thread(self) -> None:
        self._queue.join_thread()

    def cancel_join_thread(self) -> None:
        self._queue.cancel_join_thread()
