"""Receiver: a p4p monitor on the input channel, drained on the PVA thread.

p4p's raw client calls :meth:`Receiver._drain` on the PVA client's network
thread whenever the subscription's FIFO (pvxs) goes from empty to
non-empty. ``_drain`` pops every update there is; for each frame it counts
it, does the missed-frame accounting on the object id and hands
``(objectId, value)`` to ``deliver``, still on that thread and in order.

``deliver`` is the consumer's delivery strategy (pvagpu.runtime.delivery):
it processes the frame right there (the default, as pvapy's -rqs -1: the
bound on memory is then the monitor queue, ``record[queueSize=N]`` (-sqs),
whose overflow shows as gaps in uniqueId, counted as missed) or puts it on
a bounded queue of its own. It returns False when it had no room for the
frame: the update is dropped and counted as an overrun. It never blocks.

Distributor: with ``distributor`` options (group, set, trigger, updates) the
monitor request asks a pvDatabase server's distributor plugin (pvapy's
``pydistributor``) to spread the updates between the clients of a group
(INTEROP 3.8). p4p's request-string parser rejects the ``_[...]`` syntax,
so that request is a hand-built pvRequest Value (see :func:`monitor_request`).

Field request: ``field_request`` (pvapy's -fr, e.g. ``"value,uniqueId"``)
asks the server for a subset of the fields; the object id field is always
added (:func:`parse_field_request`). A pvDatabase server (pvapy) then sends
a structure of just those fields, a pvxs server (p4p, NDPluginPvxs) the
whole structure with only those fields marked changed and filled in. As in
pvapy, the field request is ignored when distributor options are given.

Nothing is copied: ``value`` is the p4p ``Value`` as received, whose arrays
are NumPy views of the received buffer.

The first ``skip`` updates (the connect-time snapshot) are handed on as
``(SKIPPED, value)``: not processed, but the consumer may create its output
channel from them, as pvapy does.

Connection: p4p reconnects by itself when the server goes away and comes
back; the receiver counts disconnects and connects, drops the snapshot that
a reconnect delivers if it repeats the last frame already received, and
counts the frames that the source published meanwhile as missed (id gaps).
A subscription that the server finishes is opened again.
"""
from __future__ import annotations

import logging
import re
import threading

from p4p import Type, Value
from p4p.client import raw
from p4p.client.raw import Disconnected, Finished

from ..errors import ConfigurationError
from ..stats import IdTracker, ReceiverCounters
from ._p4p_compat import fast_pop, keep_thread_state

#: Marker in the object id position of a skipped update.
SKIPPED = object()

_RESUBSCRIBE_DELAY = 0.5

log = logging.getLogger(__name__)


def distributor_options(options: dict) -> str:
    """The distributor plugin's option string, ``key:value;...``, of the
    options that are not None, e.g. ``{"group": "g", "updates": 1}`` ->
    ``"group:g;updates:1"``."""
    return ";".join(f"{key}:{value}" for key, value in options.items() if value is not None)


#: one field of a field request: a name or a dotted path (codec.name)
_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*", re.ASCII)


def parse_field_request(text: str | None, oid_field: str | None = "uniqueId") -> tuple:
    """The fields that ``--field-request`` asks for, the object id field
    included; () for all fields (an empty request).

    Accepted, as pvapy's DataConsumer.getPvMonitorRequest reads it (it
    strips ``field(`` and ``)`` and puts the rest into ``field(...)``): a
    comma-separated list of field names or dotted paths, optionally written
    as ``field(...)``: ``"value,uniqueId"``, ``"field(value,codec.name)"``.
    ``oid_field`` is put first unless it (or a structure holding it) is
    listed, as pvapy prepends ``<oid>,``. Anything else (options in
    brackets, unbalanced parentheses, empty names) raises
    :class:`~pvagpu.errors.ConfigurationError`: the request goes to the
    server, so it is checked here rather than sent as written."""
    if text is None:
        return ()
    body = text.strip()
    if body.startswith("field(") and body.endswith(")"):
        body = body[len("field("):-1].strip()
    if not body:
        return ()
    fields = [item.strip() for item in body.split(",")]
    bad = [item for item in fields if not _FIELD_PATH.fullmatch(item)]
    if bad:
        raise ConfigurationError(
            f"field request {text!r}: {bad[0]!r} is not a field name; give a comma-separated "
            f"list of field names or dotted paths, e.g. 'value,uniqueId' or "
            f"'field(value,codec.name)'")
    fields = list(dict.fromkeys(fields))  # each field once, in the order given
    if oid_field and not any(oid_field == f or oid_field.startswith(f + ".") for f in fields):
        fields.insert(0, oid_field)
    return tuple(fields)


def monitor_request(server_queue_size: int = 0, distributor: dict | None = None,
                    plugin: str = "pydistributor", fields=()):
    """The monitor's pvRequest.

    Without distributor options a request string,
    ``record[queueSize=N]field(<fields>)`` (the record option when
    ``server_queue_size`` > 0; ``fields`` from :func:`parse_field_request`,
    none for all fields). With them a pvRequest Value, the structure that
    pvAccess's parser makes of ``record[queueSize=N]field(_[plugin=options])``::

        field.<_>._options.<plugin> = "group:G;updates:U"
        record._options.queueSize = "N"

    and ``fields`` is ignored, as pvapy ignores its field request then.
    p4p's raw client passes a Value through unchanged."""
    options = distributor_options(distributor or {})
    if not options:
        return (f"record[queueSize={server_queue_size}]" if server_queue_size > 0 else "") \
            + f"field({','.join(fields)})"
    fields = [("field", ("S", None, [("_", ("S", None, [
        ("_options", ("S", None, [(plugin, "s")]))]))]))]
    init = {"field": {"_": {"_options": {plugin: options}}}}
    if server_queue_size > 0:
        fields.append(("record", ("S", None, [("_options", ("S", None, [("queueSize", "s")]))])))
        init["record"] = {"_options": {"queueSize": str(server_queue_size)}}
    return Value(Type(fields), init)


class Receiver:
    """Monitor ``channel``; hand each update to ``deliver(objectId, value)``.

    objectId is None when the value lacks ``oid_field`` (missed-frame
    accounting is then off), :data:`SKIPPED` for skipped initial updates.
    ``deliver`` returns False when it has no room for the update (counted
    as an overrun); it must not raise (an exception is counted as a
    receiver error and the update is lost); :meth:`start` needs it.
    ``distributor``: the distributor plugin's options (group, set, trigger,
    updates; None values left out) for the plugin named
    ``distributor_plugin``.
    ``field_request``: the fields to ask the server for (pvapy's -fr, see
    :func:`parse_field_request`; ConfigurationError if malformed), ignored
    with a warning when distributor options are given.
    ``oid_offset``/``sequential_updates``: the missed-frame pattern
    (:class:`~pvagpu.stats.IdTracker`)."""

    def __init__(self, channel: str, *, oid_field: str = "uniqueId", oid_offset: int = 1,
                 skip_initial_updates: int = 1, server_queue_size: int = 0, deliver=None,
                 distributor: dict | None = None, distributor_plugin: str = "pydistributor",
                 field_request: str | None = None, sequential_updates: int = 1):
        self.channel = channel
        self.distributor = dict(distributor or {})
        self.distributor_plugin = distributor_plugin
        self.oid_field = oid_field
        #: the fields requested from the server; () for all of them
        self.fields = parse_field_request(field_request, oid_field)
        if self.fields and distributor_options(self.distributor):
            log.warning("%s: field request %r ignored: the distributor (%s) is used, and "
                        "pvapy ignores the field request then too", channel, field_request,
                        distributor_plugin)
            self.fields = ()
        self.skip = max(0, int(skip_initial_updates))
        self.server_queue_size = int(server_queue_size)
        self.deliver = deliver
        self.counters = ReceiverCounters()
        self.ids = IdTracker(oid_offset, sequential_updates)
        self.connected = False
        self._resync = False
        self._warned_no_oid = False
        self._context = None
        self._sub = None
        self._pop = None
        self._lock = threading.Lock()
        self._stopped = True

    # -- life cycle ---------------------------------------------------------

    @property
    def request(self):
        """The pvRequest: the requested fields (all by default),
        ``record[queueSize=N]`` when a server queue size is given (as
        pvapy's -sqs); a Value when distributor options are given
        (:func:`monitor_request`)."""
        return monitor_request(self.server_queue_size, self.distributor, self.distributor_plugin,
                               self.fields)

    def start(self) -> None:
        if self.deliver is None:
            raise ValueError(f"receiver of {self.channel}: nothing to deliver the frames to")
        with self._lock:
            if not self._stopped:
                return
            self._stopped = False
            # Values as received (not unwrapped); EPICS_PVA_* from the environment
            self._context = raw.Context("pva", nt=False, useenv=True)
            self._subscribe()

    def _subscribe(self) -> None:
        sub = self._context.monitor(self.channel, self._drain, self.request)
        self._pop = fast_pop(sub)
        self._sub = sub

    def _resubscribe(self) -> None:
        with self._lock:
            if self._stopped:
                return
            if self._sub is not None:
                self._sub.close()
            self._subscribe()

    def stop(self) -> None:
        """Close the subscription; nothing is delivered or queued after
        this returns."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if self._sub is not None:
                self._sub.close()
                self._sub = None
            self._context.close()
            self._context = None
        self.connected = False

    # -- statistics ------------------------------------------------------------

    def reset_stats(self) -> None:
        self.counters.reset()
        self.ids.restart()

    # -- the PVA thread ------------------------------------------------------------

    def _drain(self) -> None:
        """The FIFO became non-empty: take everything it holds."""
        keep_thread_state()
        pop = self._pop
        on_value = self._on_value
        while not self._stopped:
            update = pop()
            if update is None:
                return                    # empty: called again on the next update
            if type(update) is Value:
                on_value(update)
            else:
                self._on_event(update)

    def _on_value(self, value) -> None:
        c = self.counters
        c.n_received += 1
        if not self.connected:
            self.connected = True
            c.n_connects += 1
        if self.skip > 0:
            self.skip -= 1
            c.n_skipped += 1
            # missed-frame accounting starts at the first processed object,
            # as pvapy's does (it restarts there from the skipped ones)
            oid = SKIPPED
        else:
            try:
                oid = value[self.oid_field]
            except (KeyError, ValueError):
                oid = self._no_oid()
            if self._resync:
                self._resync = False
                if oid is not None and oid == self.ids.last_id:
                    c.n_repeated += 1  # the reconnect snapshot of a frame we have
                    return
            if oid is not None:
                c.n_missed += self.ids.update(oid)
        try:
            accepted = self.deliver(oid, value) is not False
        except Exception as exc:  # noqa: BLE001 - the stream must go on
            c.n_accepted += 1
            c.n_errors += 1
            log.error("%s: delivering update %s failed: %s: %s", self.channel, oid,
                      type(exc).__name__, exc)
            return
        if accepted:
            c.n_accepted += 1
        else:
            c.n_overruns += 1

    def _no_oid(self):
        if not self._warned_no_oid:
            self._warned_no_oid = True
            log.warning("%s: updates have no field %r; missed-frame accounting is off",
                        self.channel, self.oid_field)
        return None

    def _on_event(self, event: Exception) -> None:
        if isinstance(event, Disconnected):
            if self.connected:
                self.connected = False
                self.counters.n_disconnects += 1
                self._resync = True
                log.warning("%s: disconnected; waiting for the server to come back", self.channel)
        elif isinstance(event, Finished):
            if self.connected:
                self.connected = False
                self.counters.n_disconnects += 1
            self._resync = True
            log.warning("%s: the server closed the subscription; subscribing again", self.channel)
            timer = threading.Timer(_RESUBSCRIBE_DELAY, self._resubscribe)
            timer.daemon = True
            timer.start()
        else:
            self.counters.n_errors += 1
            log.warning("%s: monitor error: %s", self.channel, event)
