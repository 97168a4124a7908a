"""Metadata channels (-mc) of a consumer with worker processes.

Each worker process subscribes to the consumer's metadata channels itself
(:meth:`~pvagpu.pva.metadata.MetadataChannels.for_consumer`, as the
receiving process does without workers) and gives its processor their
queues as ``metadataQueueMap``, under the same names. So every worker sees
every metadata update, and a processor that pairs metadata with frames by
time stamp (pop from the queue until the stamp matches) works whichever
worker gets a frame, as with pvapy's split consumers.

The receiving process subscribes to nothing. :class:`WorkerMetadata`
stands in for its :class:`~pvagpu.pva.metadata.MetadataChannels` where the
runtime uses them (statistics, the status channel, the control channel):

* :meth:`WorkerMetadata.stats` gives ``metadata-<n>`` entries (the status
  channel's ``metadataStats_<n>``) summed over the workers (each worker
  subscribes: an update counts once per worker); each worker's own counts
  are in its ``worker<N>Stats`` section, as ``metadata<n>``
  (:func:`worker_sections`, :data:`.stats.WORKER_METADATA_TYPES`);
* ``reset_stats`` and ``set_queue_size`` have nothing to do here: the
  reset_stats command and the configure command's ``receiverQueueSize``
  reach every worker (:class:`~.child.ConsumerWorker`).
"""
from __future__ import annotations

from .stats import WORKER_METADATA_TYPES, total_user_stats

#: the groups of one channel's statistics (pvagpu.stats.METADATA_STATS_TYPES)
_GROUPS = ("receiverStats", "queueStats")


def section_key(channel_id: int) -> str:
    """The key of channel ``channel_id``'s counts in a worker's section
    (and on the status channel): ``metadata<n>``."""
    return f"metadata{channel_id}"


def section_fields(n_channels: int) -> list:
    """The p4p fields of the ``metadata<n>`` entries of a worker's section."""
    return [(section_key(n), ("S", None, list(WORKER_METADATA_TYPES)))
            for n in range(1, n_channels + 1)]


def worker_sections(metadata_stats: dict) -> dict:
    """A worker's ``metadata-<n>`` statistics (MetadataChannels.stats) as
    its section's ``metadata<n>`` entries."""
    out = {}
    for key, entry in (metadata_stats or {}).items():
        counts = {**entry.get("queueStats", {}), **entry.get("receiverStats", {}),
                  "channel": entry.get("channel", "")}
        out[section_key(int(key.rsplit("-", 1)[1]))] = {
            name: counts[name] for name, _ in WORKER_METADATA_TYPES if name in counts}
    return out


class WorkerMetadata:
    """The metadata channels of a consumer's workers, seen from the
    receiving process (see the module docstring). ``channels``: the
    consumer's :class:`~pvagpu.pva.metadata.MetadataChannels`, built (so
    the specifications are checked here) but never started; ``pool``: the
    WorkerPool, whose handles hold each worker's last statistics."""

    def __init__(self, pool, channels):
        self.pool = pool
        self.channels = channels
        #: the queues live in the workers: the receiving process has none
        self.queue_map = {}

    def __len__(self) -> int:
        return len(self.channels)

    @property
    def specs(self) -> list:
        return self.channels.specs

    @property
    def names(self) -> list:
        return self.channels.names

    def start(self):
        """The workers subscribe, each before it says it is ready."""
        return self

    def stop(self) -> None:
        """The workers close their subscriptions when they stop."""

    def reset_stats(self) -> None:
        """The reset_stats command resets every worker's counts."""

    def set_queue_size(self, size: int) -> None:
        """The configure command's receiverQueueSize reaches every worker."""

    def stats(self, receiving_time=None) -> dict:
        """``metadata-<n>`` entries summed over the workers' last statistics
        (counts and rates summed; ``receiving_time`` is not used: each
        worker's rates are per second of its own subscription time)."""
        per_worker = [h.last_stats.get("metadata") or {} for h in self.pool.handles]
        out = {}
        for n, name in enumerate(self.channels.names, start=1):
            key = f"metadata-{n}"
            entries = [w[key] for w in per_worker if key in w]
            out[key] = {"channel": name, **{
                group: total_user_stats([e.get(group, {}) for e in entries]) for group in _GROUPS}}
        return out
