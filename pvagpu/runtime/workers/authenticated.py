"""Missed frames from the ids a decryptor authenticated, with workers.

Without workers, a processor with ``AUTHENTICATED_OBJECT_IDS`` (the
decryptors) has its missed frames counted from the ids it authenticated,
one frame after the other (:meth:`pvagpu.runtime.frames.FrameRunner.account_ids`):
a junk object with a far-off clear uniqueId then makes no frames look
missed. With workers, frames finish out of order, and the id tracker
(:class:`pvagpu.stats.IdTracker`) needs them in order. :class:`DispatchOrder`
puts them back in the order they were dispatched (the order they arrived):
each dispatched frame is settled once, with the id its worker authenticated
or None (failed, lost with a worker, skipped, or refused for want of room),
and ids go to the receiver's ``account`` as soon as every earlier frame is
settled. The pool calls it with its lock held.
"""
from __future__ import annotations


class DispatchOrder:
    """Accounts authenticated ids in dispatch order (see the module docstring).
    ``intake``: the receiver (:class:`~pvagpu.pva.frame_intake.FrameIntake`,
    with ``track_ids`` off)."""

    def __init__(self, intake):
        self.intake = intake
        self._next = 1          # the first dispatch number not yet accounted
        self._settled = {}      # dispatch number -> authenticated id or None

    def settle(self, seq: int, oid=None) -> None:
        """Frame ``seq`` is over, with the authenticated id ``oid`` (None: none)."""
        self._settled[seq] = oid
        while self._next in self._settled:
            self.intake.account(self._settled.pop(self._next))
            self._next += 1
