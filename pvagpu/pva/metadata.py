"""Metadata channels: side channels whose updates a processor pairs with frames.

``--metadata-channels pva://A,ca://B,C`` subscribes to each channel and fills
``processor.metadataQueueMap``: channel name (protocol prefix stripped) ->
a bounded :class:`~pvagpu.pva.metadata_queue.MetadataQueue` of that
channel's updates, in arrival order. A processor pulls them as it would
from pvapy's queues::

    try:
        value = self.metadataQueueMap['A'].get(timeout=0.1)
    except queue.Empty:            # pvagpu.pva.QueueEmpty is the same class
        ...
    t = value['timeStamp.secondsPastEpoch'] + 1e-9 * value['timeStamp.nanoseconds']
    x = value['value']

This module parses the channel specifications and holds
:class:`MetadataChannels`, the set of one consumer's channels; the queue is
in :mod:`pvagpu.pva.metadata_queue`, the subscriptions (``pva://NAME`` with
p4p, ``ca://NAME`` or a bare ``NAME`` with the pyepics package, an optional
dependency) in :mod:`pvagpu.pva.metadata_subscriptions`.

Queues and counters
-------------------
Every queue is bounded (``queue_size``, default
:data:`~pvagpu.pva.metadata_queue.DEFAULT_METADATA_QUEUE_SIZE`; 0 or less
also means the default, because memory never grows without bound here).
The monitor callback never blocks: an update that finds its queue full is
dropped and counted, both as a queue rejection (``queueStats.nRejected``,
what pvapy's queue counts) and as a receiver overrun
(``receiverStats.nOverruns``, pvagpu's name for a frame lost to a full
queue). ``receiverStats.nRejected`` counts updates the receiver could not
turn into a queued value (a CA value of an unknown type, an error reported
by the server for the subscription). Rates divide by the receiving time
given to :meth:`MetadataChannels.stats`, or else by the time since
:meth:`~MetadataChannels.start` / :meth:`~MetadataChannels.reset_stats`.
:meth:`MetadataChannels.stats` gives the counters as a dictionary; the
status channel (:mod:`pvagpu.pva.status`) lays them out as its
``metadataStats_<n>`` structures.
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Optional

from p4p.client.thread import Context

from ..errors import ConfigurationError
from .channel_search import SEARCH_PERIOD, ChannelSearch
from .metadata_queue import DEFAULT_METADATA_QUEUE_SIZE, MetadataQueue, queue_size_or_default
from .metadata_subscriptions import CaSubscription, MetadataSubscription, PvaSubscription

__all__ = ["MetadataChannels", "parse_spec", "parse_specs"]

log = logging.getLogger(__name__)

PROTOCOLS = ("pva", "ca")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
_BAD_NAME_CHARS = re.compile(r"[\s,\"'\\]")


def parse_spec(text: str) -> tuple[str, str]:
    """``(protocol, name)`` of one metadata channel specification.

    ``pva://NAME`` -> ``('pva', NAME)``; ``ca://NAME`` and a bare ``NAME`` ->
    ``('ca', NAME)``. The protocol is case-insensitive. Raises
    :class:`ConfigurationError` for an empty name, an unknown protocol, or a
    name with whitespace, quotes, backslashes or commas.
    """
    if not isinstance(text, str):
        raise ConfigurationError(f"metadata channel must be a string, not {type(text).__name__}")
    spec = text.strip()
    match = _SCHEME.match(spec)
    if match:
        protocol, name = match.group(1).lower(), match.group(2)
        if protocol not in PROTOCOLS:
            raise ConfigurationError(
                f"metadata channel {text!r}: unknown protocol {match.group(1)!r}; "
                "use pva://NAME or ca://NAME (a bare NAME is Channel Access)")
    else:
        protocol, name = "ca", spec
    if not name:
        raise ConfigurationError(f"metadata channel {text!r} has an empty name")
    if "://" in name:
        raise ConfigurationError(f"metadata channel {text!r}: name {name!r} contains '://'")
    bad = _BAD_NAME_CHARS.search(name)
    if bad:
        raise ConfigurationError(
            f"metadata channel {text!r}: character {bad.group(0)!r} is not allowed in a channel name")
    return protocol, name


def parse_specs(text: Optional[str]) -> list[str]:
    """Validate the comma list of ``--metadata-channels`` and return it as
    normalized specifications (``pva://NAME`` or ``ca://NAME``), in order.

    Empty items (``a,,b`` or a trailing comma) are skipped, as pvapy does;
    ``None`` or an empty string gives ``[]``. The same channel name twice
    (even with different protocols) is a :class:`ConfigurationError`, because
    ``metadataQueueMap`` is keyed by name.
    """
    if text is None:
        return []
    if not isinstance(text, str):
        raise ConfigurationError(
            f"--metadata-channels must be a comma-separated string, not {type(text).__name__}")
    return _normalize([item for item in text.split(",") if item.strip()])


def _normalize(items) -> list[str]:
    """Normalized specs for a list of single specifications; rejects
    duplicates and items that are not strings or contain a comma."""
    specs, seen = [], {}
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(
                f"metadata channel must be a string, not {type(item).__name__}")
        if "," in item:
            raise ConfigurationError(
                f"metadata channel {item!r}: ',' is not allowed in a channel name")
        protocol, name = parse_spec(item)
        if name in seen:
            raise ConfigurationError(
                f"metadata channel {name!r} is given twice ({seen[name]!r} and {item.strip()!r})")
        seen[name] = item.strip()
        specs.append(f"{protocol}://{name}")
    return specs


class MetadataChannels:
    """The metadata channels of one consumer.

    ``specs`` are channel specifications (``pva://NAME``, ``ca://NAME``,
    bare ``NAME`` = CA; see :func:`parse_specs`); a single comma-separated
    string is accepted too. Channel ids are 1..n in list order. Construction
    validates everything (a :class:`ConfigurationError` for a bad spec, a
    duplicate name, or ca:// without pyepics); :meth:`start` subscribes
    (a pva:// channel that appears later is found within about
    ``search_period`` s, :mod:`pvagpu.pva.channel_search`; <= 0: pvxs'
    own search back-off only),
    :meth:`stop` closes every subscription (queues keep what they hold).
    Usable as a context manager.
    """

    def __init__(self, specs, queue_size: int = DEFAULT_METADATA_QUEUE_SIZE,
                 server_queue_size: int = 0, search_period: float = SEARCH_PERIOD):
        normalized = parse_specs(specs) if isinstance(specs, str) else _normalize(specs or [])
        self.queue_size = queue_size_or_default(queue_size)
        self.server_queue_size = int(server_queue_size or 0)
        self._connect_cond = threading.Condition()
        self._channels: list[MetadataSubscription] = []
        for channel_id, spec in enumerate(normalized, start=1):
            protocol, name = parse_spec(spec)
            if protocol == "pva":
                channel = PvaSubscription(channel_id, name, self.queue_size,
                                          self.server_queue_size, self._notify_connect)
            else:
                channel = CaSubscription(channel_id, name, self.queue_size, self._notify_connect)
            self._channels.append(channel)
        #: channel name (prefix stripped) -> MetadataQueue; give this to the
        #: processor as ``metadataQueueMap``.
        self.queue_map: dict[str, MetadataQueue] = {c.name: c.queue for c in self._channels}
        self._context = None
        #: re-opens the pva:// channels that deliver nothing (see search_period)
        self.search_period = float(search_period)
        self._search = None
        self._started = False

    @classmethod
    def for_consumer(cls, config) -> "MetadataChannels":
        """The metadata channels of a consumer: ``config.metadata_channels``,
        queues of ``config.receiver_queue_size`` updates (<= 0: the default)
        and the monitor queue ``config.server_queue_size`` (-sqs). ``config``:
        a :class:`~pvagpu.runtime.config.ConsumerConfig`, or a worker's spec
        with the same three fields: the receiving process and each worker
        process (:mod:`pvagpu.runtime.workers`) subscribe alike."""
        return cls(config.metadata_channels, queue_size=max(0, config.receiver_queue_size or 0),
                   server_queue_size=config.server_queue_size)

    # ------------------------------------------------------------------ life
    def start(self) -> "MetadataChannels":
        """Subscribe to every channel (no-op when already started)."""
        if self._started:
            return self
        if any(c.protocol == "pva" for c in self._channels):
            self._context = Context("pva", nt=False)
            self._search = ChannelSearch(self.search_period, "pvagpu-metadata-search")
        try:
            for channel in self._channels:
                channel.reset_stats()
                channel.start(self._context)
                if channel.protocol == "pva":
                    self._search.watch(lambda c=channel: not c.connected, channel.reopen)
        except BaseException:
            self.stop()
            raise
        self._started = True
        log.info("metadata channels started: %s", ", ".join(self.specs) or "none")
        return self

    def stop(self) -> None:
        """Close every subscription and the client context; idempotent."""
        search, self._search = self._search, None
        if search is not None:
            search.stop()
        for channel in self._channels:
            try:
                channel.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others anyway
                log.warning("metadata channel %s: stop failed: %s", channel.spec, exc)
        context, self._context = self._context, None
        if context is not None:
            context.close()
        self._started = False

    close = stop

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------ queries
    @property
    def specs(self) -> list[str]:
        return [c.spec for c in self._channels]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self._channels]

    def __len__(self) -> int:
        return len(self._channels)

    @property
    def connected(self) -> dict[str, bool]:
        """channel name -> whether its subscription is connected now."""
        return {c.name: c.connected for c in self._channels}

    def _notify_connect(self) -> None:
        with self._connect_cond:
            self._connect_cond.notify_all()

    def wait_connected(self, timeout: Optional[float] = None) -> bool:
        """Wait until every channel is connected; ``False`` on timeout."""
        with self._connect_cond:
            return self._connect_cond.wait_for(
                lambda: all(c.connected for c in self._channels), timeout)

    def set_queue_size(self, size: int) -> None:
        """Change every queue's limit (the control channel's
        ``receiverQueueSize``); size <= 0 means the default."""
        self.queue_size = queue_size_or_default(size)
        for channel in self._channels:
            channel.queue.maxLength = self.queue_size

    def reset_stats(self) -> None:
        for channel in self._channels:
            channel.reset_stats()

    def stats(self, receiving_time: Optional[float] = None) -> dict:
        """``{'metadata-<n>': {'channel', 'receiverStats', 'queueStats'}}`` for
        n = 1.. in list order; rates per second of ``receiving_time`` if > 0,
        else of the time since start / reset."""
        return {f"metadata-{c.channel_id}": c.stats(receiving_time) for c in self._channels}

    def __repr__(self) -> str:
        return f"MetadataChannels({self.specs!r}, queue_size={self.queue_size})"
