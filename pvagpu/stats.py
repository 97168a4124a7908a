"""The consumer's statistics: counters, missed-frame accounting, and the
pvapy-structured statistics dictionary.

Counting is cheap on purpose. Each counter is a plain attribute of a
``__slots__`` object, incremented by exactly one thread (the receiver's
callback thread, the processing thread, ...), so no lock is taken per frame.
Rates are computed only when statistics are asked for. A reset takes a
baseline of the current counts instead of writing zeros into counters that
another thread may be incrementing at that moment.

:data:`STATS_TYPES` is THE table of the framework's statistics keys and
their PVA types (p4p type codes): pvapy's keys first, in pvapy's order
(INTEROP 3.5/3.6), then pvagpu's extra keys; :data:`METADATA_STATS_TYPES`
picks from it the keys of one metadata channel's statistics. The status
channel (:mod:`pvagpu.pva.status`) builds its structure from them; nothing
else restates them.

Accounting (one frame is counted in exactly one place):

- ``receiverStats.nReceived``: every update from the input channel,
  including the skipped initial ones (as pvapy counts).
- ``processorStats.nMissed``: frames the consumer never received, from gaps
  in the object id (uniqueId) of consecutive received frames, honouring the
  object id offset (INTEROP 3.4); backward ids (a restarted source) are
  ignored.
- ``receiverStats.nOverruns``: frames received but dropped because the
  bounded receive queue was full (they are not counted again as missed).
  ``receiverStats.nRejected`` and ``queueStats.nRejected`` carry the same
  number, under the name pvapy uses for its queue's rejections.
- ``processorStats.nProcessed`` / ``nErrors``: frames whose processing
  succeeded / raised; ``nFrameErrors`` and ``nCodecErrors`` break down the
  errors caused by bad frames (:class:`pvagpu.errors.FrameError`,
  :class:`pvagpu.errors.CodecError`).
"""
from __future__ import annotations

import logging
import time

from .errors import CodecError, FrameError

#: THE table: framework statistics group -> ((key, p4p type code), ...).
#: The first keys of each group are pvapy's (same order and types as its
#: status channel); the keys after ``EXTRA_KEYS_START[group]`` are pvagpu's.
STATS_TYPES = {
    "receiverStats": (
        ("nReceived", "I"), ("receivedRate", "d"), ("nRejected", "I"), ("rejectedRate", "d"),
        ("nErrors", "I"), ("errorRate", "d"), ("nOverruns", "I"), ("overrunRate", "d"),
        # pvagpu
        ("nSkipped", "I"), ("nRepeated", "I"), ("nConnects", "I"), ("nDisconnects", "I"),
        ("connected", "?"),
    ),
    "publisherStats": (
        ("nPublished", "I"), ("publishedRate", "d"), ("nErrors", "I"), ("errorRate", "d"),
    ),
    "queueStats": (
        ("nReceived", "I"), ("nRejected", "I"), ("nDelivered", "I"), ("nQueued", "I"),
        # pvagpu
        ("maxLength", "I"),
    ),
    "processorStats": (
        ("runtime", "d"), ("startTime", "d"), ("endTime", "d"), ("receivingTime", "d"),
        ("firstObjectTime", "d"), ("lastObjectTime", "d"), ("firstObjectId", "I"),
        ("lastObjectId", "I"), ("nProcessed", "I"), ("processedRate", "d"), ("nErrors", "I"),
        ("errorRate", "d"), ("nMissed", "I"), ("missedRate", "d"),
        # pvagpu
        ("nFrameErrors", "I"), ("nCodecErrors", "I"),
    ),
}

#: Number of pvapy keys at the start of each group of :data:`STATS_TYPES`.
PVAPY_KEY_COUNT = {"receiverStats": 8, "publisherStats": 4, "queueStats": 4,
                   "processorStats": 14}

#: Statistics groups in the order pvapy's status record has them.
GROUPS = ("receiverStats", "publisherStats", "queueStats", "processorStats")

_METADATA_RECEIVER_KEYS = ("nReceived", "receivedRate", "nRejected", "rejectedRate",
                           "nOverruns", "overrunRate")

#: The groups of one metadata channel's statistics (each ``metadata-<n>``
#: entry of ``metadataStats``; pvapy's ``metadataStats_<n>``, INTEROP 3.6):
#: a part of the same groups above, in their order and with their types.
METADATA_STATS_TYPES = {
    "receiverStats": tuple(item for item in STATS_TYPES["receiverStats"]
                           if item[0] in _METADATA_RECEIVER_KEYS),
    "queueStats": STATS_TYPES["queueStats"][:PVAPY_KEY_COUNT["queueStats"]],
}

class Counters:
    """Monotonic counters (the names in ``FIELDS``), each written by one
    thread; :meth:`reset` takes a baseline that :meth:`counts` subtracts."""

    __slots__ = ("_base",)
    FIELDS: tuple = ()

    def __init__(self):
        for name in self.FIELDS:
            setattr(self, name, 0)
        self._base = dict.fromkeys(self.FIELDS, 0)

    def reset(self) -> None:
        self._base = {name: getattr(self, name) for name in self.FIELDS}

    def counts(self) -> dict:
        base = self._base
        return {name: getattr(self, name) - base[name] for name in self.FIELDS}


class ReceiverCounters(Counters):
    """Written by the receiver's callback thread only."""
    FIELDS = ("n_received", "n_skipped", "n_repeated", "n_accepted", "n_overruns",
              "n_errors", "n_missed", "n_connects", "n_disconnects")
    __slots__ = FIELDS


class PublisherCounters(Counters):
    """Written by the thread that publishes (the processing thread)."""
    FIELDS = ("n_published", "n_errors")
    __slots__ = FIELDS


class ProcessorCounters(Counters):
    """Written by the processing thread only; also holds the first/last
    object ids and times, which a reset clears (in that same thread)."""
    FIELDS = ("n_processed", "n_errors", "n_frame_errors", "n_codec_errors")
    __slots__ = FIELDS + ("first_object_id", "last_object_id", "first_object_time",
                          "last_object_time", "start_time", "end_time")

    def __init__(self):
        super().__init__()
        self.start_time = time.time()
        self.end_time = 0.0
        self.clear_objects()

    def clear_objects(self) -> None:
        self.first_object_id = None
        self.last_object_id = None
        self.first_object_time = 0.0
        self.last_object_time = 0.0

    def reset(self) -> None:
        super().reset()
        self.clear_objects()
        self.start_time = time.time()
        self.end_time = 0.0

    def count_error(self, exc: BaseException) -> None:
        self.n_errors += 1
        if isinstance(exc, FrameError):
            self.n_frame_errors += 1
        elif isinstance(exc, CodecError):
            self.n_codec_errors += 1


class IdTracker:
    """Missed-frame accounting from object ids (INTEROP 3.4).

    ``offset``: the id step from one of this consumer's turns to the next
    (1 when it gets every frame); ``sequential``: how many consecutive ids
    a turn holds (pvapy's nSequentialUpdates, the distributor's -du U).

    One update per turn (pvapy's formula): between consecutive ids ``last``
    and ``oid`` the consumer missed ``(oid - last - offset) // offset``
    objects when that is positive.

    U > 1: the consumer's ids come in runs of U consecutive ids whose
    starts are ``period = offset - 1 + U`` apart (4 consumers, U = 3:
    consumer 1 gets 1-3, 13-15, 25-27, ...), counted from the first id
    seen. Missed are the ids of that pattern strictly between ``last`` and
    ``oid``; this agrees with pvapy's group-aware count for ids that follow
    the pattern (tested against pvapy). An id below the last one (a
    restarted server) starts the pattern afresh instead of being counted."""

    __slots__ = ("offset", "sequential", "last_id", "first_id")

    def __init__(self, offset: int = 1, sequential: int = 1):
        self.offset = max(1, int(offset))
        self.sequential = max(1, int(sequential))
        self.last_id = None
        self.first_id = None

    def _expected_up_to(self, oid: int) -> int:
        """How many ids of the pattern lie in [first_id, oid]."""
        d = oid - self.first_id
        if d < 0:
            return 0
        period = self.offset - 1 + self.sequential
        turns, into = divmod(d, period)
        return turns * self.sequential + min(into + 1, self.sequential)

    def update(self, oid: int) -> int:
        """Record ``oid``; the number of objects missed just before it."""
        last = self.last_id
        self.last_id = oid
        if last is None:
            self.first_id = oid
            return 0
        if self.sequential == 1:
            gap = oid - last - self.offset
            return gap // self.offset if gap >= self.offset else 0
        if oid <= last:
            self.first_id = oid
            return 0
        return max(0, self._expected_up_to(oid - 1) - self._expected_up_to(last))

    def restart(self) -> None:
        """Forget the last id (after a stats reset)."""
        self.last_id = None
        self.first_id = None


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 and n > 0 else 0.0


def build_stats(*, consumer_id: int, input_channel: str, receiver: ReceiverCounters,
                queue_length: int, queue_max: int, processor: ProcessorCounters,
                publisher: PublisherCounters | None, connected: bool = False,
                user_stats: dict | None = None, metadata_stats: dict | None = None,
                now: float | None = None, id_field: str = "consumerId") -> dict:
    """The pvapy-structured statistics dictionary of one consumer.

    Rates divide by the receiving time (last minus first processed object
    time), as pvapy's do; ``runtime`` is the time since start or the last
    reset (until ``endTime`` once stopped). ``id_field`` names the id
    (a collector's is ``collectorId``, as pvapy's)."""
    now = time.time() if now is None else now
    r = receiver.counts()
    p = processor.counts()
    end = processor.end_time or now
    receiving = max(0.0, processor.last_object_time - processor.first_object_time)
    receiver_stats = {
        "nReceived": r["n_received"], "receivedRate": _rate(r["n_received"], receiving),
        "nRejected": r["n_overruns"], "rejectedRate": _rate(r["n_overruns"], receiving),
        "nErrors": r["n_errors"], "errorRate": _rate(r["n_errors"], receiving),
        "nOverruns": r["n_overruns"], "overrunRate": _rate(r["n_overruns"], receiving),
        "nSkipped": r["n_skipped"], "nRepeated": r["n_repeated"],
        "nConnects": r["n_connects"], "nDisconnects": r["n_disconnects"],
        "connected": bool(connected),
    }
    queued = max(0, int(queue_length))
    queue_stats = {
        "nReceived": r["n_accepted"] + r["n_overruns"], "nRejected": r["n_overruns"],
        "nDelivered": max(0, r["n_accepted"] - queued), "nQueued": queued,
        "maxLength": int(queue_max),
    }
    processor_stats = {
        "runtime": end - processor.start_time,
        "startTime": processor.start_time,
        "endTime": processor.end_time,
        "receivingTime": receiving,
        "firstObjectTime": processor.first_object_time,
        "lastObjectTime": processor.last_object_time,
        "firstObjectId": processor.first_object_id or 0,
        "lastObjectId": processor.last_object_id or 0,
        "nProcessed": p["n_processed"], "processedRate": _rate(p["n_processed"], receiving),
        "nErrors": p["n_errors"], "errorRate": _rate(p["n_errors"], receiving),
        "nMissed": r["n_missed"], "missedRate": _rate(r["n_missed"], receiving),
        "nFrameErrors": p["n_frame_errors"], "nCodecErrors": p["n_codec_errors"],
    }
    if publisher is not None:
        c = publisher.counts()
        publisher_stats = {
            "nPublished": c["n_published"], "publishedRate": _rate(c["n_published"], receiving),
            "nErrors": c["n_errors"], "errorRate": _rate(c["n_errors"], receiving),
        }
    else:
        publisher_stats = {}
    return {
        id_field: consumer_id,          # a collector's is collectorId
        "inputChannel": input_channel,
        "receiverStats": receiver_stats,
        "queueStats": queue_stats,
        "processorStats": processor_stats,
        "publisherStats": publisher_stats,
        "userStats": dict(user_stats or {}),
        "metadataStats": dict(metadata_stats or {}),
    }


class ErrorLog:
    """Rate-limited log lines for counted errors: at most one line per
    ``period`` seconds (of ``clock``) for each kind, saying how many were
    not logged; logged at ``level`` (warning by default)."""

    def __init__(self, logger, period: float = 5.0, level: int = logging.WARNING,
                 clock=time.monotonic):
        self.logger = logger
        self.period = period
        self.level = level
        self._clock = clock
        self._last = {}
        self._suppressed = {}

    def __call__(self, kind: str, message: str, *args) -> None:
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.period:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        n = self._suppressed.pop(kind, 0)
        if n:
            message += f" ({n} more {kind} errors not logged in the last {self.period:g} s)"
        self.logger.log(self.level, message, *args)
