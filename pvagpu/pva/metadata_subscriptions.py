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
    processors read CA and PVA metadata the same way. CA element types map
    to p4p codes: DOUBLE 'd', FLOAT 'f', LONG 'i', SHORT 'h', CHAR 'B', ENUM
    'H' (the index), STRING 's'; arrays get the 'a' prefix. ``alarm.status``
    holds the CA alarm condition number. CA has no server-side queue, so
    ``server_queue_size`` does not apply. Without pyepics, constructing a
    CA subscription raises :class:`~pvagpu.errors.ConfigurationError`.

What the counters of :meth:`MetadataSubscription.stats` count is
described in :mod:`pvagpu.pva.metadata` ("Queues and counters").
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

import numpy as np
from p4p import Type, Value
from p4p.client.thread import Cancelled, Disconnected, Finished

from ..errors import ConfigurationError
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


#: CA DBR element type (pyepics' type name without time_/ctrl_) -> p4p code
_CA_CODES = {"double": "d", "float": "f", "long": "i", "int": "h", "short": "h",
             "char": "B", "enum": "H", "string": "s"}


def _import_pyepics():
    try:
        import epics  # noqa: PLC0415 - optional dependency, imported on first use
    except ImportError as exc:
        raise ConfigurationError(
            "ca:// metadata channels need pyepics: pip install pyepics "
            f"(or pip install 'pvagpu[ca]'); importing it failed: {exc}") from None
    return epics


class CaSubscription(MetadataSubscription):
    protocol = "ca"

    def __init__(self, channel_id, name, queue_size, on_connect=None):
        super().__init__(channel_id, name, queue_size, on_connect)
        self._epics = _import_pyepics()      # fail at configuration time
        self._pv = None
        self._types: dict[str, Type] = {}

    def start(self, context=None) -> None:
        self._pv = self._epics.PV(self.name, form="time", auto_monitor=True,
                                  callback=self._on_update,
                                  connection_callback=self._on_connection)

    def _on_connection(self, pvname=None, conn=False, **_kw) -> None:
        self._set_connected(bool(conn))

    def _type_for(self, code: str) -> Type:
        typ = self._types.get(code)
        if typ is None:
            from p4p.nt import NTScalar
            typ = self._types[code] = NTScalar.buildType(code)
        return typ

    def _to_value(self, kw: dict) -> Value:
        ca_type = str(kw.get("type") or "")
        base = ca_type.split("_", 1)[1] if "_" in ca_type else ca_type
        code = _CA_CODES.get(base)
        if code is None:
            raise ValueError(f"unsupported CA type {ca_type!r}")
        value = kw.get("value")
        if isinstance(value, (np.ndarray, list, tuple)):
            code = "a" + code
            if code != "as":
                value = np.asarray(value)
        if "posixseconds" in kw and "nanoseconds" in kw:
            seconds, nanos = int(kw["posixseconds"]), int(kw["nanoseconds"])
        else:
            stamp = float(kw.get("timestamp") or 0.0)
            seconds = int(stamp)
            nanos = int(round((stamp - seconds) * 1e9))
        return Value(self._type_for(code), {
            "value": value,
            "alarm": {"severity": int(kw.get("severity") or 0), "status": int(kw.get("status") or 0)},
            "timeStamp": {"secondsPastEpoch": seconds, "nanoseconds": nanos},
        })

    def _on_update(self, **kw) -> None:
        if not self.connected:
            self._set_connected(True)
        try:
            value = self._to_value(kw)
        except Exception as exc:  # noqa: BLE001 - counted, stream goes on
            self._reject(f"cannot convert CA update: {exc}")
            return
        self._deliver(value)

    def stop(self) -> None:
        pv, self._pv = self._pv, None
        self.connected = False
        if pv is None:
            return
        chid = pv.chid
        try:
            pv.clear_callbacks()
            pv.disconnect()
            if chid is not None:
                self._epics.ca.clear_channel(chid)
        except Exception as exc:  # noqa: BLE001 - closing must not raise
            log.debug("metadata channel %s: error while closing: %s", self.spec, exc)
