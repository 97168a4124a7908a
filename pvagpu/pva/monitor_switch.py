"""Moving a running subscription to a larger monitor queue without losing
or repeating a frame.

When the consumer starts before its server has a frame, the monitor queue
is sized for an assumed frame size (:mod:`pvagpu.pva.monitor_queue`); when
the first real frame shows that the budget holds materially more frames
(:func:`worth_resizing`), the receiver opens a second subscription of the
channel with the larger queue, while the first one goes on delivering, and
:class:`MonitorSwitch` merges the two by object id:

- the old subscription's frames are delivered as before;
- the new one's are held back (in order) until it delivers an id that the
  old one has delivered already: the two streams then overlap, the old one
  is retired (closed), and every frame above the last delivered id comes
  from the new subscription (whose queue holds all that the server sent it
  since its connect snapshot);
- ids at or below the last delivered one are duplicates and are dropped
  without being counted anywhere (:attr:`MonitorSwitch.n_duplicates` says
  how many); an id more than ``limit`` below it is not a duplicate but a
  source that restarted its ids, and is delivered.

So each frame is delivered (and counted, and processed) exactly once. If
the old subscription falls behind by more than ``limit`` held frames, the
switch happens then; what the old one had not delivered up to the first
held frame is then missing from the stream and counted as missed by the
id gap, as any other loss. Both subscriptions run on the one context, whose
callbacks come on one thread, so the merge needs no lock.
"""
from __future__ import annotations

import logging

from p4p.client.raw import Disconnected

from . import monitor_queue
from .monitor_request import monitor_request
from .subscription import Monitor, later

log = logging.getLogger(__name__)

#: the new queue must hold at least this many times the frames of the old
RESIZE_FACTOR = 2
#: updates without a frame size after which the queue stays as it is
SIZE_TRIES = 16


def worth_resizing(current: int, proposed: int) -> bool:
    """Whether a queue of ``proposed`` frames is materially larger than ``current``."""
    return proposed >= RESIZE_FACTOR * max(1, current)


class MonitorSwitch:
    """Merges the old and the new subscription's values (see the module
    docstring). ``deliver(value)``: the receiver's per-update step;
    ``oid_of(value)``: the object id (None without one); ``on_retired()``:
    called once when the old subscription's values are no longer needed
    (close it from another thread); ``on_through()``: called once when the
    new one has delivered its first frame after the last delivered one
    (from then on its values need no merging). Both on the callback thread."""

    def __init__(self, deliver, oid_of, on_retired, on_through, limit: int):
        self.deliver = deliver
        self.oid_of = oid_of
        self.on_retired = on_retired
        self.on_through = on_through
        self.limit = max(1, int(limit))
        self.retired = False        # the old subscription's values are ignored
        self.through = False        # the new one has passed the last delivered id
        self.last = None            # the last id delivered
        self.held = []              # the new subscription's values, held back
        self.n_duplicates = 0
        self.n_from_old = 0

    def from_old(self, value) -> None:
        if self.retired:
            self.n_duplicates += 1    # the new one has delivered or will deliver it
            return
        self.deliver(value)
        self.n_from_old += 1
        oid = self.oid_of(value)
        if oid is not None:
            self.last = oid
        if self.held and self.last is not None and self.oid_of(self.held[0]) <= self.last:
            self._retire_old()

    def from_new(self, value) -> None:
        oid = self.oid_of(value)
        if self.retired:
            self._take(value, oid)
            return
        self.held.append(value)
        if (oid is None or len(self.held) > self.limit
                or (self.last is not None and oid <= self.last)):
            self._retire_old()

    def _retire_old(self) -> None:
        self.retired = True
        held, self.held = self.held, []
        self.on_retired()
        for value in held:
            self._take(value, self.oid_of(value))

    def _take(self, value, oid) -> None:
        """A value of the new subscription once the old one is retired: a
        duplicate when at or just below the last delivered id (within
        ``limit``: further below, the source has restarted its ids)."""
        last = self.last
        if oid is not None and last is not None and last - self.limit < oid <= last:
            self.n_duplicates += 1
            return
        self.deliver(value)
        self.last = oid
        if not self.through:
            self.through = True
            self.on_through()


class QueueGrowth:
    """The :class:`~pvagpu.pva.receiver.Receiver`'s part that moves it to
    a larger queue (a mixin of it: it uses the receiver's lock, monitors
    ``_main``/``_next``, ``_subscribe(monitor, request)``, ``_on_value``
    and ``_note``). A monitor opened while ``_resize_pending`` has
    :meth:`_first_value` as its sink until a frame shows its size."""

    _size_tries = 0

    def _first_value(self, m: Monitor, value) -> None:
        """An update of ``m`` while the frame size is not known (the sizing
        GET found no frame): the first one that has a size decides the
        queue again (given up after :data:`SIZE_TRIES` updates without one)."""
        size = monitor_queue.frame_bytes(value)
        self._size_tries += 1
        if size > 0 or self._size_tries >= SIZE_TRIES:
            m.sink = self._on_value
            self._resize_pending = False
            proposed = monitor_queue.queue_size(size, self.queue_memory)
            if (size > 0 and worth_resizing(self.queue_size, proposed) and not self.distributing
                    and self.oid_of(value) is not None):
                later(self._grow, m, proposed, size, name=f"pvagpu-grow-{self.channel}")
        self._on_value(value)

    def _grow(self, main: Monitor, size: int, frame_size: int) -> None:
        """Open the subscription with the larger queue beside ``main``."""
        with self._lock:
            if self._stopped or main is not self._main or self._next is not None:
                return
            old_size = self._old_queue_size = self.queue_size
            switch = MonitorSwitch(self._on_value, self.oid_of,
                                   lambda: self._retired(main), lambda: self._through(old_size),
                                   limit=size)
            self._switch = switch
            self._next = self._subscribe(Monitor(switch.from_new),
                                         monitor_request(size, None, "", self.fields))
            main.sink = switch.from_old
            self.queue_size = size
        self._note(monitor_queue.describe(size, frame_size, self.queue_memory)
                   + f"; was {old_size} before the first frame")

    def _retired(self, old: Monitor) -> None:
        """On the PVA thread: the new monitor is the main one from now on."""
        if self._next is None or old is not self._main:
            return                        # closed meanwhile
        self._main, self._next = self._next, None
        later(old.close, name=f"pvagpu-close-{self.channel}")

    def _through(self, old_size: int) -> None:
        """On the PVA thread: the new monitor's values need no merging now."""
        switch, self._switch = self._switch, None
        if switch is None:
            return
        self._main.sink = self._on_value
        log.info("%s: moved from a queue of %d to %d frames (%d frames through the old one "
                 "meanwhile, %d duplicates dropped)", self.channel, old_size, self.queue_size,
                 switch.n_from_old, switch.n_duplicates)

    def _abandon_switch(self, event: Exception) -> None:
        """On the PVA thread: the larger queue's subscription failed; the
        old one goes on (and, after a disconnect, tries again at its first
        value after the reconnect)."""
        new, switch, main = self._next, self._switch, self._main
        self._next = self._switch = None
        if main is not None and switch is not None:
            self.queue_size = self._old_queue_size
            if isinstance(event, Disconnected):
                self._resize_pending, self._size_tries = True, 0
                main.sink = lambda value: self._first_value(main, value)
            else:
                main.sink = self._on_value
        log.warning("%s: moving to the larger monitor queue failed (%s)", self.channel, event)
        if new is not None:
            later(new.close, name=f"pvagpu-close-{self.channel}")
