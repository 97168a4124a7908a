"""Worker statistics: the per-worker counters, their PVA types, and the total userStats.

Each worker of a consumer has a section ``worker<N>Stats`` in the
statistics dictionary and on the status channel (one sub-structure per
worker, after pvapy's groups, as ``metadataStats_<n>``); its keys and
types are :data:`WORKER_STATS_TYPES`, plus ``user``: that worker's
processor statistics, with the types of the consumer's ``userStats``.

With metadata channels (-mc) each worker's section also has
``metadata<n>``: that worker's counts for channel n
(:data:`WORKER_METADATA_TYPES`; the consumer's ``metadataStats_<n>`` is
their sum, see :mod:`.metadata`).

``userStats`` holds the total over the workers (:func:`total_user_stats`).
"""
from __future__ import annotations

import numbers

from ...stats import Counters

#: THE table of a worker's statistics keys and their p4p type codes.
WORKER_STATS_TYPES = (
    ("workerId", "I"), ("pid", "I"), ("gpu", "s"), ("state", "s"),
    ("nDispatched", "I"), ("nProcessed", "I"), ("processedRate", "d"),
    ("nErrors", "I"), ("errorRate", "d"), ("nLost", "I"), ("nInFlight", "I"),
    ("nRestarts", "I"), ("lostIds", "s"), ("ringSlots", "I"), ("ringSlotsInUse", "I"),
    ("nRingFull", "I"),
)

#: a worker's counts for one metadata channel, ``metadata<n>`` in its section:
#: the receiver's nReceived / nRejected / nOverruns, the queue's nDelivered / nQueued
WORKER_METADATA_TYPES = (
    ("channel", "s"), ("nReceived", "I"), ("nRejected", "I"), ("nOverruns", "I"),
    ("nDelivered", "I"), ("nQueued", "I"),
)

#: how many of a worker's lost uniqueIds its section lists (the newest)
LOST_IDS_SHOWN = 32


def section_name(worker_id: int) -> str:
    """The key of worker ``worker_id``'s section: ``worker<N>Stats``."""
    return f"worker{worker_id}Stats"


class WorkerCounters(Counters):
    """One worker's frame counts in the receiving process. ``n_dispatched``
    is written by the PVA thread, the others by the worker's collector thread."""
    FIELDS = ("n_dispatched", "n_processed", "n_errors", "n_lost")
    __slots__ = FIELDS


def _is_counter(key: str) -> bool:
    return ((len(key) > 1 and key[0] == "n" and key[1].isupper())
            or key.endswith(("Rate", "Time", "Ms", "Bytes")) or key.startswith("bytes"))


def total_user_stats(per_worker: list) -> dict:
    """The consumer's userStats from its workers' processor statistics.

    Counters (``nFoo``, ``...Rate``, ``...Time``, ``...Ms``, ``...Bytes``,
    ``bytes...``) are summed; ``max...`` keys take the largest value and
    ``min...`` keys the smallest; any other value is kept when every worker
    has the same, else numbers take the largest (``lastUniqueId``,
    occupancies) and text lists the distinct values (``gpuDevice``)."""
    keys = []
    for stats in per_worker:
        keys += [k for k in stats if k not in keys]
    total = {}
    for key in keys:
        values = [s[key] for s in per_worker if key in s]
        numeric = all(isinstance(v, numbers.Number) and not isinstance(v, bool) for v in values)
        if numeric and key.startswith("min"):
            total[key] = min(values)
        elif numeric and (key.startswith("max") or not _is_counter(key)):
            total[key] = max(values)
        elif numeric:
            total[key] = sum(values)
        elif all(isinstance(v, bool) for v in values):
            total[key] = any(values)
        else:
            distinct = list(dict.fromkeys(str(v) for v in values))
            total[key] = distinct[0] if len(distinct) == 1 else ", ".join(distinct)
    return total
