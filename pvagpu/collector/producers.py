"""The collector's input side: one monitor per producer channel, seen as one receiver.

pvapy's collector names its producer channels from the input channel
pattern: ``*`` becomes each producer id (formatted with -ifs), e.g.
``-ic 'process:*:output' -pid 1,2,3,4``. :class:`ProducerGroup` opens a
:class:`~pvagpu.pva.receiver.Receiver` on each (server queue size, field
request and skipped initial updates as given, per channel) delivering into
the collector's ordering cache, and stands in for the consumer's single
receiver: ``counters`` are the producers' summed, with ``n_missed`` the
ids missing from the ordered stream (the cache's count: one producer's ids
have gaps by design when producers share a stream); ``skip`` and ``ids``
(the id step) are what the configure command sets.
"""
from __future__ import annotations

from ..pva.receiver import Receiver
from ..runtime.naming import format_id
from ..stats import ReceiverCounters


def producer_channels(pattern: str, producer_ids, id_format_spec: str | None = None) -> dict:
    """``{producer id: channel name}``: ``*`` in ``pattern`` becomes the id."""
    return {pid: pattern.replace("*", format_id(pid, id_format_spec)) for pid in producer_ids}


class ProducerGroup:
    """The producers' receivers (see the module docstring); ``delivery``: a
    :class:`~pvagpu.collector.delivery.CollectorDelivery`."""

    def __init__(self, channels: dict, delivery, *, oid_field: str = "uniqueId",
                 skip_initial_updates: int = 1, server_queue_size: int = 0,
                 field_request: str | None = ""):
        self.cache = delivery.cache
        self.oid_field = oid_field
        self.receivers = {
            pid: Receiver(name, oid_field=oid_field, skip_initial_updates=skip_initial_updates,
                          server_queue_size=server_queue_size, field_request=field_request,
                          deliver=delivery.offer_from(pid))
            for pid, name in channels.items()}
        #: the id step (objectIdOffset of the configure command): the cache's
        self.ids = self.cache
        self.distributor = {}
        self.distributor_plugin = ""

    @property
    def request(self) -> str:
        first = next(iter(self.receivers.values()))
        return f"{len(self.receivers)} producer channels, request {first.request!r} each"

    @property
    def channels(self) -> dict:
        return {pid: r.channel for pid, r in self.receivers.items()}

    # -- what the consumer's runtime reads and sets ---------------------------------

    @property
    def counters(self) -> ReceiverCounters:
        total = ReceiverCounters()
        for r in self.receivers.values():
            for name, count in r.counters.counts().items():
                setattr(total, name, getattr(total, name) + count)
        total.n_missed = self.cache.n_missed
        return total

    @property
    def connected(self) -> bool:
        """Every producer channel is connected."""
        return all(r.connected for r in self.receivers.values())

    @property
    def skip(self) -> int:
        return max(r.skip for r in self.receivers.values())

    @skip.setter
    def skip(self, n: int) -> None:
        for r in self.receivers.values():
            r.skip = n

    @property
    def on_note(self):
        return None

    @on_note.setter
    def on_note(self, note) -> None:
        for r in self.receivers.values():
            r.on_note = note

    def reset_stats(self) -> None:
        for r in self.receivers.values():
            r.reset_stats()
        self.cache.reset_stats()

    def start(self) -> None:
        for r in self.receivers.values():
            r.start()

    def stop(self) -> None:
        for r in self.receivers.values():
            r.stop()
