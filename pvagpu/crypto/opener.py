"""Opening: envelopes back into the objects inside, with every check.

In order: the structure (ID, fields and their types, lengths), the channel
binding, the recipient, the signature (when a verify key is given, before
anything is unwrapped or decrypted), the wrapped key, the replay rules
(:mod:`pvagpu.crypto.replay`), AES-GCM authentication, the plaintext
(:func:`pvagpu.pva.deserialize.deserialize_value`) and the clear fields
against the decrypted object. Every refusal is an
:class:`~pvagpu.crypto.errors.EnvelopeRejected` with its reason.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from p4p import Value

from ..errors import FrameError
from ..pva.deserialize import deserialize_value
from ..pva.serialize import PLAINTEXT_HEADER
from .envelope import (DATA_ENVELOPE_ID, EMPTY_U8, ENVELOPE_FIELDS, ENVELOPE_VERSION,
                       KEY_ID_BYTES, KEY_RECORD, KEY_RECORD_MAGIC, KEY_RECORD_VERSION,
                       NONCE_BYTES, NTNDARRAY_ENVELOPE_ID, TAG_BYTES, associated_data,
                       ntndarray_summary, signed_message, stamp_of_items)
from .errors import EnvelopeRejected, KeyFileError
from .keys import fingerprint, require_rsa, unwrap_key_record, verify
from .replay import ReplayGuard


def _u8(arr, name: str) -> np.ndarray:
    if arr is None:  # p4p gives None for an empty array
        return EMPTY_U8
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8:
        raise EnvelopeRejected("Malformed", f"field {name!r} is not a ubyte array")
    return arr


class EnvelopeOpener:
    """Opens envelopes made for ``private_key`` (the receiver's RSA key).

    ``verify_key``: the sender's public key; when given, every envelope must
    carry a valid signature by it. ``expected_channel``: the channel the
    envelope must be bound to (None: any). ``structure_ids``: accepted
    structure IDs. ``max_key_age`` (s, > 0): reject key epochs started
    longer ago. ``replay_guard``: the :class:`ReplayGuard` of this receiver
    key to check and update (default: a new one), see
    :mod:`pvagpu.crypto.replay` for the rules.

    Nothing is remembered from an envelope that fails any check."""

    def __init__(self, private_key, verify_key=None, *, expected_channel: Optional[str] = None,
                 structure_ids=(NTNDARRAY_ENVELOPE_ID, DATA_ENVELOPE_ID),
                 max_key_age: float = 0.0, replay_guard: Optional[ReplayGuard] = None):
        self.private_key = require_rsa(private_key, "private key")
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise KeyFileError("the decryptor needs the receiver's RSA private key")
        self.verify_key = verify_key
        if verify_key is not None and hasattr(verify_key, "private_bytes"):
            self.verify_key = verify_key.public_key()
        self.expected_channel = expected_channel
        self.structure_ids = tuple(structure_ids)
        self.max_key_age = float(max_key_age or 0)
        self.my_fp = fingerprint(private_key)
        self.signer_fp = fingerprint(self.verify_key) if self.verify_key is not None else None
        if replay_guard is None:
            replay_guard = ReplayGuard(self.my_fp)
        elif replay_guard.receiver != self.my_fp:
            raise ValueError(f"the replay guard of receiver key {replay_guard.receiver} "
                             f"cannot serve receiver key {self.my_fp}")
        self.replay_guard = replay_guard
        self._buf = np.empty(0, np.uint8)

    def _header(self, env: Value) -> dict:
        if not isinstance(env, Value):
            raise EnvelopeRejected("Malformed", f"a {type(env).__name__}, not a PVA structure")
        sid = env.getID()
        if sid not in self.structure_ids:
            raise EnvelopeRejected("Version", f"structure ID {sid!r} is not one of "
                                   f"{', '.join(self.structure_ids)}")
        try:
            h = {"id": sid}
            spec = env.type().aspy()[2]
            if spec != ENVELOPE_FIELDS:
                present = {name for name, _ in spec}
                for name, _ in ENVELOPE_FIELDS:
                    if name not in present:
                        raise EnvelopeRejected("Malformed", f"no field {name!r}")
                raise EnvelopeRejected("Malformed", "fields of the wrong type or order")
            f = dict(env.tolist())
            h["version"] = int(f["version"])
            if h["version"] != ENVELOPE_VERSION:
                raise EnvelopeRejected("Version", f"envelope version {h['version']}")
            for name in ("channel", "dtype", "codec", "recipient", "signer",
                         "signatureAlgorithm"):
                h[name] = f[name]
            h["uniqueId"] = int(f["uniqueId"])
            h["timeStamp"] = stamp_of_items(f, "timeStamp")
            h["dataTimeStamp"] = stamp_of_items(f, "dataTimeStamp")
            dims = f["dims"]
            h["dims"] = [] if dims is None else dims.tolist()
            h["counter"] = int(f["counter"])
            h["keyId"] = _u8(f["keyId"], "keyId").tobytes()
            h["wrappedKey"] = _u8(f["wrappedKey"], "wrappedKey").tobytes()
            h["nonce"] = _u8(f["nonce"], "nonce").tobytes()
            h["signature"] = _u8(f["signature"], "signature").tobytes()
            h["ciphertext"] = _u8(f["ciphertext"], "ciphertext")
        except EnvelopeRejected:
            raise
        except (KeyError, ValueError, TypeError) as exc:
            raise EnvelopeRejected("Malformed", f"{type(exc).__name__}: {exc}") from None
        if len(h["keyId"]) != KEY_ID_BYTES or len(h["nonce"]) != NONCE_BYTES:
            raise EnvelopeRejected("Malformed", "key id or nonce of the wrong length")
        if h["ciphertext"].nbytes < TAG_BYTES + PLAINTEXT_HEADER.size:
            raise EnvelopeRejected("Malformed", "ciphertext too short")
        if h["counter"] < 1:
            raise EnvelopeRejected("Malformed", "frame counter below 1")
        return h

    def open(self, env: Value, commit: bool = True) -> Value:
        """The object inside ``env``; :class:`EnvelopeRejected` otherwise.
        With ``commit=False`` the replay state is neither checked nor
        updated (used to learn the output type from a first object)."""
        h = self._header(env)
        if self.expected_channel is not None and h["channel"] != self.expected_channel:
            raise EnvelopeRejected("Channel", f"envelope bound to channel {h['channel']!r}, "
                                   f"expected {self.expected_channel!r}")
        if h["recipient"] != self.my_fp:
            raise EnvelopeRejected("Recipient", f"wrapped for key {h['recipient']}, this "
                                   f"decryptor holds key {self.my_fp}")
        aad = associated_data(h)
        ct = h["ciphertext"]
        if self.verify_key is not None:
            if not h["signature"]:
                raise EnvelopeRejected("Signature", "unsigned envelope, a signature is required")
            if h["signer"] != self.signer_fp:
                raise EnvelopeRejected("Signature", f"signed by key {h['signer'] or '-'}, "
                                       f"expected key {self.signer_fp}")
            if not verify(self.verify_key, h["signature"], signed_message(aad, h["nonce"], ct)):
                raise EnvelopeRejected("Signature", "signature does not verify")
        aead, created = self._unwrap(h)
        if commit:
            self.replay_guard.check(h["keyId"], h["counter"], created, self.max_key_age)
        n = ct.nbytes - TAG_BYTES
        if self._buf.nbytes < n:
            self._buf = np.empty(n + 4096, np.uint8)
        out = self._buf[:n]
        try:
            aead.decrypt_into(h["nonce"], ct, aad, out)
        except InvalidTag:
            raise EnvelopeRejected("Authentication", "AES-GCM tag does not match") from None
        try:
            value = deserialize_value(out)
        except FrameError as exc:
            raise EnvelopeRejected("Payload", str(exc)) from None
        self._check_clear_fields(h, value)
        if commit:
            self.replay_guard.accept(h["keyId"], h["wrappedKey"], h["counter"], aead, created)
        return value

    def _unwrap(self, h):
        hit = self.replay_guard.unwrapped_key(h["keyId"], h["wrappedKey"])
        if hit is not None:
            return hit
        try:
            record = unwrap_key_record(self.private_key, h["wrappedKey"])
        except ValueError:
            raise EnvelopeRejected("WrappedKey", "the wrapped key does not unwrap with this "
                                   "private key") from None
        if len(record) != KEY_RECORD.size:
            raise EnvelopeRejected("WrappedKey", "key record of the wrong length")
        magic, version, key_id, created, key = KEY_RECORD.unpack(record)
        if magic != KEY_RECORD_MAGIC or version != KEY_RECORD_VERSION or key_id != h["keyId"]:
            raise EnvelopeRejected("WrappedKey", "key record not for this key id")
        return AESGCM(key), created

    @staticmethod
    def _check_clear_fields(h, value):
        if "uniqueId" in value and int(value["uniqueId"]) != h["uniqueId"]:
            raise EnvelopeRejected("Mismatch", "uniqueId differs from the encrypted object's")
        if h["id"] == NTNDARRAY_ENVELOPE_ID:
            try:
                summary = ntndarray_summary(value)
            except FrameError as exc:
                raise EnvelopeRejected("Payload", f"not an NTNDArray: {exc}") from None
            if summary != (h["dtype"], h["dims"], h["codec"]):
                raise EnvelopeRejected("Mismatch", "dtype/dims/codec differ from the "
                                       "encrypted frame's")
