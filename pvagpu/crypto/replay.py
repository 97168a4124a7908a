"""The replay rules: what a receiver remembers of the envelopes it accepted.

A :class:`ReplayGuard` belongs to one receiver key. The decryptor keeps one
per receiver key it has used (a few, most recent first) and hands it to
every :class:`~pvagpu.crypto.opener.EnvelopeOpener` it makes, so a
reconfigured decryptor (new verify key, maxKeyAge, channel, or another
receiver key and back) still rejects what it accepted before.

A key epoch is named by its key id AND its wrapped key (a digest of it):
whoever holds the receiver's public key can copy a real epoch's key id,
but not its wrapped key with another AES key inside, so a forged epoch
never shares the state of a real one.

Rules, for every envelope:

* the frame counter must be strictly above the last accepted one of its
  epoch (else Replay: a replayed or reordered frame);
* an epoch dated more than :data:`~pvagpu.crypto.envelope.MAX_CLOCK_SKEW`
  in the future is rejected, and with ``max_key_age`` > 0 so is an epoch
  started longer ago than that (by the sender's clock), which bounds what
  can be replayed to a decryptor that restarted and lost its guard
  (StaleKey);
* signed streams only: an epoch older (start time, then key id) than the
  newest accepted one ON THE SAME CHANNEL is rejected (StaleKey), so old
  epochs cannot be replayed at all. Only the signer makes epochs there;
  keyed by channel, a real frame replayed from another channel (with
  ``expectedChannel "*"``) cannot make this channel's epoch stale.

Unsigned streams have no "newest epoch" rule: anyone with the receiver's
public key makes epochs, and one forged epoch (dated now or a few minutes
ahead) would otherwise make the real sender's frames stale. Each epoch
keeps its own counter instead, for the :attr:`ReplayGuard.EPOCHS_TRACKED`
most recently used epochs; a sender's active epoch is used at every frame
and stays, while an epoch pushed out by more than that many newer ones
(each costing the pusher an RSA unwrap within the decryptor's budget) can
be replayed again, within ``maxKeyAge``.

Nothing is remembered from an envelope until :meth:`ReplayGuard.accept`,
which the opener calls only once every check passed.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict

from .envelope import MAX_CLOCK_SKEW
from .errors import EnvelopeRejected


def epoch_name(key_id: bytes, wrapped_key: bytes) -> bytes:
    """What names a key epoch: its key id and a digest of its wrapped key."""
    return key_id + hashlib.sha256(wrapped_key).digest()[:16]


class _LastName:
    """:func:`epoch_name` of the last epoch asked for (every frame of an
    epoch asks three times for the same)."""
    __slots__ = ("key", "name")

    def __init__(self):
        self.key = self.name = None

    def __call__(self, key_id: bytes, wrapped_key: bytes) -> bytes:
        key = (key_id, wrapped_key)
        if key != self.key:
            self.key, self.name = key, epoch_name(key_id, wrapped_key)
        return self.name


class ReplayGuard:
    """The key epochs accepted under receiver key ``receiver`` (its
    fingerprint): the last accepted counter of each (the
    :attr:`EPOCHS_TRACKED` most recently used), the unwrapped keys of the
    :attr:`KEYS_CACHED` most recently used (RSA is paid once per epoch) and,
    for signed streams, the newest epoch of each channel (the
    :attr:`CHANNELS_TRACKED` most recently used)."""

    EPOCHS_TRACKED = 1024
    KEYS_CACHED = 128
    CHANNELS_TRACKED = 64

    def __init__(self, receiver: str):
        self.receiver = receiver
        self._keys = OrderedDict()      # epoch name -> (AESGCM, epoch start ns)
        self._last = OrderedDict()      # epoch name -> last accepted counter
        self._newest = OrderedDict()    # channel -> (epoch start ns, key id), signed only
        self._name = _LastName()

    def unwrapped_key(self, key_id: bytes, wrapped_key: bytes):
        """``(AESGCM, epoch start ns)`` of an accepted epoch, or None."""
        return self._keys.get(self._name(key_id, wrapped_key))

    def check(self, key_id: bytes, wrapped_key: bytes, counter: int, created: int, *,
              channel: str, signed: bool, max_key_age: float = 0.0) -> None:
        """Raises EnvelopeRejected (StaleKey, Replay) if frame ``counter`` of
        the epoch (``key_id``, ``wrapped_key``) started at ``created`` (ns)
        and bound to ``channel`` is not fresh; ``signed``: its signature was
        verified."""
        now = time.time_ns()
        if created - now > MAX_CLOCK_SKEW * 1e9:
            raise EnvelopeRejected("StaleKey", f"key epoch starts {(created - now) / 1e9:.0f} s "
                                   f"in the future (more than {MAX_CLOCK_SKEW:g} s of clock skew)")
        if max_key_age > 0 and now - created > max_key_age * 1e9:
            raise EnvelopeRejected("StaleKey", f"key epoch started {(now - created) / 1e9:.0f} s "
                                   f"ago (maxKeyAge {max_key_age:g} s)")
        if signed:
            newest = self._newest.get(channel)
            if newest is not None and (created, key_id) < newest:
                raise EnvelopeRejected("StaleKey", "key epoch older than the newest accepted "
                                       "one of its channel")
        last = self._last.get(self._name(key_id, wrapped_key))
        if last is not None and counter <= last:
            raise EnvelopeRejected("Replay", f"frame counter {counter} not above {last}, the "
                                   f"last accepted of key epoch {key_id.hex()[:8]}")

    def accept(self, key_id: bytes, wrapped_key: bytes, counter: int, aead, created: int, *,
               channel: str, signed: bool) -> None:
        """Remember frame ``counter`` of an epoch as accepted."""
        name = self._name(key_id, wrapped_key)
        _put(self._keys, name, (aead, created), self.KEYS_CACHED)
        _put(self._last, name, counter, self.EPOCHS_TRACKED)
        if signed:
            newest = self._newest.get(channel)
            epoch = (created, key_id)
            _put(self._newest, channel, epoch if newest is None else max(newest, epoch),
                 self.CHANNELS_TRACKED)


def _put(table: OrderedDict, key, value, size: int) -> None:
    """Set ``table[key]`` as the most recently used entry; keep ``size``."""
    table[key] = value
    table.move_to_end(key)
    while len(table) > size:
        table.popitem(last=False)
