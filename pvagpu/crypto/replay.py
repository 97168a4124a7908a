"""The replay rules: what a receiver remembers of the envelopes it accepted.

A :class:`ReplayGuard` belongs to one receiver key. The decryptor owns it
and hands it to every :class:`~pvagpu.crypto.opener.EnvelopeOpener` it
makes, so a reconfigured decryptor (new verify key, maxKeyAge, channel)
still rejects what it accepted before; a new receiver key gets a new guard.

Rules: the guard keeps the newest key epoch accepted (ordered by the epoch
start time inside the wrapped key record, then key id) and the last
accepted frame counter of each epoch it still knows. A frame is accepted
only if its counter is strictly greater than the last accepted one of its
epoch; frames of an epoch older than the newest accepted epoch are rejected
(StaleKey). A restarted encryptor starts a new epoch (new key id, counter
from 1), which is accepted because it is newer. An epoch dated more than
:data:`~pvagpu.crypto.envelope.MAX_CLOCK_SKEW` in the future is rejected,
and with ``max_key_age`` > 0 so are epochs started longer ago than that (by
the sender's clock), which bounds what can be replayed to a decryptor that
restarted and lost its guard.

Nothing is remembered from an envelope until :meth:`ReplayGuard.accept`,
which the opener calls only once every check passed.
"""
from __future__ import annotations

import time
from collections import OrderedDict

from .envelope import MAX_CLOCK_SKEW
from .errors import EnvelopeRejected


class ReplayGuard:
    """The key epochs accepted under receiver key ``receiver`` (its
    fingerprint): for each, the unwrapped key (RSA is paid once per epoch)
    and the last accepted counter; and the newest epoch. The most recent
    :attr:`KEY_CACHE_SIZE` epochs are kept."""

    KEY_CACHE_SIZE = 8

    def __init__(self, receiver: str):
        self.receiver = receiver
        self._keys = OrderedDict()      # (key id, wrapped key) -> (AESGCM, epoch start ns)
        self._last = OrderedDict()      # key id -> last accepted counter
        self._newest = None             # (epoch start ns, key id) of the newest accepted epoch

    def unwrapped_key(self, key_id: bytes, wrapped_key: bytes):
        """``(AESGCM, epoch start ns)`` of an accepted epoch, or None."""
        return self._keys.get((key_id, wrapped_key))

    def check(self, key_id: bytes, counter: int, created: int, max_key_age: float = 0.0) -> None:
        """Raises EnvelopeRejected (StaleKey, Replay) if frame ``counter`` of
        the epoch ``key_id`` started at ``created`` (ns) is not fresh."""
        # an epoch dated in the future would become the newest one and lock
        # out every real epoch (StaleKey) until the decryptor restarts
        ahead = created - time.time_ns()
        if ahead > MAX_CLOCK_SKEW * 1e9:
            raise EnvelopeRejected("StaleKey", f"key epoch starts {ahead / 1e9:.0f} s in the "
                                   f"future (more than {MAX_CLOCK_SKEW:g} s of clock skew)")
        if max_key_age > 0 and time.time_ns() - created > max_key_age * 1e9:
            raise EnvelopeRejected("StaleKey", f"key epoch started "
                                   f"{(time.time_ns() - created) / 1e9:.0f} s ago "
                                   f"(maxKeyAge {max_key_age:g} s)")
        epoch = (created, key_id)
        if self._newest is not None and epoch < self._newest:
            raise EnvelopeRejected("StaleKey", "key epoch older than the newest accepted one")
        last = self._last.get(key_id)
        if last is not None and counter <= last:
            raise EnvelopeRejected("Replay", f"frame counter {counter} not above "
                                   f"{last}, the last accepted of key epoch "
                                   f"{key_id.hex()[:8]}")

    def accept(self, key_id: bytes, wrapped_key: bytes, counter: int, aead, created: int) -> None:
        """Remember frame ``counter`` of an epoch as accepted."""
        cache_key = (key_id, wrapped_key)
        self._keys[cache_key] = (aead, created)
        self._keys.move_to_end(cache_key)
        while len(self._keys) > self.KEY_CACHE_SIZE:
            self._keys.popitem(last=False)
        self._last[key_id] = counter
        self._last.move_to_end(key_id)
        while len(self._last) > self.KEY_CACHE_SIZE:
            self._last.popitem(last=False)
        epoch = (created, key_id)
        if self._newest is None or epoch > self._newest:
            self._newest = epoch
