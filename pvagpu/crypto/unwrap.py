"""Unwrapping the epoch keys: the RSA private-key work of a receiver, bounded.

An RSA-OAEP unwrap costs milliseconds. In a signed stream it happens only
after the signature verified; in an unsigned one anyone holding the
receiver's public key can send a new wrapped key with every envelope. A
:class:`KeyUnwrapper` therefore

* remembers the outcome of the last :attr:`KeyUnwrapper.MEMO_SIZE` wrapped
  keys it unwrapped, good or bad, so the same wrapped key never costs RSA
  twice (a pure cache: the outcome of an unwrap depends on nothing else);
* spends at most :attr:`KeyUnwrapper.BURST` unwraps at once and
  :attr:`KeyUnwrapper.RATE` per second on wrapped keys whose envelope is
  not authenticated yet (token bucket); beyond that the envelope is
  rejected as Budget, and the sender may try again later.

The keys of epochs already accepted are cached by the
:class:`~pvagpu.crypto.replay.ReplayGuard` and cost nothing here.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import keys
from .envelope import KEY_RECORD, KEY_RECORD_MAGIC, KEY_RECORD_VERSION
from .errors import EnvelopeRejected


class KeyUnwrapper:
    """RSA-OAEP unwraps of key records with ``private_key`` (the receiver's
    RSA key), memoised and, for unauthenticated envelopes, rate limited.
    ``clock``: seconds, monotonic (for tests)."""

    MEMO_SIZE = 256
    BURST = 20
    RATE = 10.0

    def __init__(self, private_key, *, clock=time.monotonic):
        self.private_key = private_key
        self.wrapped_size = private_key.key_size // 8
        self._memo = OrderedDict()      # digest of wrapped key -> (key id, AESGCM, start ns) or str
        self._clock = clock
        self._tokens = float(self.BURST)
        self._refilled = clock()

    def unwrap(self, key_id: bytes, wrapped_key: bytes, authenticated: bool):
        """``(AESGCM, epoch start ns)`` of the key record in ``wrapped_key``
        for epoch ``key_id``; EnvelopeRejected (WrappedKey, Budget)
        otherwise. ``authenticated``: the envelope's signature verified."""
        if len(wrapped_key) != self.wrapped_size:
            raise EnvelopeRejected("WrappedKey", f"wrapped key of {len(wrapped_key)} bytes, "
                                   f"this receiver key wraps into {self.wrapped_size}")
        digest = hashlib.sha256(wrapped_key).digest()
        outcome = self._memo.get(digest)
        if outcome is None:
            if not authenticated:
                self._spend()
            outcome = self._unwrap(wrapped_key)
            self._memo[digest] = outcome
            while len(self._memo) > self.MEMO_SIZE:
                self._memo.popitem(last=False)
        else:
            self._memo.move_to_end(digest)
        if isinstance(outcome, str):
            raise EnvelopeRejected("WrappedKey", outcome)
        record_key_id, aead, created = outcome
        if record_key_id != key_id:
            raise EnvelopeRejected("WrappedKey", "key record not for this key id")
        return aead, created

    def _spend(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.BURST), self._tokens + (now - self._refilled) * self.RATE)
        self._refilled = now
        if self._tokens < 1.0:
            raise EnvelopeRejected("Budget", f"more than {self.RATE:g} new wrapped keys per "
                                   f"second from unauthenticated envelopes")
        self._tokens -= 1.0

    def _unwrap(self, wrapped_key: bytes):
        try:
            record = keys.unwrap_key_record(self.private_key, wrapped_key)
        except ValueError:
            return "the wrapped key does not unwrap with this private key"
        if len(record) != KEY_RECORD.size:
            return "key record of the wrong length"
        magic, version, key_id, created, key = KEY_RECORD.unpack(record)
        if magic != KEY_RECORD_MAGIC or version != KEY_RECORD_VERSION:
            return "not a key record of version 1"
        return key_id, AESGCM(key), created
