"""Opening: envelopes back into the objects inside, with every check.

In order: the structure (ID, fields and their types) and every size (each
capped before it is used), the channel binding, the recipient, the
signature (when a verify key is given, before anything is unwrapped or
decrypted), the wrapped key (:mod:`pvagpu.crypto.unwrap`: RSA paid once per
epoch, and bounded for envelopes not yet authenticated), the replay rules
(:mod:`pvagpu.crypto.replay`), AES-GCM authentication, the plaintext
(:func:`pvagpu.pva.deserialize.deserialize_value`, within its budget; an
NTNDArray in an NTNDArray envelope) and the clear fields against the
decrypted object. Every refusal is an
:class:`~pvagpu.crypto.errors.EnvelopeRejected` with its reason; nothing
else escapes :meth:`EnvelopeOpener.open` for any input.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa
from p4p import Value

from ..errors import FrameError
from ..pva.deserialize import deserialize_value
from ..pva.serialize import PLAINTEXT_HEADER
from .envelope import (DATA_ENVELOPE_ID, DEFAULT_MAX_FRAME_BYTES, EMPTY_U8, ENVELOPE_FIELDS,
                       ENVELOPE_VERSION, KEY_ID_BYTES, MAX_CLEAR_STRING, MAX_DIMS,
                       MAX_SIGNATURE_BYTES, MAX_WRAPPED_KEY_BYTES, NONCE_BYTES,
                       NTNDARRAY_ENVELOPE_ID, TAG_BYTES, associated_data, ntndarray_summary,
                       require_ntndarray, signed_message, stamp_of_items)
from .errors import EnvelopeRejected, KeyFileError
from .keys import fingerprint, require_rsa, signature_algorithm, signature_size, verify
from .replay import ReplayGuard
from .unwrap import KeyUnwrapper

#: anything a malformed but well-typed input can make Python raise
_INPUT_ERRORS = (KeyError, ValueError, TypeError, OverflowError, IndexError, AttributeError)
_ALGORITHMS = ("", "ed25519", "rsa-pss-sha256")


def _u8(arr, name: str, cap: int) -> np.ndarray:
    if arr is None:  # p4p gives None for an empty array
        return EMPTY_U8
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 1:
        raise EnvelopeRejected("Malformed", f"field {name!r} is not a ubyte array")
    if arr.nbytes > cap:
        raise EnvelopeRejected("Malformed", f"field {name!r} of {arr.nbytes} bytes "
                               f"(at most {cap})")
    return arr


def _string(f: dict, name: str) -> str:
    text = f[name]
    if not isinstance(text, str) or len(text) > MAX_CLEAR_STRING:
        raise EnvelopeRejected("Malformed", f"field {name!r} is not a string of at most "
                               f"{MAX_CLEAR_STRING} characters")
    return text


class EnvelopeOpener:
    """Opens envelopes made for ``private_key`` (the receiver's RSA key).

    ``verify_key``: the sender's public key; when given, every envelope must
    carry a valid signature by it. ``expected_channel``: the channel the
    envelope must be bound to (None: any). ``structure_ids``: accepted
    structure IDs. ``max_key_age`` (s, > 0): reject key epochs started
    longer ago. ``max_frame_bytes``: the largest plaintext accepted.
    ``replay_guard`` and ``unwrapper``: the :class:`ReplayGuard` and
    :class:`KeyUnwrapper` of this receiver key to use (default: new ones);
    a decryptor keeps them across configure().

    Nothing is remembered from an envelope that fails any check (the
    unwrapper's memo aside, which caches what RSA says and nothing else)."""

    def __init__(self, private_key, verify_key=None, *, expected_channel: Optional[str] = None,
                 structure_ids=(NTNDARRAY_ENVELOPE_ID, DATA_ENVELOPE_ID),
                 max_key_age: float = 0.0, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 replay_guard: Optional[ReplayGuard] = None,
                 unwrapper: Optional[KeyUnwrapper] = None):
        self.private_key = require_rsa(private_key, "private key")
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise KeyFileError("the decryptor needs the receiver's RSA private key")
        self.verify_key = verify_key
        if verify_key is not None and hasattr(verify_key, "private_bytes"):
            self.verify_key = verify_key.public_key()
        self.expected_channel = expected_channel
        self.structure_ids = tuple(structure_ids)
        self.max_key_age = float(max_key_age or 0)
        self.max_frame_bytes = int(max_frame_bytes)
        self.my_fp = fingerprint(private_key)
        self.signer_fp = self.signer_alg = self.signature_size = None
        if self.verify_key is not None:
            self.signer_fp = fingerprint(self.verify_key)
            self.signer_alg = signature_algorithm(self.verify_key)
            self.signature_size = signature_size(self.verify_key)
        if replay_guard is None:
            replay_guard = ReplayGuard(self.my_fp)
        elif replay_guard.receiver != self.my_fp:
            raise ValueError(f"the replay guard of receiver key {replay_guard.receiver} "
                             f"cannot serve receiver key {self.my_fp}")
        if unwrapper is None:
            unwrapper = KeyUnwrapper(self.private_key)
        elif fingerprint(unwrapper.private_key) != self.my_fp:
            raise ValueError("the unwrapper holds another receiver key")
        self.replay_guard = replay_guard
        self.unwrapper = unwrapper
        # grown only to hold an accepted frame
        self._buf = np.empty(0, np.uint8)

    # -- the clear fields ------------------------------------------------------

    def _header(self, env: Value) -> dict:
        if not isinstance(env, Value):
            raise EnvelopeRejected("Malformed", f"a {type(env).__name__}, not a PVA structure")
        try:
            return self._read_header(env)
        except (EnvelopeRejected, FrameError):
            raise
        except _INPUT_ERRORS as exc:
            raise EnvelopeRejected("Malformed", f"{type(exc).__name__}: {exc}") from None

    def _read_header(self, env: Value) -> dict:
        sid = env.getID()
        if sid not in self.structure_ids:
            raise EnvelopeRejected("Version", f"structure ID {str(sid)[:80]!r} is not one of "
                                   f"{', '.join(self.structure_ids)}")
        spec = env.type().aspy()[2]
        if spec != ENVELOPE_FIELDS:
            present = {name for name, _ in spec}
            for name, _ in ENVELOPE_FIELDS:
                if name not in present:
                    raise EnvelopeRejected("Malformed", f"no field {name!r}")
            raise EnvelopeRejected("Malformed", "fields of the wrong type or order")
        f = dict(env.tolist())
        h = {"id": sid, "version": int(f["version"])}
        if h["version"] != ENVELOPE_VERSION:
            raise EnvelopeRejected("Version", f"envelope version {h['version']}")
        for name in ("channel", "dtype", "codec", "recipient", "signer", "signatureAlgorithm"):
            h[name] = _string(f, name)
        if h["signatureAlgorithm"] not in _ALGORITHMS:
            raise EnvelopeRejected("Malformed", "unknown signature algorithm")
        h["uniqueId"] = int(f["uniqueId"])
        h["timeStamp"] = stamp_of_items(f, "timeStamp")
        h["dataTimeStamp"] = stamp_of_items(f, "dataTimeStamp")
        dims = f["dims"]
        if dims is not None and (not isinstance(dims, np.ndarray) or dims.size > MAX_DIMS):
            raise EnvelopeRejected("Malformed", f"more than {MAX_DIMS} dims")
        h["dims"] = [] if dims is None else dims.tolist()
        h["counter"] = int(f["counter"])
        h["keyId"] = _u8(f["keyId"], "keyId", KEY_ID_BYTES).tobytes()
        h["nonce"] = _u8(f["nonce"], "nonce", NONCE_BYTES).tobytes()
        h["wrappedKey"] = _u8(f["wrappedKey"], "wrappedKey", MAX_WRAPPED_KEY_BYTES).tobytes()
        h["signature"] = _u8(f["signature"], "signature", MAX_SIGNATURE_BYTES).tobytes()
        h["ciphertext"] = _u8(f["ciphertext"], "ciphertext", self.max_frame_bytes + TAG_BYTES)
        if len(h["keyId"]) != KEY_ID_BYTES or len(h["nonce"]) != NONCE_BYTES:
            raise EnvelopeRejected("Malformed", "key id or nonce of the wrong length")
        if h["ciphertext"].nbytes < TAG_BYTES + PLAINTEXT_HEADER.size:
            raise EnvelopeRejected("Malformed", "ciphertext too short")
        if h["counter"] < 1:
            raise EnvelopeRejected("Malformed", "frame counter below 1")
        return h

    # -- opening -----------------------------------------------------------------

    def open(self, env: Value, commit: bool = True) -> Value:
        """The object inside ``env``; :class:`EnvelopeRejected` otherwise.
        Every check runs either way; with ``commit=False`` the envelope is
        not remembered as accepted (used to learn the output type from a
        first object, which is then processed)."""
        h = self._header(env)
        if self.expected_channel is not None and h["channel"] != self.expected_channel:
            raise EnvelopeRejected("Channel", f"envelope bound to channel {h['channel'][:80]!r}, "
                                   f"expected {self.expected_channel!r}")
        if h["recipient"] != self.my_fp:
            raise EnvelopeRejected("Recipient", f"wrapped for key {h['recipient'][:20]}, this "
                                   f"decryptor holds key {self.my_fp}")
        aad = associated_data(h)
        signed = self.verify_key is not None
        if signed:
            self._verify(h, aad)
        aead, created = self._epoch_key(h, signed)
        guard = self.replay_guard
        guard.check(h["keyId"], h["wrappedKey"], h["counter"], created, channel=h["channel"],
                    signed=signed, max_key_age=self.max_key_age)
        n = h["ciphertext"].nbytes - TAG_BYTES
        buf = self._buf if self._buf.nbytes >= n else np.empty(n, np.uint8)
        try:
            aead.decrypt_into(h["nonce"], h["ciphertext"], aad, buf[:n])
        except InvalidTag:
            raise EnvelopeRejected("Authentication", "AES-GCM tag does not match") from None
        value = self._object(h, buf[:n])
        if commit:
            guard.accept(h["keyId"], h["wrappedKey"], h["counter"], aead, created,
                         channel=h["channel"], signed=signed)
            self._buf = buf
        return value

    def _verify(self, h, aad) -> None:
        if not h["signature"]:
            raise EnvelopeRejected("Signature", "unsigned envelope, a signature is required")
        if h["signer"] != self.signer_fp or h["signatureAlgorithm"] != self.signer_alg:
            raise EnvelopeRejected("Signature", f"signed by key {h['signer'][:20] or '-'}, "
                                   f"expected key {self.signer_fp}")
        if len(h["signature"]) != self.signature_size:
            raise EnvelopeRejected("Signature", "signature of the wrong length")
        if not verify(self.verify_key, h["signature"],
                      signed_message(aad, h["nonce"], h["ciphertext"])):
            raise EnvelopeRejected("Signature", "signature does not verify")

    def _epoch_key(self, h, authenticated: bool):
        hit = self.replay_guard.unwrapped_key(h["keyId"], h["wrappedKey"])
        if hit is not None:
            return hit
        return self.unwrapper.unwrap(h["keyId"], h["wrappedKey"], authenticated)

    def _object(self, h, plaintext) -> Value:
        """The decrypted object, checked against the clear fields."""
        ntndarray = h["id"] == NTNDARRAY_ENVELOPE_ID
        try:
            value = deserialize_value(plaintext,
                                      check_type=require_ntndarray if ntndarray else None)
        except FrameError as exc:
            raise EnvelopeRejected("Payload", str(exc)) from None
        try:
            self._check_clear_fields(h, value, ntndarray)
        except (EnvelopeRejected, FrameError) + _INPUT_ERRORS as exc:
            if isinstance(exc, EnvelopeRejected):
                raise
            raise EnvelopeRejected("Payload", f"{type(exc).__name__}: {exc}") from None
        return value

    @staticmethod
    def _check_clear_fields(h, value, ntndarray: bool):
        if "uniqueId" in value:
            oid = value["uniqueId"]
            if not isinstance(oid, int) or isinstance(oid, bool) or oid != h["uniqueId"]:
                raise EnvelopeRejected("Mismatch", "uniqueId differs from the encrypted "
                                       "object's")
        if ntndarray and ntndarray_summary(value) != (h["dtype"], h["dims"], h["codec"]):
            raise EnvelopeRejected("Mismatch", "dtype/dims/codec differ from the "
                                   "encrypted frame's")
