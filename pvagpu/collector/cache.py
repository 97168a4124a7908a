"""The ordering cache: objects of several producers, handed out in object id order.

pvapy's collector (pvapy/hpc/dataCollector.py) puts every object it
receives from its producers into a cache keyed by the object id (uniqueId)
and, once the cache holds ``collectorCacheSize`` objects (or nothing arrived
for 5 s), hands the longest run of consecutive ids from the smallest one
to its processor. Several objects may share an id (the tiles of one frame,
processed by different producers): they go out together.

:class:`OrderingCache` keeps that contract and releases sooner. Each
producer's channel delivers its objects in id order, so once every producer
has sent an object with an id above N, nothing more with id N can come: N
is complete and goes out at once (the *watermark* is the smallest of the
producers' latest ids; every id below it is released, in order). So a
steady stream leaves the cache about one object per producer behind, not a
whole cache later, and the tiles of one frame are not split between two
releases (in pvapy a release can end in the middle of a frame, and the
frame's later tiles are then rejected).

When that is not enough, ids are released anyway, and what that costs is
counted (``counts()``):

* cache full (more than :attr:`capacity` objects pending, e.g. a producer
  that stopped or never started): the smallest id goes out now, counted in
  ``n_overflows``;
* nothing arrived for ``flush`` seconds (the end of a stream), or the
  collector stops: everything pending goes out, in order (:meth:`flush`);
* an id that never arrived from anybody (the gap before the next id out)
  is counted in ``n_missed`` ((gap - offset) // offset, with the id step
  ``offset``, as the consumer counts missed frames);
* an object whose id was already handed out (it came too late, after an
  overflow or a flush, or twice) is not processed: ``n_rejected``;
* released objects wait in a queue of at most :attr:`ready_max` for the
  processing thread; while it is full a new object is refused (the caller
  counts an overrun) instead of growing memory.

pvapy's rule for ids that go backwards is kept: an id at or below the last
one handed out is rejected while anything is pending, and starts the
sequence afresh (a restarted source) when the cache is empty.
"""
from __future__ import annotations

import collections
import heapq
import threading
import time

#: pvapy's default cache size per producer (DataCollector.CACHE_SIZE_SCALING_FACTOR)
CACHE_SIZE_PER_PRODUCER = 10


def collector_cache_size(requested: int, n_producers: int) -> int:
    """pvapy's collectorCacheSize rule: < 0 means 10 per producer; anything
    at or below the number of producers is raised to it."""
    minimum = n_producers * CACHE_SIZE_PER_PRODUCER if requested < 0 else n_producers
    return int(requested) if requested > minimum else max(1, minimum)


class OrderingCache:
    """Objects from ``producer_ids``, released in id order (module docstring)."""

    def __init__(self, producer_ids, cache_size: int = -1, ready_max: int = 256,
                 offset: int = 1, flush: float = 5.0):
        self.producer_ids = list(producer_ids)
        self.capacity = collector_cache_size(cache_size, len(self.producer_ids))
        self.ready_max = max(1, int(ready_max))
        #: the id step between consecutive objects (-oo), for n_missed
        self.offset = max(1, int(offset))
        #: accepted for the configure command's nSequentialUpdates; not used
        self.sequential = 1
        #: seconds without a new object after which everything pending goes out
        self.flush_after = float(flush)
        self._pending = {}                  # id -> [objects]
        self._ids = []                      # heap of the pending ids
        self._n_pending = 0
        self._heads = dict.fromkeys(self.producer_ids)   # latest id of each producer
        self._ready = collections.deque()
        self._last = None                   # last id handed out
        self._cond = threading.Condition()
        self._last_add = time.monotonic()
        self.reset_stats()

    # -- counts -------------------------------------------------------------------

    def reset_stats(self) -> None:
        self.n_collected = self.n_rejected = self.n_missed = 0
        self.n_overflows = self.n_refused = 0

    def counts(self) -> dict:
        return {"n_collected": self.n_collected, "n_rejected": self.n_rejected,
                "n_missed": self.n_missed, "n_overflows": self.n_overflows,
                "n_refused": self.n_refused, "n_cached": len(self)}

    def __len__(self) -> int:
        """Objects held: pending and released but not yet taken."""
        return self._n_pending + len(self._ready)

    def resize(self, cache_size: int) -> None:
        """A new collectorCacheSize (pvapy's rule, :func:`collector_cache_size`)."""
        with self._cond:
            self.capacity = collector_cache_size(int(cache_size), len(self.producer_ids))
            self._overflow()
            self._cond.notify()

    # -- in -----------------------------------------------------------------------------

    def add(self, producer_id, oid: int, value) -> bool:
        """Cache one object; False when it is refused (the ready queue is full)."""
        with self._cond:
            if len(self._ready) >= self.ready_max:
                self.n_refused += 1
                return False
            self._last_add = time.monotonic()
            head = self._heads.get(producer_id)
            if self._last is not None and oid <= self._last:
                restarted = head is not None and oid < head
                if not restarted or self._n_pending or self._ready:
                    self.n_rejected += 1
                    return True
                self._last = None               # a restarted source: start afresh
                self._heads = dict.fromkeys(self.producer_ids)
            self._heads[producer_id] = oid
            objects = self._pending.get(oid)
            if objects is None:
                objects = self._pending[oid] = []
                heapq.heappush(self._ids, oid)
            objects.append(value)
            self._n_pending += 1
            released = self._release_complete() + self._overflow()
            if released:
                self._cond.notify()
            return True

    def reject(self) -> None:
        """Count an object that cannot be ordered (it has no id)."""
        with self._cond:
            self.n_rejected += 1

    # -- out ----------------------------------------------------------------------------

    def take(self, timeout: float) -> list:
        """The released ``(oid, object)`` pairs, in order (waits up to
        ``timeout`` s for some); everything pending goes out first when
        nothing arrived for :attr:`flush_after` s."""
        with self._cond:
            if not self._ready:
                self._cond.wait(timeout)
            if (not self._ready and self._n_pending
                    and time.monotonic() - self._last_add >= self.flush_after):
                self._release_all()
            items = list(self._ready)
            self._ready.clear()
            return items

    def flush(self) -> None:
        """Release everything pending, in id order."""
        with self._cond:
            self._release_all()
            self._cond.notify()

    # -- inside (lock held) ------------------------------------------------------------------

    def _release(self) -> int:
        """Hand out the smallest pending id; the number of objects."""
        oid = heapq.heappop(self._ids)
        objects = self._pending.pop(oid)
        self._n_pending -= len(objects)
        if self._last is not None:
            gap = oid - self._last - self.offset
            if gap >= self.offset:
                self.n_missed += gap // self.offset
        self._last = oid
        self._ready.extend((oid, obj) for obj in objects)
        self.n_collected += len(objects)
        return len(objects)

    def _release_complete(self) -> int:
        heads = self._heads.values()
        if None in heads:
            return 0
        watermark = min(heads)
        n = 0
        while self._ids and self._ids[0] < watermark:
            n += self._release()
        return n

    def _overflow(self) -> int:
        n = 0
        while self._n_pending > self.capacity:
            n += self._release()
            self.n_overflows += 1
        return n

    def _release_all(self) -> None:
        while self._ids:
            self._release()
