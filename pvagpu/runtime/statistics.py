"""A consumer's statistics: gathered from its parts, reset all at once.

:class:`ConsumerStatistics` builds pvapy's statistics dictionary
(:func:`pvagpu.stats.build_stats`) from the receiver's, the delivery
queue's, the frame runner's, the publisher's and the metadata channels'
counters and the processor's own statistics, and resets them together.

It is also the one place where the runtime calls the processor's
statistics methods, ``getStats``, ``getStatsPvaTypes`` and ``resetStats``:
through :func:`pvagpu.gpu.processor.processor_stats`,
``processor_stats_types`` and ``reset_processor_stats``, which merge a GPU
processor's framework statistics (``getGpuStats``) with the user's. A
processor whose method raises is logged (rate-limited) and gives no
statistics; the stream goes on.
"""
from __future__ import annotations

import logging

from ..gpu.processor import processor_stats, processor_stats_types, reset_processor_stats
from ..stats import ErrorLog, build_stats

log = logging.getLogger(__name__)


class ConsumerStatistics:
    """The statistics of one consumer, from the parts that count."""

    def __init__(self, consumer_id: int, input_channel: str, *, processor, receiver, delivery,
                 runner, publisher=None, metadata=None, workers=None, id_field="consumerId"):
        self.consumer_id = consumer_id
        self.id_field = id_field
        self.input_channel = input_channel
        self.processor = processor
        self.receiver = receiver
        self.delivery = delivery
        self.runner = runner
        self.publisher = publisher
        self.metadata = metadata
        #: the WorkerPool (then also the processor): adds the worker<N>Stats sections
        self.workers = workers
        self._errors = ErrorLog(log)

    # -- the processor's own statistics ---------------------------------------

    def processor_stats(self) -> dict:
        """The processor's statistics ({} if it fails)."""
        return self._ask_processor(processor_stats, "getStats")

    def processor_stats_types(self) -> dict:
        """The PVA types of the processor's statistics ({} if it fails)."""
        return self._ask_processor(processor_stats_types, "getStatsPvaTypes")

    def _ask_processor(self, function, name: str) -> dict:
        try:
            return function(self.processor) or {}
        except Exception as exc:
            self._errors(f"processor.{name}", "consumer %s: processor.%s() failed: %s: %s",
                         self.consumer_id, name, type(exc).__name__, exc)
            return {}

    # -- all of them -----------------------------------------------------------

    def collect(self) -> dict:
        """The statistics dictionary (pvapy's structure, see pvagpu.stats)."""
        c = self.runner.counters
        receiving = max(0.0, c.last_object_time - c.first_object_time)
        stats = build_stats(
            consumer_id=self.consumer_id, input_channel=self.input_channel,
            receiver=self.receiver.counters, queue_length=self.delivery.queue_length,
            queue_max=self.delivery.queue_max, processor=c,
            publisher=self.publisher.counters if self.publisher is not None else None,
            connected=self.receiver.connected,
            user_stats=self.processor_stats(),
            metadata_stats=self.metadata.stats(receiving or None) if self.metadata else None,
            id_field=self.id_field)
        if self.workers is not None:   # after processor_stats() asked every worker
            stats.update(self.workers.sections())
        return stats

    def reset(self) -> None:
        """Start every count afresh (the reset_stats command; hold the
        frame runner's lock)."""
        self.receiver.reset_stats()
        self.runner.counters.reset()
        if self.publisher is not None:
            self.publisher.reset_stats()
        if self.metadata is not None:
            self.metadata.reset_stats()
        try:
            reset_processor_stats(self.processor)
        except Exception as exc:
            log.warning("consumer %s: processor.resetStats() failed: %s", self.consumer_id, exc)
