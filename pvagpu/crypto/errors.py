"""Why an envelope or a key file is refused: the exceptions of pvagpu.crypto."""
from __future__ import annotations

from ..errors import ConfigurationError, PvagpuError

#: Why an envelope can be rejected (stats key suffix -> meaning).
REJECT_REASONS = {
    "Malformed": "not an envelope of this format: missing or mistyped fields, bad or "
                 "oversized lengths",
    "Version": "unknown envelope format version or structure ID",
    "Channel": "bound to another channel than the one expected",
    "Recipient": "wrapped for another recipient key",
    "WrappedKey": "the wrapped key does not unwrap with this private key (tampered or wrong key)",
    "StaleKey": "a key epoch older than maxKeyAge, dated in the future, or (signed streams) "
                "older than the newest one accepted on its channel",
    "Replay": "frame counter not above the last accepted one of its key epoch (replay or reorder)",
    "Signature": "missing, wrong or tampered signature",
    "Authentication": "AES-GCM authentication failed (tampered ciphertext, nonce or clear field)",
    "Payload": "authenticated plaintext that does not describe a valid object (or not an "
               "NTNDArray for the AdImage decryptor), or one over the parser's budget",
    "Mismatch": "clear fields that disagree with the decrypted object",
    "Budget": "a new wrapped key while the budget of RSA unwraps for keys not yet "
              "authenticated is spent (unsigned streams)",
}


class EnvelopeRejected(PvagpuError, ValueError):
    """An envelope that is not decrypted; ``reason`` is a key of
    :data:`REJECT_REASONS`."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class KeyFileError(ConfigurationError):
    """A key file that is missing, unreadable, malformed or of the wrong kind."""
