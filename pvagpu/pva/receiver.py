"""Receiver: a p4p monitor on the input channel, drained on the PVA thread.

p4p's raw client calls the receiver's drain on the PVA client's network
thread whenever the subscription's FIFO (pvxs) goes from empty to
non-empty. The drain pops every update there is and hands each frame to
the :class:`~pvagpu.pva.frame_intake.FrameIntake` step, which counts it,
does the missed-frame accounting on the object id and hands
``(objectId, value)`` to ``deliver``, still on that thread and in order
(the delivery strategy, pvagpu.runtime.delivery). Nothing is copied:
``value`` is the p4p ``Value`` as received, whose arrays are NumPy views of
the received buffer.

The request (fields, ``record[queueSize=N]``, distributor options) is
built by :mod:`pvagpu.pva.monitor_request`. A server that refuses the
distributor request (it has no such plugin: pvagpu-sim-server, any pvxs
server) makes the receiver warn once and subscribe without it, with the
missed-frame offset back to 1: the consumer gets every frame.

Connection: p4p reconnects by itself when the server goes away and comes
back; the receiver counts disconnects and connects, drops the snapshot that
a reconnect delivers if it repeats the last frame already received, and
counts the frames that the source published meanwhile as missed (id gaps).
A subscription that the server finishes is opened again. While the channel
has delivered nothing since it was opened, it is opened afresh every
:data:`~pvagpu.pva.channel_search.SEARCH_PERIOD` s
(:mod:`pvagpu.pva.channel_search`), so a server that appears later is found
within about that time.

Monitor queue: ``server_queue_size`` > 0 asks for that many frames
(``record[queueSize=N]``, -sqs); 0 (the default) sizes it from the frame
size and ``queue_memory`` (:mod:`pvagpu.pva.monitor_queue`): a GET of the
size fields only comes first, then the subscription; ``on_note(text)`` is
called with the line that says what was chosen. ``queue_memory`` 0 leaves
the server's default (pvxs: 4). When that GET found no frame (the consumer
started before the server had one), the first real frame's size decides
again: if the budget holds materially more frames, the subscription moves
to the larger queue without losing or repeating a frame
(:mod:`pvagpu.pva.monitor_switch`).
"""
from __future__ import annotations

import logging
import threading

from p4p import Value
from p4p.client import raw
from p4p.client.raw import Disconnected, Finished, RemoteError

from . import monitor_queue
from ._p4p_compat import keep_thread_state
from .channel_search import SEARCH_PERIOD, ChannelSearch
from .frame_intake import SKIPPED, FrameIntake
from .monitor_request import (distributor_fallback_message, distributor_options,
                              monitor_request, parse_field_request)
from .monitor_switch import QueueGrowth
from .subscription import Monitor, later

__all__ = ["Receiver", "SKIPPED", "SEARCH_PERIOD", "distributor_options", "monitor_request",
           "parse_field_request"]

_RESUBSCRIBE_DELAY = 0.5

log = logging.getLogger(__name__)


class Receiver(QueueGrowth, FrameIntake):
    """Monitor ``channel``; hand each update to ``deliver(objectId, value)``
    (see :class:`~pvagpu.pva.frame_intake.FrameIntake`; :meth:`start` needs it).

    ``distributor``: the distributor plugin's options (group, set, trigger,
    updates; None values left out) for the plugin named
    ``distributor_plugin``. ``field_request``: the fields to ask the server
    for (pvapy's -fr, see :func:`parse_field_request`; ConfigurationError
    if malformed), ignored with a warning when distributor options are
    given. ``queue_memory``/``on_note``: the default monitor queue (module
    docstring);
    ``search_period``: see :mod:`pvagpu.pva.channel_search` (<= 0: pvxs'
    own back-off only)."""

    def __init__(self, channel: str, *, oid_field: str = "uniqueId", oid_offset: int = 1,
                 skip_initial_updates: int = 1, server_queue_size: int = 0, deliver=None,
                 distributor: dict | None = None, distributor_plugin: str = "pydistributor",
                 field_request: str | None = None, sequential_updates: int = 1,
                 queue_memory: int = monitor_queue.DEFAULT_QUEUE_MEMORY, on_note=None,
                 search_period: float = SEARCH_PERIOD):
        super().__init__(channel, oid_field=oid_field, oid_offset=oid_offset,
                         skip_initial_updates=skip_initial_updates, deliver=deliver,
                         sequential_updates=sequential_updates)
        self.distributor = dict(distributor or {})
        self.distributor_plugin = distributor_plugin
        #: True once the server refused the distributor request (then not asked again)
        self.distributor_refused = False
        #: the fields requested from the server; () for all of them
        self.fields = parse_field_request(field_request, oid_field)
        if self.fields and distributor_options(self.distributor):
            log.warning("%s: field request %r ignored: the distributor (%s) is used, and "
                        "pvapy ignores the field request then too", channel, field_request,
                        distributor_plugin)
            self.fields = ()
        self.server_queue_size = int(server_queue_size)
        self.queue_memory = int(queue_memory)
        self.on_note = on_note
        self.search_period = float(search_period)
        #: the queue size asked for (server_queue_size, or the one sized)
        self.queue_size = self.server_queue_size
        #: the frame size is still to be learnt from the first real frame
        self._resize_pending = False
        self._switch = None         # a MonitorSwitch while moving to a larger queue
        self._old_queue_size = 0
        self._context = None
        self._main = None           # the Monitor that delivers
        self._next = None           # the one with the larger queue, while switching
        self._probe = None
        self._generation = 0        # counts the opens
        self._lock = threading.Lock()
        self._search = None
        self._watch = None
        self._stopped = True

    # -- the request ----------------------------------------------------------

    @property
    def distributing(self) -> bool:
        """Distributor options are given and the server has not refused them."""
        return bool(distributor_options(self.distributor)) and not self.distributor_refused

    @property
    def request(self):
        """The pvRequest: the requested fields (all by default),
        ``record[queueSize=N]`` when a queue size is known (-sqs or sized);
        a Value when distributor options are given and not refused
        (:func:`monitor_request`)."""
        return monitor_request(self.queue_size, self.distributor if self.distributing else None,
                               self.distributor_plugin, self.fields)

    @property
    def sizing(self) -> bool:
        """True while the queue size is still to be chosen by a GET."""
        return self.queue_size <= 0 and self.queue_memory > 0

    # -- life cycle -------------------------------------------------------------

    def start(self) -> None:
        if self.deliver is None:
            raise ValueError(f"receiver of {self.channel}: nothing to deliver the frames to")
        with self._lock:
            if not self._stopped:
                return
            self._stopped = False
            # Values as received (not unwrapped); EPICS_PVA_* from the environment
            self._context = raw.Context("pva", nt=False, useenv=True)
            self._search = ChannelSearch(self.search_period, f"pvagpu-search-{self.channel}")
            self._watch = self._search.watch(lambda: not self.connected, self._search_again)
            self._open()

    def stop(self) -> None:
        """Close the subscription; nothing is delivered or queued after
        this returns."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._close_ops()
            self._context.close()
            self._context = None
            search, self._search = self._search, None
        search.stop()
        self.connected = False

    def _open(self) -> None:
        """Open the channel (lock held): the sizing GET first, if needed."""
        self._watch.opened()
        self._generation += 1
        if self.sizing:
            generation = self._generation
            self._probe = self._context.get(
                self.channel, lambda result: later(self._sized, generation, result,
                                                    name=f"pvagpu-sized-{self.channel}"),
                monitor_queue.PROBE_REQUEST)
        else:
            self._open_main()

    def _open_main(self) -> None:
        """Subscribe with :attr:`request` (lock held); the first value
        sizes the queue again when the sizing GET found no frame."""
        m = Monitor(self._on_value)
        if self._resize_pending:
            m.sink = lambda value: self._first_value(m, value)
        self._main = self._subscribe(m, self.request)

    def _subscribe(self, m: Monitor, request) -> Monitor:
        """Open ``m``'s subscription with ``request`` (lock held)."""
        return m.open(self._context, self.channel, self._drain, request)

    def _close_ops(self) -> None:
        """Close every operation (lock held)."""
        for m in (self._main, self._next):
            if m is not None:
                m.close()
        if self._probe is not None:
            self._probe.close()
        self._probe = self._main = self._next = self._switch = None

    def _sized(self, generation: int, result) -> None:
        """The sizing GET's result (a Value or an exception): subscribe."""
        with self._lock:
            if self._stopped or generation != self._generation or self._probe is None:
                return                  # stopped or opened afresh meanwhile
            self._probe = None
            size = monitor_queue.frame_bytes(result) if type(result) is Value else 0
            self.queue_size = monitor_queue.queue_size(size, self.queue_memory)
            self._resize_pending, self._size_tries = size <= 0, 0
            text = monitor_queue.describe(self.queue_size, size, self.queue_memory)
            self._open_main()
        self._note(text)

    def _note(self, text: str, level: int = logging.INFO) -> None:
        """Say ``text`` through ``on_note`` (logged at info then), else log it at ``level``."""
        if self.on_note is None:
            log.log(level, "%s: %s", self.channel, text)
            return
        log.info("%s: %s", self.channel, text)
        try:
            self.on_note(text)
        except Exception as exc:  # noqa: BLE001 - a display problem only
            log.warning("%s: on_note failed: %s", self.channel, exc)

    def _search_again(self) -> None:
        """The channel search's re-open of a channel still waiting: as a
        new channel, unless it connected meanwhile."""
        self._resubscribe(fresh=True, only_if_waiting=True)

    def _resubscribe(self, fresh: bool = False, only_if_waiting: bool = False) -> None:
        """Open the channel again; ``fresh``: as a new channel (dropped
        from pvxs' cache), which is searched for at once. The new
        subscription's snapshot of the last update seen is not delivered
        again (:class:`FrameIntake`)."""
        with self._lock:
            if self._stopped or (only_if_waiting and self.connected):
                return
            self._resync = True
            self._close_ops()
            if fresh:
                self._context.disconnect(self.channel)
            self._open()

    # -- the PVA thread ------------------------------------------------------------

    def _drain(self, m: Monitor) -> None:
        """``m``'s FIFO became non-empty: take everything it holds."""
        keep_thread_state()
        if m.pop is None and not m.ready.wait(5.0):
            return                        # never opened
        pop = m.pop
        while not self._stopped:
            update = pop()
            if update is None:
                return                    # empty: called again on the next update
            if type(update) is Value:
                m.sink(update)
            else:
                self._on_event(m, update)

    def _on_event(self, m: Monitor, event: Exception) -> None:
        if m is self._next:               # the larger queue's subscription failed
            self._abandon_switch(event)
            return
        if m is not self._main:
            return                        # a closed one's last word
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
            later(self._resubscribe, name="", delay=_RESUBSCRIBE_DELAY)
        elif isinstance(event, RemoteError) and self.distributing and not self.connected:
            later(self._fall_back, m, str(event), name=f"pvagpu-fallback-{self.channel}")
        else:
            self.counters.n_errors += 1
            log.warning("%s: monitor error: %s", self.channel, event)

    # -- no distributor plugin ---------------------------------------------------------

    def _fall_back(self, m: Monitor, error: str) -> None:
        """The server refused the distributor request: subscribe without
        it, every frame, missed-frame offset 1; said once."""
        with self._lock:
            if self._stopped or m is not self._main or self.distributor_refused:
                return
            self.distributor_refused = True
            self.ids.offset = self.ids.sequential = 1
            self._close_ops()
            self._open()
        self._note(distributor_fallback_message(self.channel, self.distributor_plugin, error),
                   logging.WARNING)
