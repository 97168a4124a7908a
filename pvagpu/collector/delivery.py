"""The collector's delivery: producers' objects through the ordering cache to the frame runner.

Each producer's receiver (on its PVA client thread) calls the
:meth:`CollectorDelivery.offer_from` function of its producer id; the
object goes into the :class:`~pvagpu.collector.cache.OrderingCache`, and
one processing thread takes what the cache releases, in id order, and runs
it through the consumer's :class:`~pvagpu.runtime.frames.FrameRunner` (so
processed frames, errors and the output channel are counted and opened
exactly as in a consumer). Skipped initial updates of a producer open the
output channel (pvapy's getOutputPvObjectType of the first object) and are
not cached. At stop, everything still pending is released and processed,
in order, for up to the drain timeout.

It has the interface of the consumer's delivery strategies
(pvagpu.runtime.delivery): ``queue_length``/``queue_max`` (objects held in
the cache / its capacity plus the ready queue), ``resize`` (receiverQueueSize:
the ready queue), ``start``/``stop``.
"""
from __future__ import annotations

import logging
import threading

from ..pva.receiver import SKIPPED
from ..stats import ErrorLog

log = logging.getLogger(__name__)


class CollectorDelivery:
    """Ordering cache plus the thread that processes what it releases."""

    def __init__(self, runner, cache):
        self.runner = runner
        self.cache = cache
        self._thread = None
        self._stopping = False
        self._abort = False
        self._errors = ErrorLog(log)

    @property
    def queue_length(self) -> int:
        return len(self.cache)

    @property
    def queue_max(self) -> int:
        return self.cache.capacity + self.cache.ready_max

    @property
    def description(self) -> str:
        c = self.cache
        return (f"ordering cache of {c.capacity} objects from {len(c.producer_ids)} producers, "
                f"{c.ready_max} ready for processing")

    def resize(self, size: int) -> None:
        """receiverQueueSize: the ready queue (<= 0 leaves it as it is)."""
        if size and size > 0:
            self.cache.ready_max = int(size)

    def offer_from(self, producer_id):
        """The ``deliver(oid, value)`` function of one producer's receiver."""
        def offer(oid, value):
            if oid is SKIPPED:
                self.runner.offer_output(value)
                return True
            if oid is None:     # no id field: it cannot be ordered
                self.cache.reject()
                self._errors("no id", "producer %s: object without the id field not collected",
                             producer_id)
                return True
            return self.cache.add(producer_id, oid, value)
        return offer

    def start(self) -> None:
        self._stopping = self._abort = False
        self._thread = threading.Thread(target=self._loop, name="pvagpu-collector", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Release and process what is cached, for up to ``timeout`` s (call
        after the receivers stopped)."""
        if self._thread is None:
            return
        self.cache.flush()
        self._stopping = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("collector: still processing after %.1f s; %d cached objects left "
                        "unprocessed", timeout, len(self.cache))
            self._abort = True
            self._thread.join()
        self._thread = None

    def _loop(self) -> None:
        run = self.runner.run
        while not self._abort:
            items = self.cache.take(0.1)
            for oid, value in items:
                if self._abort:
                    return
                run(oid, value)
            if not items and self._stopping and not len(self.cache):
                return
