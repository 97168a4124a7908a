"""Sealing: objects into envelopes for one recipient, with key epochs.

The format (fields, associated data, key record) is in
:mod:`pvagpu.crypto.envelope`; the object is serialised by
:func:`pvagpu.pva.serialize.serialize_value`.
"""
from __future__ import annotations

import os
import time
from typing import Optional

import numpy as np
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from p4p import Value

from .. import ntnda
from ..errors import FrameError
from ..pva.serialize import serialize_value
from .envelope import (EMPTY_U8, ENVELOPE_TYPES, ENVELOPE_VERSION, KEY_ID_BYTES, KEY_RECORD,
                       KEY_RECORD_MAGIC, KEY_RECORD_VERSION, NONCE_BYTES, NTNDARRAY_ENVELOPE_ID,
                       TAG_BYTES, aad_frame, aad_head, aad_tail, envelope_type, signed_message,
                       stamp_of_items, summary_of_fields)
from .keys import fingerprint, require_rsa, sign, signature_algorithm, wrap_key_record


class _Epoch:
    """One key epoch of a sealer: a random AES key and key id, wrapped once
    for the recipient, and the frames counted under it."""

    __slots__ = ("key_id", "key", "created_ns", "counter", "wrapped", "started",
                 "algorithm", "key_id_array", "wrapped_array", "aad_tail")

    def __init__(self, recipient):
        self.key_id = os.urandom(KEY_ID_BYTES)
        self.key = os.urandom(32)
        self.created_ns = time.time_ns()
        self.started = time.monotonic()
        self.counter = 0
        record = KEY_RECORD.pack(KEY_RECORD_MAGIC, KEY_RECORD_VERSION, self.key_id,
                                 self.created_ns, self.key)
        self.wrapped = wrap_key_record(recipient, record)
        # made once per epoch rather than for every frame
        self.algorithm = algorithms.AES(self.key)
        self.key_id_array = np.frombuffer(self.key_id, np.uint8)
        self.wrapped_array = np.frombuffer(self.wrapped, np.uint8)
        self.aad_tail = None    # set by the sealer (needs its fingerprints)


class EnvelopeSealer:
    """Encrypts objects into envelopes for one recipient.

    ``recipient``: the receiver's RSA public key; ``signing_key``: the
    sender's private key (Ed25519 or RSA) or None. A new key epoch (new AES
    key, key id and wrapped key) starts after ``rotation_frames`` frames or
    ``rotation_seconds`` seconds, whichever comes first (<= 0: never for
    that criterion; frames are capped at 2**32 per key, the GCM limit for
    random nonces)."""

    MAX_FRAMES_PER_KEY = 2 ** 32

    def __init__(self, recipient, signing_key=None, *, rotation_frames: int = 1_000_000,
                 rotation_seconds: float = 3600.0, structure_id: str = NTNDARRAY_ENVELOPE_ID):
        self.recipient = require_rsa(recipient, "recipient key")
        if isinstance(recipient, rsa.RSAPrivateKey):
            self.recipient = recipient.public_key()
        self.signing_key = signing_key
        self.rotation_frames = int(rotation_frames) if rotation_frames and rotation_frames > 0 \
            else self.MAX_FRAMES_PER_KEY
        self.rotation_frames = min(self.rotation_frames, self.MAX_FRAMES_PER_KEY)
        self.rotation_seconds = float(rotation_seconds or 0)
        self.structure_id = structure_id
        self.type = ENVELOPE_TYPES.get(structure_id) or envelope_type(structure_id)
        self.recipient_fp = fingerprint(self.recipient)
        self.signer_fp = fingerprint(signing_key) if signing_key is not None else ""
        self.sig_alg = signature_algorithm(signing_key) if signing_key is not None else ""
        self.n_rotations = 0
        self._epoch = None
        self._buf = np.empty(0, np.uint8)

    def rotate(self) -> None:
        """Start a new key epoch now (one RSA-OAEP wrap)."""
        self._epoch = _Epoch(self.recipient)
        self.n_rotations += 1

    def _current_epoch(self) -> _Epoch:
        e = self._epoch
        if (e is None or e.counter >= self.rotation_frames or
                (self.rotation_seconds > 0 and time.monotonic() - e.started >= self.rotation_seconds)):
            self.rotate()
            e = self._epoch
        return e

    def seal(self, value: Value, channel: str = "", summary: Optional[tuple] = None) -> Value:
        """The envelope of ``value``. ``summary``: (dtype, dims, codec) of
        the clear fields; by default :func:`ntndarray_summary` of ``value``
        for NTNDArray envelopes, empty for others."""
        items = value.tolist()
        parts = serialize_value(value, items)
        size = sum(p.nbytes if isinstance(p, np.ndarray) else len(p) for p in parts)
        epoch = self._current_epoch()
        epoch.counter += 1
        fields = dict(items)
        if summary is None and self.structure_id == NTNDARRAY_ENVELOPE_ID:
            summary = summary_of_fields(fields)
        dtype, dims, codec = summary if summary is not None else ("", [], "")
        oid = fields.get("uniqueId", 0)
        if isinstance(oid, bool) or not isinstance(oid, (int, np.integer)):
            raise FrameError(f"uniqueId must be an integer, not a {type(oid).__name__}")
        oid = int(oid)
        ts = stamp_of_items(fields, "timeStamp")
        dts = stamp_of_items(fields, "dataTimeStamp")
        channel = channel or ""
        if epoch.aad_tail is None:
            epoch.aad_tail = aad_tail(self.recipient_fp, self.signer_fp, self.sig_alg,
                                       epoch.key_id, epoch.wrapped)
        aad = b"".join((aad_head(ENVELOPE_VERSION, self.structure_id, channel),
                        aad_frame(oid, ts, dts, epoch.counter, dtype, dims, codec),
                        epoch.aad_tail))
        nonce = os.urandom(NONCE_BYTES)
        if self._buf.nbytes < size + TAG_BYTES + 16:
            self._buf = np.empty(size + TAG_BYTES + 4096, np.uint8)
        buf = self._buf
        enc = Cipher(epoch.algorithm, modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(aad)
        pos = 0
        for part in parts:
            pos += enc.update_into(part, buf[pos:])
        enc.finalize()
        buf[pos:pos + TAG_BYTES] = np.frombuffer(enc.tag, np.uint8)
        ct = buf[:pos + TAG_BYTES]
        signature = EMPTY_U8
        if self.signing_key is not None:
            signature = np.frombuffer(sign(self.signing_key, signed_message(aad, nonce, ct)),
                                      np.uint8)
        return Value(self.type, {
            "version": ENVELOPE_VERSION, "channel": channel, "uniqueId": oid,
            "timeStamp": ntnda.TimeStamp(*ts)._asdict(),
            "dataTimeStamp": ntnda.TimeStamp(*dts)._asdict(),
            "dtype": dtype, "dims": dims, "codec": codec,
            "recipient": self.recipient_fp, "signer": self.signer_fp,
            "signatureAlgorithm": self.sig_alg,
            "keyId": epoch.key_id_array, "counter": epoch.counter,
            "wrappedKey": epoch.wrapped_array,
            "nonce": np.frombuffer(nonce, np.uint8), "ciphertext": ct,
            "signature": signature,
        })
