"""One metadata channel's subscription: a monitor that feeds one
:class:`~pvagpu.pva.metadata_queue.MetadataQueue` and counts what it receives.

:class:`PvaSubscription` (``pva://NAME``)
    A p4p monitor on the shared ``Context('pva', nt=False)`` of
    :class:`~pvagpu.pva.metadata.MetadataChannels`, with request ``field()``,
    or ``record[queueSize=N]field()`` when ``server_queue_size`` > 0. Each
    queued item is the p4p ``Value`` of one update, exactly as received.
    A channel that appears after the consumer started is found within
    about half a second (:meth:`PvaSubscription.reopen`, driven by
    :mod:`pvagpu.pva.channel_search`).
:class:`CaSubscription` (``ca://NAME`` or a bare ``NAME``)
    A Channel Access monitor (DBR_TIME, value + alarm changes) through the
    pyepics package, an optional dependency (``pip install pyepics`` or
    ``pip install 'pvagpu[ca]'``; its wheel ships libca, no EPICS
    installation needed). Each update is queued as an NTScalar /
    NTScalarArray ``Value`` (``value``, ``alarm``, ``timeStamp``) so
    processors read CA and PVA metadata the same way; the monitor and the
    conversion (CA element types to p4p codes, an ENUM as its index) are
    :mod:`pvagpu.pva.ca_monitor`'s, shared with the CA input mode (-im ca).
    CA has no server-side queue, so ``server_queue_size`` does not apply.
    Without pyepics, constructing a CA subscription raises
    :class:`~pvagpu.errors.ConfigurationError`.

What the counters of :meth:`MetadataSubscription.stats` count is
described in :mod:`pvagpu.pva.metadata` ("Queues and counters").
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

from p4p import Value
from p4p.client.thread import Cancelled, Disconnected, Finished

from .ca_monitor import CaMonitor
from .metadata_queue import MetadataQueue

log = logging.getLogger(__name__)


class MetadataSubscription:
    """One subscription feeding one queue, with its receiver counters.

    ``on_connect`` is called (from the client library's thread) each time
    the subscription connects."""

    protocol = ""

    def __init__(self, channel_id: int, name: str, queue_size: int,
                 on_connect: Optional[Callable[[], None]] = None):
        self.channel_id = channel_id
        self.name = name
        self.queue = MetadataQueue(queue_size)
        self.connected = False
        self.last_error: Optional[str] = None
        self._lock = threading.Lock()
        self._n_received = self._n_rejected = self._n_overruns = 0
        self._t0 = time.monotonic()
        self._on_connect = on_connect

    @property
    def spec(self) -> str:
        return f"{self.protocol}://{self.name}"

    # called from the client library's callback thread: never blocks
    def _deliver(self, value) -> None:
        with self._lock:
            self._n_received += 1
            if not self.queue.put(value):
                self._n_overruns += 1

    def _reject(self, why: str) -> None:
        with self._lock:
            self._n_rejected += 1
        if why != self.last_error:
            log.warning("metadata channel %s: %s", self.spec, why)
        self.last_error = why

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            log.info("metadata channel %s %s", self.spec,
                     "connected" if connected else "disconnected")
        self.connected = connected
        if connected and self._on_connect is not None:
            self._on_connect()

    def reset_stats(self) -> None:
        with self._lock:
            self._n_received = self._n_rejected = self._n_overruns = 0
            self._t0 = time.monotonic()
        self.queue.reset_stats()

    def stats(self, receiving_time: Optional[float] = None) -> dict:
        """``{'channel', 'receiverStats', 'queueStats'}``: the counters, with
        rates per second of ``receiving_time`` if > 0, else of the time
        since the last reset."""
        with self._lock:
            n_rcv, n_rej, n_ovr = self._n_received, self._n_rejected, self._n_overruns
            elapsed = time.monotonic() - self._t0
        if receiving_time is not None and receiving_time > 0:
            elapsed = receiving_time

        def rate(n):
            return n / elapsed if elapsed > 0 else 0.0

        return {
            "channel": self.name,
            "receiverStats": {"nReceived": n_rcv, "receivedRate": rate(n_rcv),
                              "nRejected": n_rej, "rejectedRate": rate(n_rej),
                              "nOverruns": n_ovr, "overrunRate": rate(n_ovr)},
            "queueStats": self.queue.stats(),
        }

    def start(self, context) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class PvaSubscription(MetadataSubscription):
    protocol = "pva"

    def __init__(self, channel_id, name, queue_size, server_queue_size, on_connect=None):
        super().__init__(channel_id, name, queue_size, on_connect)
        self.request = (f"record[queueSize={int(server_queue_size)}]field()"
                        if server_queue_size and server_queue_size > 0 else "field()")
        self._sub = None
        self._context = None

    def start(self, context) -> None:
        self._context = context
        self._sub = context.monitor(self.name, self._on_update, request=self.request,
                                    notify_disconnect=True)

    def reopen(self) -> None:
        """Open the channel afresh (dropped from the context's cache, so it
        is searched for at once): :class:`~pvagpu.pva.channel_search.ChannelSearch`
        does it while the channel delivers nothing."""
        context = self._context
        if context is None:
            return
        sub, self._sub = self._sub, None
        if sub is not None:
            sub.close()
        context.disconnect(self.name)
        if self._context is context:
            self.start(context)

    def _on_update(self, value) -> None:
        if isinstance(value, Value):
            if not self.connected:
                self._set_connected(True)
            self._deliver(value)
            return
        if isinstance(value, (Disconnected, Finished)):
            self._set_connected(False)
        elif isinstance(value, Cancelled):
            pass
        else:   # RemoteError or another exception reported for the subscription
            self._reject(f"{type(value).__name__}: {value}")

    def stop(self) -> None:
        self._context = None
        sub, self._sub = self._sub, None
        if sub is not None:
            sub.close()
        self.connected = False


class CaSubscription(MetadataSubscription):
    protocol = "ca"

    def __init__(self, channel_id, name, queue_size, on_connect=None):
        super().__init__(channel_id, name, queue_size, on_connect)
        # fails at configuration time without pyepics
        self._monitor = CaMonitor(name, on_value=self._on_update, on_error=self._reject,
                                  on_connection=self._set_connected,
                                  needs="ca:// metadata channels need")

    def start(self, context=None) -> None:
        self._monitor.open()

    def _on_update(self, value) -> None:
        if not self.connected:
            self._set_connected(True)
        self._deliver(value)

    def stop(self) -> None:
        self._monitor.close()
        self.connected = False
