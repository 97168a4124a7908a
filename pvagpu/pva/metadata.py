"""Metadata channels: side channels whose updates a processor pairs with frames.

``--metadata-channels pva://A,ca://B,C`` subscribes to each channel and fills
``processor.metadataQueueMap``: channel name (protocol prefix stripped) ->
a bounded :class:`MetadataQueue` of that channel's updates, in arrival order.
A processor pulls them as it would from pvapy's queues::

    try:
        value = self.metadataQueueMap['A'].get(timeout=0.1)
    except queue.Empty:            # pvagpu.pva.metadata.QueueEmpty is the same class
        ...
    t = value['timeStamp.secondsPastEpoch'] + 1e-9 * value['timeStamp.nanoseconds']
    x = value['value']

Protocols
---------
``pva://NAME``
    A p4p monitor (one shared ``Context('pva', nt=False)``) with request
    ``field()``, or ``record[queueSize=N]field()`` when ``server_queue_size`` > 0.
    Each queued item is the p4p ``Value`` of one update, exactly as received.
``ca://NAME`` or a bare ``NAME`` (Channel Access, as in pvapy)
    A Channel Access monitor (DBR_TIME, value + alarm changes) through
    `pyepics <https://pypi.org/project/pyepics/>`_, an optional dependency
    (``pip install pyepics`` or ``pip install 'pvagpu[ca]'``; its wheel ships
    libca, no EPICS installation needed). Each update is queued as an
    NTScalar / NTScalarArray ``Value`` (``value``, ``alarm``, ``timeStamp``) so
    processors read CA and PVA metadata the same way. CA element types map to
    p4p codes: DOUBLE 'd', FLOAT 'f', LONG 'i', SHORT 'h', CHAR 'B', ENUM 'H'
    (the index), STRING 's'; arrays get the 'a' prefix. ``alarm.status`` holds
    the CA alarm condition number. CA has no server-side queue, so
    ``server_queue_size`` does not apply. Without pyepics, constructing a CA
    channel raises :class:`~pvagpu.errors.ConfigurationError`.

Queues and counters
-------------------
Every queue is bounded (``queue_size``, default 1000; 0 or less also means the
default, because memory never grows without bound here). The monitor callback
never blocks: an update that finds its queue full is dropped and counted,
both as a queue rejection (``queueStats.nRejected``, what pvapy's queue counts)
and as a receiver overrun (``receiverStats.nOverruns``, pvagpu's name for a
frame lost to a full queue). ``receiverStats.nRejected`` counts updates the
receiver could not turn into a queued value (a CA value of an unknown type,
an error reported by the server for the subscription). Rates divide by the
receiving time given to :meth:`MetadataChannels.stats`, or else by the time
since :meth:`~MetadataChannels.start` / :meth:`~MetadataChannels.reset_stats`.
"""
from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import deque
from typing import Any, Optional

import numpy as np
from p4p import Type, Value
from p4p.client.thread import Cancelled, Context, Disconnected, Finished

from ..errors import ConfigurationError

__all__ = [
    "DEFAULT_QUEUE_SIZE", "QueueEmpty", "MetadataQueue", "MetadataChannels",
    "parse_spec", "parse_specs", "status_type_spec",
]

log = logging.getLogger(__name__)

#: Queue size used when none (or a size <= 0) is given, as pvapy's default.
DEFAULT_QUEUE_SIZE = 1000

#: What :meth:`MetadataQueue.get` raises when nothing arrives in time. It is
#: :class:`queue.Empty`, so ``except queue.Empty`` works too.
QueueEmpty = queue.Empty

PROTOCOLS = ("pva", "ca")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
_BAD_NAME_CHARS = re.compile(r"[\s,\"'\\]")

_UINT32_MAX = 2**32 - 1


# --------------------------------------------------------------------------
# Channel specifications
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# The bounded queue a processor reads
# --------------------------------------------------------------------------

class MetadataQueue:
    """A bounded FIFO of metadata updates; puts never block.

    The reading side mirrors pvapy's ``PvObjectQueue``: ``get()`` with no
    timeout returns at once, ``get(timeout)`` waits up to ``timeout`` seconds
    (``None``: forever), and both raise :data:`QueueEmpty` (``queue.Empty``)
    when nothing is there. ``maxLength`` can be changed at run time; items
    already queued beyond a smaller limit stay until read.
    """

    def __init__(self, maxsize: int = DEFAULT_QUEUE_SIZE):
        self._items: deque = deque()
        self._cond = threading.Condition(threading.Lock())
        self._maxsize = _queue_size(maxsize)
        self._n_received = self._n_rejected = self._n_delivered = 0

    @property
    def maxLength(self) -> int:  # noqa: N802 - pvapy's name
        return self._maxsize

    @maxLength.setter
    def maxLength(self, size: int) -> None:  # noqa: N802
        with self._cond:
            self._maxsize = _queue_size(size)

    def put(self, item: Any) -> bool:
        """Append ``item``; ``False`` (and counted as rejected) when full."""
        with self._cond:
            if len(self._items) >= self._maxsize:
                self._n_rejected += 1
                return False
            self._items.append(item)
            self._n_received += 1
            self._cond.notify()
            return True

    def get(self, timeout: Optional[float] = 0.0) -> Any:
        """Oldest item. ``timeout``: 0 (default) no wait, ``None`` wait
        forever, > 0 wait that many seconds. Raises :data:`QueueEmpty`."""
        with self._cond:
            if not self._items:
                if timeout is None:
                    self._cond.wait_for(lambda: self._items)
                elif timeout > 0:
                    self._cond.wait_for(lambda: self._items, timeout)
                if not self._items:
                    raise QueueEmpty
            self._n_delivered += 1
            return self._items.popleft()

    def get_nowait(self) -> Any:
        return self.get(0.0)

    def clear(self) -> int:
        """Drop everything queued; returns how many items were dropped."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            return n

    def __len__(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def stats(self) -> dict:
        """pvapy's queue counters: nReceived (accepted), nRejected (dropped
        because full), nDelivered (returned by get), nQueued (waiting now)."""
        with self._cond:
            return {"nReceived": self._n_received, "nRejected": self._n_rejected,
                    "nDelivered": self._n_delivered, "nQueued": len(self._items)}

    getCounters = stats  # noqa: N815 - pvapy's name

    def reset_stats(self) -> None:
        with self._cond:
            self._n_received = self._n_rejected = self._n_delivered = 0

    resetCounters = reset_stats  # noqa: N815 - pvapy's name


def _queue_size(size) -> int:
    try:
        size = int(size)
    except (TypeError, ValueError):
        raise ConfigurationError(f"metadata queue size must be an integer, not {size!r}") from None
    return size if size > 0 else DEFAULT_QUEUE_SIZE


# --------------------------------------------------------------------------
# Status channel types
# --------------------------------------------------------------------------

_RECEIVER_FIELDS = (("nReceived", "I"), ("receivedRate", "d"), ("nRejected", "I"),
                    ("rejectedRate", "d"), ("nOverruns", "I"), ("overrunRate", "d"))
_QUEUE_FIELDS = (("nReceived", "I"), ("nRejected", "I"), ("nDelivered", "I"), ("nQueued", "I"))


def status_type_spec() -> tuple:
    """p4p type spec of one ``metadataStats_<n>`` status sub-structure
    (INTEROP 3.6): producerId u32, channel string, receiverStats, queueStats."""
    return ("S", None, [
        ("producerId", "I"),
        ("channel", "s"),
        ("receiverStats", ("S", None, list(_RECEIVER_FIELDS))),
        ("queueStats", ("S", None, list(_QUEUE_FIELDS))),
    ])


def _u32(n) -> int:
    return min(max(int(n), 0), _UINT32_MAX)


# --------------------------------------------------------------------------
# Channels
# --------------------------------------------------------------------------

class _Channel:
    """One subscription feeding one queue, with its receiver counters."""

    protocol = ""

    def __init__(self, channel_id: int, name: str, queue_size: int):
        self.channel_id = channel_id
        self.name = name
        self.queue = MetadataQueue(queue_size)
        self.connected = False
        self.last_error: Optional[str] = None
        self._lock = threading.Lock()
        self._n_received = self._n_rejected = self._n_overruns = 0
        self._t0 = time.monotonic()
        self._on_connect = None

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


class _PvaChannel(_Channel):
    protocol = "pva"

    def __init__(self, channel_id, name, queue_size, server_queue_size):
        super().__init__(channel_id, name, queue_size)
        self.request = (f"record[queueSize={int(server_queue_size)}]field()"
                        if server_queue_size and server_queue_size > 0 else "field()")
        self._sub = None

    def start(self, context) -> None:
        self._sub = context.monitor(self.name, self._on_update, request=self.request,
                                    notify_disconnect=True)

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


class _CaChannel(_Channel):
    protocol = "ca"

    def __init__(self, channel_id, name, queue_size):
        super().__init__(channel_id, name, queue_size)
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


class MetadataChannels:
    """The metadata channels of one consumer.

    ``specs`` are channel specifications (``pva://NAME``, ``ca://NAME``,
    bare ``NAME`` = CA; see :func:`parse_specs`); a single comma-separated
    string is accepted too. Channel ids are 1..n in list order. Construction
    validates everything (a :class:`ConfigurationError` for a bad spec, a
    duplicate name, or ca:// without pyepics); :meth:`start` subscribes,
    :meth:`stop` closes every subscription (queues keep what they hold).
    Usable as a context manager.
    """

    def __init__(self, specs, queue_size: int = DEFAULT_QUEUE_SIZE, server_queue_size: int = 0):
        normalized = parse_specs(specs) if isinstance(specs, str) else _normalize(specs or [])
        self.queue_size = _queue_size(queue_size)
        self.server_queue_size = int(server_queue_size or 0)
        self._channels: list[_Channel] = []
        for channel_id, spec in enumerate(normalized, start=1):
            protocol, name = parse_spec(spec)
            if protocol == "pva":
                channel = _PvaChannel(channel_id, name, self.queue_size, self.server_queue_size)
            else:
                channel = _CaChannel(channel_id, name, self.queue_size)
            self._channels.append(channel)
        #: channel name (prefix stripped) -> MetadataQueue; give this to the
        #: processor as ``metadataQueueMap``.
        self.queue_map: dict[str, MetadataQueue] = {c.name: c.queue for c in self._channels}
        self._context = None
        self._started = False
        self._connect_cond = threading.Condition()
        for channel in self._channels:
            channel._on_connect = self._notify_connect

    # ------------------------------------------------------------------ life
    def start(self) -> "MetadataChannels":
        """Subscribe to every channel (no-op when already started)."""
        if self._started:
            return self
        if any(c.protocol == "pva" for c in self._channels):
            self._context = Context("pva", nt=False)
        try:
            for channel in self._channels:
                channel.reset_stats()
                channel.start(self._context)
        except BaseException:
            self.stop()
            raise
        self._started = True
        log.info("metadata channels started: %s", ", ".join(self.specs) or "none")
        return self

    def stop(self) -> None:
        """Close every subscription and the client context; idempotent."""
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
        self.queue_size = _queue_size(size)
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

    def status_types(self) -> list[tuple]:
        """``[('metadataStats_<n>', spec), ...]``: fields to add to the status
        channel's p4p ``Type`` (see :func:`status_type_spec`)."""
        spec = status_type_spec()
        return [(f"metadataStats_{c.channel_id}", spec) for c in self._channels]

    def status_values(self, receiving_time: Optional[float] = None) -> dict:
        """``{'metadataStats_<n>': {...}}`` with the current figures, ready to
        assign into a status ``Value`` built with :meth:`status_types` (u32
        counters clamped to their range)."""
        out = {}
        for c in self._channels:
            s = c.stats(receiving_time)
            out[f"metadataStats_{c.channel_id}"] = {
                "producerId": c.channel_id,
                "channel": s["channel"],
                "receiverStats": {k: (_u32(s["receiverStats"][k]) if code == "I"
                                      else float(s["receiverStats"][k]))
                                  for k, code in _RECEIVER_FIELDS},
                "queueStats": {k: _u32(s["queueStats"][k]) for k, _ in _QUEUE_FIELDS},
            }
        return out

    def __repr__(self) -> str:
        return f"MetadataChannels({self.specs!r}, queue_size={self.queue_size})"

