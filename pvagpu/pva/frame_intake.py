"""What the receiver does with each update: count it, account missed
frames by object id, and hand ``(objectId, value)`` to ``deliver``.

:class:`FrameIntake` is the per-update part of the
:class:`~pvagpu.pva.receiver.Receiver` (and of the served input,
:class:`~pvagpu.pva.input_record.InputRecord`): it knows nothing of
subscriptions. ``deliver`` is the consumer's delivery strategy
(pvagpu.runtime.delivery): it processes the frame right there or queues it,
and returns False when it had no room (the update is dropped and counted as
an overrun). It never blocks.

The first ``skip`` updates (the connect-time snapshot) are handed on as
``(SKIPPED, value)``: not processed, but the consumer may create its output
channel from them, as pvapy does. Missed-frame accounting starts at the
first processed object, as pvapy's does.

Authenticated object ids: for a processor whose clear object id is not to
be trusted before it accepted the object (the decryptor's
``AUTHENTICATED_OBJECT_IDS``), the consumer sets :attr:`FrameIntake.track_ids`
False: nothing is accounted on receipt, and the frame runner calls
:meth:`FrameIntake.account` with the processor's ``lastAuthenticatedId``
after each successful ``process()``. A junk object with a far-off clear id
then makes no frames look missed. The clear ids of frames dropped as
overruns are remembered (the last :data:`DROPPED_IDS_KEPT`), so that a
frame dropped from a full queue is counted once, as an overrun, and not
again as missed. A frame the processor rejects (a tampered or replayed
envelope) is counted as an error, and its id, never accepted, as missed:
the real frame did not arrive intact.
"""
from __future__ import annotations

import logging
from collections import deque

from ..stats import IdTracker, ReceiverCounters

#: Marker in the object id position of a skipped update.
SKIPPED = object()

#: overrun (dropped) clear ids remembered with authenticated ids
DROPPED_IDS_KEPT = 4096

log = logging.getLogger(__name__)


class FrameIntake:
    """Counts updates of ``channel`` and hands them to ``deliver(objectId, value)``.

    objectId is None when the value lacks ``oid_field`` (missed-frame
    accounting is then off), :data:`SKIPPED` for skipped initial updates.
    ``deliver`` returns False when it has no room for the update (counted
    as an overrun); it must not raise (an exception is counted as a
    receiver error and the update is lost).
    ``oid_offset``/``sequential_updates``: the missed-frame pattern
    (:class:`~pvagpu.stats.IdTracker`)."""

    def __init__(self, channel: str, *, oid_field: str = "uniqueId", oid_offset: int = 1,
                 skip_initial_updates: int = 1, deliver=None, sequential_updates: int = 1):
        self.channel = channel
        self.oid_field = oid_field
        self.skip = max(0, int(skip_initial_updates))
        self.deliver = deliver
        self.counters = ReceiverCounters()
        self.ids = IdTracker(oid_offset, sequential_updates)
        #: account missed frames on receipt (False: :meth:`account` does, after processing)
        self.track_ids = True
        self.connected = False
        self._resync = False
        self._last_seen = None      # the object id of the last update, skipped ones included
        self._warned_no_oid = False
        self._dropped = deque(maxlen=DROPPED_IDS_KEPT)

    def reset_stats(self) -> None:
        self.counters.reset()
        self.ids.restart()
        self._dropped.clear()

    def oid_of(self, value):
        """The object id of ``value``; None without the field."""
        try:
            return value[self.oid_field]
        except (KeyError, ValueError):
            return None

    # -- each update (the PVA thread) ------------------------------------------------

    def _on_value(self, value) -> None:
        c = self.counters
        c.n_received += 1
        if not self.connected:
            self.connected = True
            c.n_connects += 1
        resync, self._resync = self._resync, False
        if self.skip > 0:
            self.skip -= 1
            c.n_skipped += 1
            self._last_seen = self.oid_of(value)
            oid = SKIPPED
        else:
            try:
                oid = value[self.oid_field]
            except (KeyError, ValueError):
                oid = self._no_oid()
            seen, self._last_seen = self._last_seen, oid
            if resync and oid is not None and oid == seen:
                c.n_repeated += 1  # the reconnect snapshot of an update we have had
                return
            if oid is not None and self.track_ids:
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
            if not self.track_ids and oid is not None and oid is not SKIPPED:
                self._dropped.append(oid)

    def _no_oid(self):
        if not self._warned_no_oid:
            self._warned_no_oid = True
            log.warning("%s: updates have no field %r; missed-frame accounting is off",
                        self.channel, self.oid_field)
        return None

    # -- authenticated ids (the processing thread) -------------------------------------

    def account(self, oid) -> None:
        """Account missed frames up to ``oid``, an id the processor has
        authenticated (with :attr:`track_ids` False); the frames dropped as
        overruns in the gap are not counted again. None (nothing
        authenticated) and the id accounted last are not accounted again."""
        ids = self.ids
        last = ids.last_id
        if oid is None or oid == last:
            return
        missed = ids.update(oid)
        if missed and self._dropped:
            dropped = [d for d in self._dropped if last < d < oid]
            if dropped:
                missed = max(0, missed - _in_pattern(ids, dropped, last))
            keep = [d for d in self._dropped if d > oid]
            self._dropped.clear()
            self._dropped.extend(keep)
        self.counters.n_missed += missed


def _in_pattern(ids: IdTracker, candidates, last) -> int:
    """How many of ``candidates`` (distinct ids between ``last`` and the
    new id) are ids this consumer expects (the tracker's offset pattern)."""
    candidates = set(candidates)
    if ids.sequential == 1:
        return sum(1 for d in candidates if (d - last) % ids.offset == 0)
    period = ids.offset - 1 + ids.sequential
    return sum(1 for d in candidates if (d - ids.first_id) % period < ids.sequential)
