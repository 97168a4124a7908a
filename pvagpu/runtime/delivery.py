"""Delivery strategies: how frames get from the receiver to the frame runner.

The receiver (on the PVA client's thread) calls ``offer(objectId, value)``
of one strategy for each update; every strategy hands its frames to the
one :class:`~pvagpu.runtime.frames.FrameRunner`, which counts them.

:class:`InlineDelivery` (the default, pvapy's -rqs -1)
    processes each frame right there, on the PVA thread: no hand-off
    between threads, the cheapest path through p4p (measured, see
    benchmarks/throughput.py). The frames that arrive meanwhile wait in the
    monitor queue (-sqs); what overflows it shows as missed frames.
:class:`QueuedDelivery` (-rqs N > 0)
    owns a bounded queue of N frames and the thread that processes them
    one at a time. ``offer`` never blocks: when the queue is full it
    refuses the frame, and the receiver counts an overrun.
:class:`BatchedDelivery` (-ao N > 1)
    the same queue; the thread takes up to N frames at a time, or what
    arrived within ``accumulation_timeout`` s of the first one, for the
    processor's ``processBatch``.

:class:`WorkerDelivery` (--n-workers N > 0)
    hands each frame, still compressed, to the least-loaded of the
    consumer's worker processes (:mod:`pvagpu.runtime.workers`), without
    blocking; when every worker's ring is full it refuses the frame, and
    the receiver counts an overrun. The workers run the processor; their
    outcomes are counted in the same FrameRunner's counters.

:func:`make_delivery` picks the strategy from a
:class:`~pvagpu.runtime.config.ConsumerConfig`.
"""
from __future__ import annotations

import logging
import queue
import threading
import time

from ..pva.receiver import SKIPPED

log = logging.getLogger(__name__)

#: frames the queue holds when --receiver-queue-size is not positive and
#: --accumulate-objects asks for a queue (or a configure command sets
#: receiverQueueSize <= 0)
DEFAULT_FRAME_QUEUE_SIZE = 256

_STOP = object()       # end of the frame queue


def make_delivery(config, runner, workers=None):
    """The delivery strategy that ``config`` (a ConsumerConfig) asks for;
    ``workers``: the consumer's WorkerPool, if it has workers."""
    if workers is not None:
        return WorkerDelivery(workers)
    if not config.queued:
        return InlineDelivery(runner)
    if config.accumulate_objects > 1:
        return BatchedDelivery(runner, config.receiver_queue_size, config.accumulate_objects,
                               config.accumulation_timeout)
    return QueuedDelivery(runner, config.receiver_queue_size)


class InlineDelivery:
    """Process each frame on the PVA thread as it arrives."""

    queue_length = 0
    #: no queue: the status channel's queueStats.maxLength is 0
    queue_max = 0
    description = "processing on the PVA thread"

    def __init__(self, runner):
        self.runner = runner
        self.offer = runner.run   # returns None: every frame is taken

    def resize(self, size: int) -> None:
        """receiverQueueSize has no effect without a queue (as in pvapy)."""

    def start(self) -> None:
        pass

    def stop(self, timeout: float) -> None:
        pass


class WorkerDelivery:
    """Hand each frame to a worker process (see the module docstring)."""

    def __init__(self, workers):
        self.workers = workers
        self.offer = workers.dispatch   # False when no worker had room

    @property
    def queue_length(self) -> int:
        """Frames handed to workers and not yet answered."""
        return self.workers.in_flight

    @property
    def queue_max(self) -> int:
        return self.workers.capacity

    @property
    def description(self) -> str:
        return self.workers.description

    def resize(self, size: int) -> None:
        """receiverQueueSize: the workers' rings keep the size they started with."""

    def start(self) -> None:
        pass

    def stop(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the frames in flight (the workers stop
        with the processor, after this)."""
        if not self.workers.drain(timeout):
            log.warning("consumer %s: %d frames still in worker processes after %.1f s",
                        self.workers.config.consumer_id, self.workers.in_flight, timeout)


class QueuedDelivery:
    """A bounded queue of frames and the thread that processes them."""

    def __init__(self, runner, size: int = 0):
        self.runner = runner
        self.queue_max = DEFAULT_FRAME_QUEUE_SIZE
        self.resize(size)
        self._queue = queue.SimpleQueue()
        self._thread = None
        self._abort = False

    @property
    def queue_length(self) -> int:
        return self._queue.qsize()

    @property
    def description(self) -> str:
        return f"queue {self.queue_max}"

    def resize(self, size: int) -> None:
        """Hold up to ``size`` frames (<= 0: :data:`DEFAULT_FRAME_QUEUE_SIZE`)."""
        self.queue_max = int(size) if size and size > 0 else DEFAULT_FRAME_QUEUE_SIZE

    def offer(self, oid, value) -> bool:
        """Queue a frame (PVA thread); False when the queue is full."""
        q = self._queue
        if q.qsize() >= self.queue_max:
            return False
        q.put((oid, value))
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="pvagpu-process", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Process what is queued for up to ``timeout`` s, then stop (the
        frames still queued then are left unprocessed, with a warning).
        Call after the receiver stopped offering frames."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("consumer %s: still processing after %.1f s; %d queued frames left "
                        "unprocessed", self.runner.consumer_id, timeout, self.queue_length)
            self._abort = True
            self._thread.join()
        self._thread = None

    def _get(self, timeout: float):
        """The next queued item; None when there is none within ``timeout`` s."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _loop(self) -> None:
        """One frame at a time."""
        run = self.runner.run
        while not self._abort:
            item = self._get(0.1)
            if item is _STOP:
                return
            if item is not None:
                run(*item)


class BatchedDelivery(QueuedDelivery):
    """Frames from the queue in batches of up to ``batch_size``, or what
    arrived within ``timeout`` s of the first frame of a batch."""

    def __init__(self, runner, size: int, batch_size: int, timeout: float):
        super().__init__(runner, size)
        self.batch_size = int(batch_size)
        self.timeout = float(timeout)

    def _loop(self) -> None:
        done = False
        while not done and not self._abort:
            item = self._get(0.1)
            if item is None:
                continue
            batch, done = self._collect(item)
            if batch:
                self.runner.run_batch(batch)

    def _collect(self, item) -> tuple:
        """``(batch, stopped)``: the batch that starts with ``item``, and
        whether the end of the queue was reached."""
        runner = self.runner
        batch = []
        deadline = time.monotonic() + self.timeout
        while item is not _STOP:
            oid, value = item
            runner.offer_output(value)
            if oid is not SKIPPED:
                batch.append(item)
                if len(batch) >= self.batch_size:
                    return batch, False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return batch, False
            item = self._get(remaining)
            if item is None:
                return batch, False
        return batch, True
