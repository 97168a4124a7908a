"""The collector: a consumer whose input is several producers' channels, put in id order.

pvapy-hpc-collector's counterpart (pvapy/hpc/dataCollector.py,
dataCollectorController.py). A :class:`Collector` is a
:class:`~pvagpu.consumer.Consumer` (same processor API, output, status and
control channels, statistics, reports and life cycle) whose receive side
is a :class:`~pvagpu.collector.producers.ProducerGroup` (one monitor per
producer channel) feeding an :class:`~pvagpu.collector.cache.OrderingCache`,
from which one thread hands the objects to the processor in id order
(:class:`~pvagpu.collector.delivery.CollectorDelivery`). It gathers the
outputs of a split -> process stage, e.g. the frames that N consumers
shared through the distributor, or the tiles of each frame, which a
stitching processor then gets together::

    config = CollectorConfig("process:*:output", producer_ids="1,2",
                             output_channel="collector:*:output", status_channel="_")
    stats = Collector(config).run()

Statistics: pvapy's ``collectorStats`` (nCollected, nRejected, nMissed,
nCached and their rates, plus pvagpu's nOverflows and nRefused, see
pvagpu.collector.cache) and one ``producerStats_<id>`` per producer
(producerId, channel, receiverStats) join the consumer's sections, on the
status channel too; processorStats.nMissed counts the ids missing from the
ordered stream. The configure command also takes pvapy's
``collectorCacheSize``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Optional, Union

from ..consumer import Consumer
from ..pva.status import metadata_stats_spec
from ..runtime.config import ConsumerConfig
from ..runtime.delivery import DEFAULT_FRAME_QUEUE_SIZE
from ..runtime.housekeeping import Housekeeping
from ..runtime.naming import parse_id_list
from .cache import OrderingCache
from .delivery import CollectorDelivery
from .producers import ProducerGroup, producer_channels

#: the collectorStats section: pvapy's fields, then pvagpu's
COLLECTOR_STATS_TYPES = [
    ("nCollected", "I"), ("collectedRate", "d"), ("nRejected", "I"), ("rejectedRate", "d"),
    ("nMissed", "I"), ("missedRate", "d"), ("nCached", "I"),
    ("nOverflows", "I"), ("nRefused", "I"),
]


@dataclass
class CollectorConfig(ConsumerConfig):
    """A collector's settings: the consumer's (``input_channel`` is the
    producer channel pattern, ``consumer_id`` the collector id) plus these."""
    #: producer ids (-pid): "1,2", "range(1,5)" or a list
    producer_ids: Union[str, list] = "1,2"
    #: objects the cache may hold while ids are incomplete (-ccs); < 0: 10 per producer
    collector_cache_size: int = -1
    #: seconds without a new object after which the cache is emptied in order
    collector_flush: float = 5.0
    oid_offset: int = 1

    def __post_init__(self):
        super().__post_init__()
        self.producer_ids = parse_id_list(self.producer_ids)
        self.n_workers = 0          # the ordering thread is the processing thread

    def _name(self, spec: Optional[str], kind: str) -> Optional[str]:
        if spec == "_":             # pvapy's collector channels
            spec = f"pvapy:collector:*:{kind}"
        return super()._name(spec, kind)

    @property
    def input_name(self) -> str:
        """The producer channel pattern ('*': the producer id)."""
        return self.input_channel

    @property
    def producer_channels(self) -> dict:
        return producer_channels(self.input_channel, self.producer_ids, self.id_format_spec)

    @property
    def ready_queue_size(self) -> int:
        size = self.receiver_queue_size or 0
        return size if size > 0 else DEFAULT_FRAME_QUEUE_SIZE


class Collector(Consumer):
    """Runs a processor on the objects of several producers, in id order."""

    ID_FIELD = "collectorId"

    def __init__(self, config, processor=None, *, on_stats=(), **options):
        if not isinstance(config, CollectorConfig):
            config = (CollectorConfig(config, **options) if isinstance(config, str)
                      else CollectorConfig(**{**dataclasses.asdict(config), **options}))
            options = {}
        super().__init__(config, processor, on_stats=on_stats, **options)
        self.cache = self.delivery.cache
        self.statistics = CollectorStatistics(self.statistics, self)
        self.housekeeping = CollectorHousekeeping(self, runtime=config.runtime,
                                                  report_period=config.report_period,
                                                  status_period=config.status_period)

    def _make_delivery(self, config):
        cache = OrderingCache(config.producer_ids, config.collector_cache_size,
                              ready_max=config.ready_queue_size,
                              offset=config.object_id_offset, flush=config.collector_flush)
        return CollectorDelivery(self.runner, cache)

    def _make_receiver(self, config):
        return ProducerGroup(config.producer_channels, self.delivery, oid_field=config.oid_field,
                             skip_initial_updates=config.skip_initial_updates,
                             server_queue_size=config.server_queue_size,
                             field_request=config.field_request)

    def _status_sections(self):
        producer_fields = metadata_stats_spec()[2]
        return [("collectorStats", COLLECTOR_STATS_TYPES)] + [
            (f"producerStats_{pid}", producer_fields) for pid in self.config.producer_ids]


class CollectorStatistics:
    """The consumer's statistics plus collectorStats and producerStats_<id>."""

    def __init__(self, base, collector: Collector):
        self.base = base
        self.collector = collector

    def processor_stats(self) -> dict:
        return self.base.processor_stats()

    def processor_stats_types(self) -> dict:
        return self.base.processor_stats_types()

    def collect(self) -> dict:
        stats = self.base.collect()
        receiving = stats["processorStats"]["receivingTime"]

        def rate(n):
            return n / receiving if receiving > 0 else 0.0

        c = self.collector.cache.counts()
        stats["collectorStats"] = {
            "nCollected": c["n_collected"], "collectedRate": rate(c["n_collected"]),
            "nRejected": c["n_rejected"], "rejectedRate": rate(c["n_rejected"]),
            "nMissed": c["n_missed"], "missedRate": rate(c["n_missed"]),
            "nCached": c["n_cached"], "nOverflows": c["n_overflows"], "nRefused": c["n_refused"],
        }
        for pid, receiver in self.collector.receiver.receivers.items():
            r = receiver.counters.counts()
            stats[f"producerStats_{pid}"] = {
                "producerId": pid, "channel": receiver.channel,
                "receiverStats": {
                    "nReceived": r["n_received"], "receivedRate": rate(r["n_received"]),
                    "nRejected": r["n_overruns"], "rejectedRate": rate(r["n_overruns"]),
                    "nOverruns": r["n_overruns"], "overrunRate": rate(r["n_overruns"])},
                "queueStats": {}}
        return stats

    def reset(self) -> None:
        self.base.reset()       # the producers' receivers and the cache too


class CollectorHousekeeping(Housekeeping):
    """The consumer's housekeeping; configure also takes collectorCacheSize."""

    def _configure(self, args: str) -> str:
        try:
            config = json.loads(args) if args and args.strip() else {}
            if isinstance(config, dict) and "collectorCacheSize" in config:
                self.consumer.cache.resize(int(config["collectorCacheSize"]))
        except (TypeError, ValueError):
            pass    # the consumer's configure reports what is wrong with args
        return super()._configure(args)
