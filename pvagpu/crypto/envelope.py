"""The envelope format: THE envelope structure, its clear fields, the
associated data that binds them, the wrapped key record and what a
signature covers.

An encrypted frame travels as one PVA structure (:data:`ENVELOPE_FIELDS`,
structure ID :data:`NTNDARRAY_ENVELOPE_ID` or :data:`DATA_ENVELOPE_ID`):

* the original object (any p4p ``Value``; an NTNDArray for the AdImage
  processors) is serialised by :func:`pvagpu.pva.serialize.serialize_value`;
* that plaintext is encrypted with AES-256-GCM under the current key epoch's
  key, with a fresh random 96-bit nonce per frame; the associated data
  (:func:`associated_data`) binds every clear field of the envelope: format
  version, structure ID, channel, uniqueId, both timestamps, dtype, dims,
  codec, the recipient and signer key fingerprints, the key id, the frame
  counter of the key epoch and the wrapped key;
* the AES key is generated per key epoch and wrapped with RSA-OAEP (SHA-256)
  for the recipient's public key (:func:`pvagpu.crypto.keys.wrap_key_record`),
  as the record :data:`KEY_RECORD` with the key id and the epoch's start
  time; the receiver unwraps it once per epoch and caches it;
* optionally a signature (Ed25519, or RSA-PSS with SHA-256) by the sender
  over :func:`signed_message`: the associated data, the nonce and the
  SHA-256 digest of the ciphertext.

:class:`~pvagpu.crypto.sealer.EnvelopeSealer` makes envelopes,
:class:`~pvagpu.crypto.opener.EnvelopeOpener` opens them and
:class:`~pvagpu.crypto.replay.ReplayGuard` holds the replay rules.
"""
from __future__ import annotations

import hashlib
import struct

import numpy as np
from p4p import Type, Value

from .. import ntnda
from ..errors import FrameError

ENVELOPE_VERSION = 1
NTNDARRAY_ENVELOPE_ID = "pvagpu:EncryptedNTNDArray:1"
DATA_ENVELOPE_ID = "pvagpu:EncryptedData:1"
KEY_ID_BYTES = 16
NONCE_BYTES = 12
#: seconds a sender's clock may be ahead of the receiver's for a key epoch
MAX_CLOCK_SKEW = 300.0
TAG_BYTES = 16

# Caps on the clear fields, checked before any of them is used
#: dimensions of a frame (NTNDArray: a handful)
MAX_DIMS = 16
#: bytes of a wrapped key or a signature (RSA-16384)
MAX_WRAPPED_KEY_BYTES = MAX_SIGNATURE_BYTES = 2048
#: characters of a clear string field (channel, dtype, codec, fingerprints)
MAX_CLEAR_STRING = 1024
#: default cap on a frame's plaintext (the decryptor's maxFrameBytes)
DEFAULT_MAX_FRAME_BYTES = 1 << 30

#: THE envelope structure (field, p4p type code), in wire order.
ENVELOPE_FIELDS = [
    ("version", "I"),          # envelope format version (1)
    ("channel", "s"),          # channel the envelope was published on (bound)
    ("uniqueId", "i"),         # clear copy of the object's uniqueId (routing, missed frames)
    ("timeStamp", ntnda.TIME_T),    # clear copies of the object's timestamps
    ("dataTimeStamp", ntnda.TIME_T),
    ("dtype", "s"),            # NTNDArray only: numpy dtype name of the pixels
    ("dims", "ai"),            # NTNDArray only: dimension[].size, fastest axis first
    ("codec", "s"),            # NTNDArray only: codec.name
    ("recipient", "s"),        # fingerprint of the RSA key the AES key is wrapped for
    ("signer", "s"),           # fingerprint of the signing key ("" unsigned)
    ("signatureAlgorithm", "s"),  # "", "ed25519" or "rsa-pss-sha256"
    ("keyId", "aB"),           # 16 random bytes naming the key epoch
    ("counter", "L"),          # frame number within the key epoch, from 1
    ("wrappedKey", "aB"),      # RSA-OAEP(SHA-256) of the epoch's key record
    ("nonce", "aB"),           # 12 fresh random bytes per frame
    ("ciphertext", "aB"),      # AES-256-GCM(plaintext) || 16-byte tag
    ("signature", "aB"),       # over signed_message(); empty when unsigned
]


def envelope_type(structure_id: str = NTNDARRAY_ENVELOPE_ID) -> Type:
    return Type(ENVELOPE_FIELDS, id=structure_id)


ENVELOPE_TYPES = {sid: envelope_type(sid) for sid in (NTNDARRAY_ENVELOPE_ID, DATA_ENVELOPE_ID)}

#: the content of an empty ``aB`` field (p4p gives None for an empty array)
EMPTY_U8 = np.empty(0, np.uint8)
EMPTY_U8.flags.writeable = False

#: the wrapped key record: magic, version, key id, epoch start (ns), AES key
KEY_RECORD = struct.Struct(">4sB16sQ32s")
KEY_RECORD_MAGIC = b"PVGK"
KEY_RECORD_VERSION = 1


def _lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def aad_head(version: int, structure_id: str, channel: str) -> bytes:
    return b"".join((b"pvagpu-aad\x00", struct.pack(">I", version), _lp(structure_id.encode()),
                     _lp(channel.encode())))


_AAD_FRAME = struct.Struct(">iqiiqiiQ")


def aad_frame(unique_id, time_stamp, data_time_stamp, counter, dtype, dims, codec) -> bytes:
    return b"".join((_AAD_FRAME.pack(unique_id, *time_stamp, *data_time_stamp, counter),
                     _lp(dtype.encode()), _lp(struct.pack(f">{len(dims)}i", *dims)),
                     _lp(codec.encode())))


def aad_tail(recipient: str, signer: str, algorithm: str, key_id: bytes,
              wrapped_key: bytes) -> bytes:
    return b"".join((_lp(recipient.encode()), _lp(signer.encode()), _lp(algorithm.encode()),
                     _lp(key_id), _lp(wrapped_key)))


def associated_data(h: dict) -> bytes:
    """The canonical bytes of the clear fields that AES-GCM authenticates:
    the per-stream head, the per-frame fields and the per-key-epoch tail
    (the sealer keeps head and tail between frames)."""
    return b"".join((
        aad_head(h["version"], h["id"], h["channel"]),
        aad_frame(h["uniqueId"], h["timeStamp"], h["dataTimeStamp"], h["counter"],
                   h["dtype"], h["dims"], h["codec"]),
        aad_tail(h["recipient"], h["signer"], h["signatureAlgorithm"], h["keyId"],
                  h["wrappedKey"]),
    ))


def signed_message(aad: bytes, nonce: bytes, ciphertext) -> bytes:
    """What the signature covers: the associated data, the nonce and the
    SHA-256 digest of the ciphertext (tag included)."""
    return b"pvagpu-sig\x00" + _lp(aad) + _lp(bytes(nonce)) + hashlib.sha256(ciphertext).digest()


def stamp_of_items(fields: dict, name: str) -> tuple:
    """(seconds, nanoseconds, userTag) of time_t field ``name`` of
    ``dict(value.tolist())``; zeros if there is none."""
    s = fields.get(name)
    if s is None:
        return (0, 0, 0)
    s = dict(s)
    return (int(s["secondsPastEpoch"]), int(s["nanoseconds"]), int(s["userTag"]))


#: numpy dtype -> its name (``dtype.name`` is computed in Python on every call)
_DTYPE_NAMES = {row.dtype: row.dtype.name for row in ntnda.SCALAR_TYPES if row.dtype is not None}


def _shape(spec):
    """A type spec without its type IDs (anonymous unions and structures
    get different IDs from different PVA stacks)."""
    if isinstance(spec, str):
        return spec
    return (spec[0], tuple((name, _shape(sub)) for name, sub in spec[2]))


_NTNDARRAY_SPEC = ntnda.NTNDARRAY_TYPE.aspy()
_NTNDARRAY_FIELDS = {name: _shape(sub) for name, sub in _NTNDARRAY_SPEC[2]}
_NTNDARRAY_REQUIRED = ("value", "codec", "compressedSize", "uncompressedSize", "dimension",
                       "uniqueId", "dataTimeStamp", "attribute")


def require_ntndarray(spec) -> None:
    """FrameError unless type spec ``spec`` (``aspy()`` form) is an
    NTNDArray: its ID, every required field, and every optional field it
    has, of the standard types (further fields are allowed, as pvapy adds
    them). What an NTNDArray envelope must hold."""
    if spec[0] != "S" or not str(spec[1]).startswith("epics:nt/NTNDArray:1."):
        raise FrameError(f"a {spec[1]!r} structure, not an NTNDArray")
    fields = dict(spec[2])
    for name in _NTNDARRAY_REQUIRED:
        if name not in fields:
            raise FrameError(f"not an NTNDArray: no field {name!r}")
    for name, sub in fields.items():
        expected = _NTNDARRAY_FIELDS.get(name)
        if expected is not None and _shape(sub) != expected:
            raise FrameError(f"not an NTNDArray: field {name!r} of another type")


def ntndarray_summary(value: Value) -> tuple:
    """(dtype name, dims, codec name) of an NTNDArray (uncompressed dtype)."""
    return summary_of_fields(dict(value.tolist()))


def summary_of_fields(fields: dict) -> tuple:
    """:func:`ntndarray_summary` from ``dict(value.tolist())``."""
    for name in ("value", "dimension", "codec", "uniqueId"):
        if name not in fields:
            raise FrameError(f"not an NTNDArray: no field {name!r}")
    codec = dict(fields["codec"])
    name = codec.get("name", "")
    if name:
        param = codec.get("parameters")
        if param is None:
            raise FrameError(f"codec {name!r} frame without codec.parameters")
        dtype = ntnda.info_for_pv_type(param).dtype
    else:
        arr = fields["value"]
        if arr is None:
            dtype = np.dtype(np.uint8)
        elif isinstance(arr, np.ndarray):
            dtype = ntnda.info_for_dtype(arr.dtype).dtype
        else:
            raise FrameError(f"the value union holds a {type(arr).__name__}, "
                             f"not a numeric array")
    dims = [int(dict(d)["size"]) for d in fields["dimension"]]
    return _DTYPE_NAMES[dtype], dims, name

