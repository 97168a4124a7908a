"""The authenticated envelope of the encryptor/decryptor processors.

An encrypted frame travels as one PVA structure (:data:`ENVELOPE_FIELDS`,
structure ID :data:`NTNDARRAY_ENVELOPE_ID` or :data:`DATA_ENVELOPE_ID`):

* the original object (any p4p ``Value``; an NTNDArray for the AdImage
  processors) is serialised by :func:`serialize_value` into a versioned,
  length-prefixed binary layout: a JSON description of the type and of the
  small fields, followed by the numeric arrays as raw bytes. No pickle, no
  eval; :func:`deserialize_value` checks every length, type code, range and
  nesting depth before it builds anything;
* that plaintext is encrypted with AES-256-GCM under the current key epoch's
  key, with a fresh random 96-bit nonce per frame; the associated data
  (:func:`associated_data`) binds every clear field of the envelope: format
  version, structure ID, channel, uniqueId, both timestamps, dtype, dims,
  codec, the recipient and signer key fingerprints, the key id, the frame
  counter of the key epoch and the wrapped key;
* the AES key is generated per key epoch and wrapped with RSA-OAEP (SHA-256)
  for the recipient's public key, together with the key id and the epoch's
  start time; the receiver unwraps it once per epoch and caches it;
* optionally a signature (Ed25519, or RSA-PSS with SHA-256) by the sender
  over the associated data, the nonce and the SHA-256 digest of the
  ciphertext.

:class:`EnvelopeSealer` makes envelopes, :class:`EnvelopeOpener` opens them
and enforces the replay rules (see :class:`EnvelopeOpener`). Every reason to
refuse an envelope raises :class:`EnvelopeRejected` whose ``reason`` is one
of :data:`REJECT_REASONS`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import numpy as np
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from p4p import Type, Value

from . import ntnda
from .errors import ConfigurationError, FrameError, PvagpuError

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

#: Why an envelope can be rejected (stats key suffix -> meaning).
REJECT_REASONS = {
    "Malformed": "not an envelope of this format: missing or mistyped fields, bad lengths",
    "Version": "unknown envelope format version or structure ID",
    "Channel": "bound to another channel than the one expected",
    "Recipient": "wrapped for another recipient key",
    "WrappedKey": "the wrapped key does not unwrap with this private key (tampered or wrong key)",
    "StaleKey": "a key epoch older than the newest one accepted, or older than maxKeyAge",
    "Replay": "frame counter not above the last accepted one of its key epoch (replay or reorder)",
    "Signature": "missing, wrong or tampered signature",
    "Authentication": "AES-GCM authentication failed (tampered ciphertext, nonce or clear field)",
    "Payload": "authenticated plaintext that does not describe a valid object",
    "Mismatch": "clear fields that disagree with the decrypted object",
}


class EnvelopeRejected(PvagpuError, ValueError):
    """An envelope that is not decrypted; ``reason`` is a key of
    :data:`REJECT_REASONS`."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class KeyFileError(ConfigurationError):
    """A key file that is missing, unreadable, malformed or of the wrong kind."""


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------

MIN_RSA_BITS = 2048
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                     label=b"pvagpu-wrapped-key-1")
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def _read_pem(path, what: str) -> bytes:
    if not path:
        raise KeyFileError(f"{what}: no key file given")
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{what}: key file {str(p)!r} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"{what}: cannot read key file {str(p)!r}: {exc.strerror or exc}") from None
    if b"-----BEGIN" not in data:
        raise KeyFileError(f"{what}: {str(p)!r} is not a PEM file")
    return data


def load_private_key(path, what: str = "private key"):
    """An RSA or Ed25519 private key from an unencrypted PEM file (PKCS#8 or
    PKCS#1); :class:`KeyFileError` for anything else."""
    data = _read_pem(path, what)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(f"{what}: {str(path)!r} is password-protected; give an "
                           f"unencrypted key (protect it with file permissions)") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{what}: {str(path)!r} holds no usable private key "
                           f"({exc})") from None
    _check_key_kind(key, what, path)
    return key


def load_public_key(path, what: str = "public key"):
    """An RSA or Ed25519 public key from a PEM file; a private-key PEM gives
    its public half (pvapy's single-key setup)."""
    data = _read_pem(path, what)
    if b"PRIVATE KEY-----" in data:
        return load_private_key(path, what).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{what}: {str(path)!r} holds no usable public key ({exc})") from None
    _check_key_kind(key, what, path)
    return key


def _check_key_kind(key, what, path):
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        if key.key_size < MIN_RSA_BITS:
            raise KeyFileError(f"{what}: {str(path)!r} is a {key.key_size}-bit RSA key; "
                               f"at least {MIN_RSA_BITS} bits are needed")
    elif not isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        raise KeyFileError(f"{what}: {str(path)!r} is a {type(key).__name__.lstrip('_')}; "
                           f"pvagpu uses RSA (key wrapping, RSA-PSS) or Ed25519 (signing)")


def require_rsa(key, what: str, path=None):
    """``key`` if it is RSA (it wraps the AES keys), else KeyFileError."""
    if not isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        raise KeyFileError(f"{what}{f' {str(path)!r}' if path else ''} must be an RSA key "
                           f"(it wraps the AES keys with RSA-OAEP), not Ed25519")
    return key


def fingerprint(key) -> str:
    """16 hex digits identifying a key: SHA-256 of its public key (DER)."""
    pub = key.public_key() if hasattr(key, "public_key") else key
    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def signature_algorithm(key) -> str:
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    return "rsa-pss-sha256"


def sign(key, message: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    return key.sign(message, _PSS, hashes.SHA256())


def verify(key, signature: bytes, message: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        else:
            key.verify(signature, message, _PSS, hashes.SHA256())
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def generate_key_pair(private_path, public_path=None, kind: str = "rsa", bits: int = 3072):
    """Write a new unencrypted private key (PKCS#8 PEM, mode 0600) and its
    public key (PEM); for tests, benchmarks and first setups."""
    key = (ed25519.Ed25519PrivateKey.generate() if kind == "ed25519"
           else rsa.generate_private_key(public_exponent=65537, key_size=bits))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    if public_path:
        Path(public_path).write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key


# ---------------------------------------------------------------------------
# Serialising a p4p Value without pickle
# ---------------------------------------------------------------------------

PLAINTEXT_MAGIC = b"PVGV"
PLAINTEXT_VERSION = 1
_PT_HEADER = struct.Struct("<4sBBHIII")  # magic, version, flags, 0, type len, tree len, n blobs
_MAX_DEPTH = 32
_MAX_FIELDS = 100_000

_SCALAR_CODES = "?bhilBHILfds"
_INT_RANGES = {c: (np.iinfo(t).min, np.iinfo(t).max) for c, t in
               zip("bhilBHIL", (np.int8, np.int16, np.int32, np.int64,
                                np.uint8, np.uint16, np.uint32, np.uint64))}
_FLOAT_FMT = {"f": "<f", "d": "<d"}
#: numeric array code -> numpy dtype (from THE table in pvagpu.ntnda)
_ARRAY_DTYPE = {"a" + row.p4p_code: row.dtype for row in ntnda.SCALAR_TYPES if row.dtype is not None}
_DTYPE_ARRAY = {dt: code for code, dt in _ARRAY_DTYPE.items()}
#: C type names in Value.tostr() -> p4p codes (variant scalar types)
_CTYPE_CODE = {"bool": "?", "int8_t": "b", "int16_t": "h", "int32_t": "i", "int64_t": "l",
               "uint8_t": "B", "uint16_t": "H", "uint32_t": "I", "uint64_t": "L",
               "float": "f", "double": "d", "string": "s"}
_VARIANT_LINE = re.compile(r"^    any (\S+) (\S+)", re.M)
_UNION_LINE = re.compile(r"^    union (?:\"[^\"]*\" )?(\S+?)\.(\S+) ", re.M)


class _Blobs:
    __slots__ = ("arrays",)

    def __init__(self):
        self.arrays = []

    def add(self, arr: np.ndarray) -> int:
        self.arrays.append(arr)
        return len(self.arrays) - 1


def _code_of_array(arr: np.ndarray) -> str:
    dt = arr.dtype
    dt = dt.newbyteorder("=") if dt.byteorder in "<>" else dt
    try:
        return _DTYPE_ARRAY[dt]
    except KeyError:
        raise FrameError(f"array of {arr.dtype} has no PVA type") from None


def _enc_scalar(code, val):
    if code in _FLOAT_FMT:
        return struct.pack(_FLOAT_FMT[code], val).hex()
    if code == "?":
        return bool(val)
    if code == "s":
        return str(val)
    return int(val)


def _json_spec(spec):
    """aspy() spec with tuples as lists (JSON form)."""
    if isinstance(spec, str):
        return spec
    # p4p's aspy() gives an anonymous structure or union the ID "structure",
    # which is what the decrypted type then carries
    return [spec[0], spec[1], [[n, _json_spec(s)] for n, s in spec[2]]]


# The encoder walks ``Value.tolist()`` (one C call that returns every field
# as plain Python objects, arrays as views) with a plan made once per type.
# tolist() drops two type facts, which are read from the Value itself only
# where the Python object cannot tell them: the selected member of a union
# and the type of a number held by a variant (int32 or int64? float or
# double?). ``sv_of`` is a callable returning the p4p Value of the structure
# being encoded, so those look-ups cost nothing when they are not needed.

def _quick_code(x) -> Optional[str]:
    """The type code of a tolist() object, where the object alone tells it."""
    if isinstance(x, np.ndarray):
        return _code_of_array(x)
    if isinstance(x, bool):
        return "?"
    if isinstance(x, str):
        return "s"
    return None


def _variant_spec(sv: Value, name: str):
    """The type spec of what variant field ``name`` of ``sv`` holds, when
    its tolist() object does not tell (:func:`_quick_code`)."""
    val = sv[name]
    if isinstance(val, Value):
        return val.type().aspy()
    if isinstance(val, list) and all(isinstance(x, str) for x in val):
        return "as"
    code = _CTYPE_CODE.get(dict(_VARIANT_LINE.findall(sv.tostr())).get(name, ""))
    if code is None:
        raise FrameError(f"cannot tell the type of variant field {name!r}")
    return code


def _enc_typed(spec, x, sv_of, blobs: _Blobs):
    """Encode tolist() object ``x`` of type ``spec`` (a variant's content
    or a union member); ``sv_of()`` gives it as a p4p object."""
    if isinstance(spec, str):
        if len(spec) == 1 and spec in _SCALAR_CODES:
            return _enc_scalar(spec, x)
        if spec == "as":
            return [str(s) for s in x]
        if spec in _ARRAY_DTYPE:
            return blobs.add(np.asarray(x, _ARRAY_DTYPE[spec]))
        raise FrameError(f"unsupported variant/union member type {spec!r}")
    if spec[0] == "S":
        return _type_plan(spec)[1](x, sv_of, blobs)
    if spec[0] == "aS":
        enc = _type_plan(spec)[1]
        element = _elements_of(sv_of)
        return [None if e is None else enc(e, lambda k=k: element(k), blobs)
                for k, e in enumerate(x or [])]
    raise FrameError(f"unsupported variant/union member type {spec[0]!r}")


def _step_float(x, code, sv_of, blobs):
    return struct.pack(_FLOAT_FMT[code], x).hex()


def _step_strings(x, _, sv_of, blobs):
    return [str(s) for s in x] if x else []


def _step_array(x, dtype, sv_of, blobs):
    if x is None:
        x = np.empty(0, dtype)
    elif x.dtype != dtype:
        x = x.astype(dtype)
    return blobs.add(x)


def _step_struct(x, arg, sv_of, blobs):
    name, enc = arg
    return enc(x, lambda: sv_of()[name], blobs)


def _step_flat_struct(x, n_fields, sv_of, blobs):
    if len(x) != n_fields:
        raise FrameError("structure does not match its type")
    return [v for _, v in x]


def _elements_of(sv_of, name=None):
    """``k -> the p4p Value of element k`` of structure array ``name`` of
    ``sv_of()`` (or of ``sv_of()`` itself), fetching the array once, when
    first needed (each fetch wraps every element)."""
    fetched = []

    def element(k):
        if not fetched:
            fetched.append(sv_of() if name is None else sv_of()[name])
        return fetched[0][k]
    return element


def _step_structs(x, arg, sv_of, blobs):
    name, enc = arg
    element = _elements_of(sv_of, name)
    return [None if e is None else enc(e, lambda k=k: element(k), blobs)
            for k, e in enumerate(x or [])]


def _step_flat_structs(x, n_fields, sv_of, blobs):
    if any(e is not None and len(e) != n_fields for e in x or ()):
        raise FrameError("structure does not match its type")
    return [None if e is None else [v for _, v in e] for e in x or []]


def _is_flat(fields) -> bool:
    """Only fields that tolist() gives as they are encoded."""
    return all(isinstance(spec, str) and len(spec) == 1 and spec in _PASS_THROUGH
               for _, spec in fields)


_PASS_THROUGH = "?bhilBHILs"


def _step_union(x, arg, sv_of, blobs):
    name, members, unique_code = arg
    if x is None:
        return None
    member = unique_code.get(_quick_code(x))
    if member is None:
        member = dict(_UNION_LINE.findall(sv_of().tostr())).get(name)
    mspec = members.get(member)
    if mspec is None:
        raise FrameError(f"cannot tell the selected member of union {name!r}")
    return [member, _enc_typed(mspec, x, lambda: sv_of()[name], blobs)]


def _step_variant(x, name, sv_of, blobs):
    if x is None:
        return None
    spec = _quick_code(x) or _variant_spec(sv_of(), name)
    return [_json_spec(spec), _enc_typed(spec, x, lambda: sv_of()[name], blobs)]


def _step_variants(x, name, sv_of, blobs):
    out = []
    for val in sv_of()[name] or []:
        if val is None:
            out.append(None)
            continue
        spec = val.type().aspy() if isinstance(val, Value) else _quick_code(val)
        if spec is None:
            raise FrameError("variant array element of ambiguous scalar type")
        x = val.tolist() if isinstance(val, Value) else val
        out.append([_json_spec(spec), _enc_typed(spec, x, lambda v=val: v, blobs)])
    return out


def _struct_encoder(fields):
    """The encoder of a structure of ``fields`` (aspy() form):
    ``encode(items, sv_of, blobs)`` -> list, ``items`` from tolist().
    Fields of integer, bool and string type pass through as they are."""
    steps = []
    for i, (name, spec) in enumerate(fields):
        if isinstance(spec, str):
            if len(spec) == 1 and spec in _PASS_THROUGH:
                continue
            if spec in _FLOAT_FMT:
                steps.append((i, _step_float, spec))
            elif spec == "as":
                steps.append((i, _step_strings, None))
            elif spec in _ARRAY_DTYPE:
                steps.append((i, _step_array, _ARRAY_DTYPE[spec]))
            elif spec == "v":
                steps.append((i, _step_variant, name))
            elif spec == "av":
                steps.append((i, _step_variants, name))
            else:
                raise FrameError(f"field {name!r}: unsupported PVA type code {spec!r}")
        elif spec[0] in ("S", "aS") and _is_flat(spec[2]):
            steps.append((i, _step_flat_struct if spec[0] == "S" else _step_flat_structs,
                          len(spec[2])))
        elif spec[0] == "S":
            steps.append((i, _step_struct, (name, _struct_encoder(spec[2]))))
        elif spec[0] == "aS":
            steps.append((i, _step_structs, (name, _struct_encoder(spec[2]))))
        elif spec[0] == "U":
            codes = [m_spec for _, m_spec in spec[2] if isinstance(m_spec, str)]
            unique_code = {s: m for m, s in spec[2] if isinstance(s, str) and codes.count(s) == 1}
            steps.append((i, _step_union, (name, dict(spec[2]), unique_code)))
        else:
            raise FrameError(f"field {name!r}: unsupported PVA type {spec[0]!r}")
    n_fields = len(fields)

    def encode(items, sv_of, blobs):
        if len(items) != n_fields:
            raise FrameError("structure does not match its type")
        out = [v for _, v in items]
        for i, step, arg in steps:
            out[i] = step(out[i], arg, sv_of, blobs)
        return out
    return encode


_PLAN_CACHE_SIZE = 8
_plan_cache: "OrderedDict[Optional[str], list]" = OrderedDict()
_plan_cache_lock = threading.Lock()


def _type_plan(spec) -> tuple:
    """``(JSON type description, encoder)`` of structure type ``spec`` (an
    aspy() form; the encoder from :func:`_struct_encoder`).

    A pure function of ``spec``, remembered for the last few distinct specs:
    a hit needs ``spec`` to be *equal* (the whole nested type, compared
    field by field) to the remembered one, so nothing but the type's own
    description and plan is ever reused. Entries are grouped by the
    top-level type ID only to keep the comparisons few."""
    with _plan_cache_lock:
        bucket = _plan_cache.get(spec[1])
        if bucket is not None:
            for cached_spec, plan in bucket:
                if cached_spec == spec:
                    return plan
    plan = (json.dumps(_json_spec(spec), separators=(",", ":")).encode(),
            _struct_encoder(spec[2]))
    with _plan_cache_lock:
        bucket = _plan_cache.setdefault(spec[1], [])
        _plan_cache.move_to_end(spec[1])
        bucket.insert(0, (spec, plan))
        del bucket[_PLAN_CACHE_SIZE:]
        while len(_plan_cache) > _PLAN_CACHE_SIZE:
            _plan_cache.popitem(last=False)
    return plan


_TREE_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _as_bytes(a: np.ndarray) -> np.ndarray:
    if a.ndim == 1 and a.flags.c_contiguous:
        return a.view(np.uint8)
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def serialize_value(value: Value, items: Optional[list] = None):
    """``value`` as a list of buffers whose concatenation is the plaintext
    (header + JSON + raw array bytes, 8-byte aligned). No copy of arrays.
    The JSON type description and the encoding plan are remembered per
    type (:func:`_type_plan`); the fields are encoded anew for every value.
    ``items``: ``value.tolist()``, if the caller has it already."""
    spec = value.type().aspy()
    type_json, encode = _type_plan(spec)
    blobs = _Blobs()
    if items is None:
        items = value.tolist()
    tree = encode(items, lambda: value, blobs)
    tree_json = _TREE_JSON.encode(tree).encode()
    arrays = [_as_bytes(a) for a in blobs.arrays]
    lengths = struct.pack(f"<{len(arrays)}Q", *(a.nbytes for a in arrays))
    head = (_PT_HEADER.pack(PLAINTEXT_MAGIC, PLAINTEXT_VERSION, 0, 0, len(type_json),
                            len(tree_json), len(arrays)) + lengths + type_json + tree_json)
    parts = [head + bytes(-len(head) % 8)]
    for a in arrays:
        parts.append(a)
        if a.nbytes % 8:
            parts.append(bytes(-a.nbytes % 8))
    return parts


class _Budget:
    __slots__ = ("n",)

    def __init__(self):
        self.n = 0

    def tick(self):
        self.n += 1
        if self.n > _MAX_FIELDS:
            raise FrameError("too many fields")


def _check_spec(spec, depth=0, budget=None):
    """A JSON type spec -> aspy() form, or FrameError."""
    budget = budget or _Budget()
    budget.tick()
    if depth > _MAX_DEPTH:
        raise FrameError("type nested too deeply")
    if isinstance(spec, str):
        if (len(spec) == 1 and spec in _SCALAR_CODES + "v") or spec in ("as", "av") \
                or spec in _ARRAY_DTYPE:
            return spec
        raise FrameError(f"unknown type code {spec!r}")
    if not (isinstance(spec, list) and len(spec) == 3 and spec[0] in ("S", "aS", "U", "aU")
            and (spec[1] is None or isinstance(spec[1], str)) and isinstance(spec[2], list)):
        raise FrameError("malformed type description")
    fields, names = [], set()
    for item in spec[2]:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and item[0] and item[0] not in names):
            raise FrameError("malformed field in type description")
        names.add(item[0])
        fields.append((item[0], _check_spec(item[1], depth + 1, budget)))
    return (spec[0], spec[1], fields)


def _dec_scalar(code, x):
    if code in _FLOAT_FMT:
        if not isinstance(x, str) or len(x) != (8 if code == "f" else 16):
            raise FrameError("bad float encoding")
        return struct.unpack(_FLOAT_FMT[code], bytes.fromhex(x))[0]
    if code == "?":
        if not isinstance(x, bool):
            raise FrameError("bad bool")
        return x
    if code == "s":
        if not isinstance(x, str):
            raise FrameError("bad string")
        return x
    lo, hi = _INT_RANGES[code]
    if type(x) is not int or not lo <= x <= hi:
        raise FrameError(f"integer {x!r} out of range for type {code!r}")
    return x


class _Decoder:
    def __init__(self, blobs, budget):
        self.blobs = blobs
        self.used = set()
        self.budget = budget

    def blob(self, x, code):
        if type(x) is not int or not 0 <= x < len(self.blobs) or x in self.used:
            raise FrameError("bad array reference")
        self.used.add(x)
        buf = self.blobs[x]
        dt = _ARRAY_DTYPE[code]
        if len(buf) % dt.itemsize:
            raise FrameError("array length not a multiple of its element size")
        return np.frombuffer(buf, dt)

    def struct(self, fields, x, depth):
        if depth > _MAX_DEPTH:
            raise FrameError("value nested too deeply")
        if not isinstance(x, list) or len(x) != len(fields):
            raise FrameError("structure of the wrong length")
        return {name: self.field(spec, item, depth) for (name, spec), item in zip(fields, x)}

    def field(self, spec, x, depth):
        self.budget.tick()
        if isinstance(spec, str):
            if len(spec) == 1 and spec in _SCALAR_CODES:
                return _dec_scalar(spec, x)
            if spec in _ARRAY_DTYPE:
                return self.blob(x, spec)
            if spec == "as":
                if not isinstance(x, list) or not all(isinstance(s, str) for s in x):
                    raise FrameError("bad string array")
                return x
            if spec == "v":
                return None if x is None else self.variant(x, depth)
            if spec == "av":
                if not isinstance(x, list):
                    raise FrameError("bad variant array")
                return [None if e is None else self.variant(e, depth) for e in x]
        kind = spec[0]
        if kind == "S":
            return self.struct(spec[2], x, depth + 1)
        if kind == "aS":
            if not isinstance(x, list):
                raise FrameError("bad structure array")
            return [None if e is None else self.struct(spec[2], e, depth + 1) for e in x]
        if kind == "U":
            if x is None:
                return None
            if not (isinstance(x, list) and len(x) == 2 and isinstance(x[0], str)):
                raise FrameError("bad union")
            mspec = dict(spec[2]).get(x[0])
            if mspec is None:
                raise FrameError(f"union has no member {x[0]!r}")
            return (x[0], self.any(mspec, x[1], depth))
        raise FrameError(f"unsupported type {kind!r}")

    def variant(self, x, depth):
        if not (isinstance(x, list) and len(x) == 2):
            raise FrameError("bad variant")
        spec = _check_spec(x[0], depth + 1, self.budget)
        if spec == "v" or spec == "av" or (not isinstance(spec, str) and spec[0] in ("U", "aU")):
            raise FrameError("unsupported variant content")
        if isinstance(spec, str):
            return (spec, self.field(spec, x[1], depth + 1))
        if spec[0] == "S":
            return Value(Type(spec[2], id=spec[1]), self.struct(spec[2], x[1], depth + 1))
        return (spec, self.field(spec, x[1], depth + 1))

    def any(self, spec, x, depth):
        if not isinstance(spec, str) and spec[0] == "S":
            return self.struct(spec[2], x, depth + 1)
        return self.field(spec, x, depth + 1)


_TYPE_CACHE_SIZE = 8
_type_cache: "OrderedDict[bytes, tuple]" = OrderedDict()
_type_cache_lock = threading.Lock()


def _type_for(type_json: bytes):
    with _type_cache_lock:
        hit = _type_cache.get(type_json)
        if hit is not None:
            _type_cache.move_to_end(type_json)
            return hit
    spec = _check_spec(json.loads(type_json))
    if spec[0] != "S":
        raise FrameError("the top level must be a structure")
    entry = (spec, Type(spec[2], id=spec[1]))
    with _type_cache_lock:
        _type_cache[bytes(type_json)] = entry
        while len(_type_cache) > _TYPE_CACHE_SIZE:
            _type_cache.popitem(last=False)
    return entry


def deserialize_value(buf) -> Value:
    """Inverse of :func:`serialize_value`; FrameError for anything that is
    not exactly such a plaintext. Arrays are views of ``buf`` until the
    Value is built (p4p copies them)."""
    mv = memoryview(buf).cast("B")
    total = len(mv)
    if total < _PT_HEADER.size:
        raise FrameError("plaintext too short")
    magic, version, flags, zero, type_len, tree_len, n_blobs = _PT_HEADER.unpack_from(mv, 0)
    if magic != PLAINTEXT_MAGIC or version != PLAINTEXT_VERSION or flags or zero:
        raise FrameError("not a pvagpu plaintext of version 1")
    pos = _PT_HEADER.size
    if n_blobs > (total - pos) // 8:
        raise FrameError("bad array count")
    lengths = struct.unpack_from(f"<{n_blobs}Q", mv, pos)
    pos += 8 * n_blobs
    if type_len > total - pos or tree_len > total - pos - type_len:
        raise FrameError("bad header lengths")
    type_json = bytes(mv[pos:pos + type_len])
    pos += type_len
    tree_json = bytes(mv[pos:pos + tree_len])
    pos += tree_len
    pad = -pos % 8
    if bytes(mv[pos:pos + pad]) != bytes(pad):
        raise FrameError("bad padding")
    pos += pad
    blobs = []
    for n in lengths:
        pad = -n % 8
        if n > total - pos or pad > total - pos - n:
            raise FrameError("array runs past the end")
        blobs.append(mv[pos:pos + n])
        if bytes(mv[pos + n:pos + n + pad]) != bytes(pad):
            raise FrameError("bad padding")
        pos += n + pad
    if pos != total:
        raise FrameError("trailing bytes after the last array")
    try:
        spec, typ = _type_for(type_json)
        tree = json.loads(tree_json)
        budget = _Budget()
        dec = _Decoder(blobs, budget)
        fields = dec.struct(spec[2], tree, 0)
        if len(dec.used) != len(blobs):
            raise FrameError("unreferenced arrays")
        return Value(typ, fields)
    except FrameError:
        raise
    except (ValueError, TypeError, KeyError, RecursionError, RuntimeError, OverflowError) as exc:
        raise FrameError(f"plaintext does not describe a valid object: "
                         f"{type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------
# The envelope
# ---------------------------------------------------------------------------

ENVELOPE_VERSION = 1
NTNDARRAY_ENVELOPE_ID = "pvagpu:EncryptedNTNDArray:1"
DATA_ENVELOPE_ID = "pvagpu:EncryptedData:1"
KEY_ID_BYTES = 16
NONCE_BYTES = 12
#: seconds a sender's clock may be ahead of the receiver's for a key epoch
MAX_CLOCK_SKEW = 300.0
TAG_BYTES = 16

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


_ENVELOPE_TYPES = {sid: envelope_type(sid) for sid in (NTNDARRAY_ENVELOPE_ID, DATA_ENVELOPE_ID)}

_KEY_RECORD = struct.Struct(">4sB16sQ32s")  # magic, version, key id, epoch start ns, AES key
_KEY_MAGIC = b"PVGK"


def _lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _aad_head(version: int, structure_id: str, channel: str) -> bytes:
    return b"".join((b"pvagpu-aad\x00", struct.pack(">I", version), _lp(structure_id.encode()),
                     _lp(channel.encode())))


_AAD_FRAME = struct.Struct(">iqiiqiiQ")


def _aad_frame(unique_id, time_stamp, data_time_stamp, counter, dtype, dims, codec) -> bytes:
    return b"".join((_AAD_FRAME.pack(unique_id, *time_stamp, *data_time_stamp, counter),
                     _lp(dtype.encode()), _lp(struct.pack(f">{len(dims)}i", *dims)),
                     _lp(codec.encode())))


def _aad_tail(recipient: str, signer: str, algorithm: str, key_id: bytes,
              wrapped_key: bytes) -> bytes:
    return b"".join((_lp(recipient.encode()), _lp(signer.encode()), _lp(algorithm.encode()),
                     _lp(key_id), _lp(wrapped_key)))


def associated_data(h: dict) -> bytes:
    """The canonical bytes of the clear fields that AES-GCM authenticates:
    the per-stream head, the per-frame fields and the per-key-epoch tail
    (the sealer keeps head and tail between frames)."""
    return b"".join((
        _aad_head(h["version"], h["id"], h["channel"]),
        _aad_frame(h["uniqueId"], h["timeStamp"], h["dataTimeStamp"], h["counter"],
                   h["dtype"], h["dims"], h["codec"]),
        _aad_tail(h["recipient"], h["signer"], h["signatureAlgorithm"], h["keyId"],
                  h["wrappedKey"]),
    ))


def signed_message(aad: bytes, nonce: bytes, ciphertext) -> bytes:
    """What the signature covers: the associated data, the nonce and the
    SHA-256 digest of the ciphertext (tag included)."""
    return b"pvagpu-sig\x00" + _lp(aad) + _lp(bytes(nonce)) + hashlib.sha256(ciphertext).digest()


def _stamp_of_items(fields: dict, name: str) -> tuple:
    """(seconds, nanoseconds, userTag) of time_t field ``name`` of
    ``dict(value.tolist())``; zeros if there is none."""
    s = fields.get(name)
    if s is None:
        return (0, 0, 0)
    s = dict(s)
    return (int(s["secondsPastEpoch"]), int(s["nanoseconds"]), int(s["userTag"]))


#: numpy dtype -> its name (``dtype.name`` is computed in Python on every call)
_DTYPE_NAMES = {row.dtype: row.dtype.name for row in ntnda.SCALAR_TYPES if row.dtype is not None}


def ntndarray_summary(value: Value) -> tuple:
    """(dtype name, dims, codec name) of an NTNDArray (uncompressed dtype)."""
    return _summary_of_fields(dict(value.tolist()))


def _summary_of_fields(fields: dict) -> tuple:
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


class _Epoch:
    __slots__ = ("key_id", "key", "created_ns", "counter", "wrapped", "started",
                 "algorithm", "key_id_array", "wrapped_array", "aad_tail")

    def __init__(self, recipient):
        self.key_id = os.urandom(KEY_ID_BYTES)
        self.key = os.urandom(32)
        self.created_ns = time.time_ns()
        self.started = time.monotonic()
        self.counter = 0
        record = _KEY_RECORD.pack(_KEY_MAGIC, 1, self.key_id, self.created_ns, self.key)
        self.wrapped = recipient.encrypt(record, _OAEP)
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
        self.type = _ENVELOPE_TYPES.get(structure_id) or envelope_type(structure_id)
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
            summary = _summary_of_fields(fields)
        dtype, dims, codec = summary if summary is not None else ("", [], "")
        oid = int(fields.get("uniqueId", 0))
        ts = _stamp_of_items(fields, "timeStamp")
        dts = _stamp_of_items(fields, "dataTimeStamp")
        channel = channel or ""
        if epoch.aad_tail is None:
            epoch.aad_tail = _aad_tail(self.recipient_fp, self.signer_fp, self.sig_alg,
                                       epoch.key_id, epoch.wrapped)
        aad = b"".join((_aad_head(ENVELOPE_VERSION, self.structure_id, channel),
                        _aad_frame(oid, ts, dts, epoch.counter, dtype, dims, codec),
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
        signature = _EMPTY_U8
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


_EMPTY_U8 = np.empty(0, np.uint8)
_EMPTY_U8.flags.writeable = False


def _u8(arr, name: str) -> np.ndarray:
    if arr is None:  # p4p gives None for an empty array
        return _EMPTY_U8
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8:
        raise EnvelopeRejected("Malformed", f"field {name!r} is not a ubyte array")
    return arr


class EnvelopeOpener:
    """Opens envelopes made for ``private_key`` (the receiver's RSA key).

    ``verify_key``: the sender's public key; when given, every envelope must
    carry a valid signature by it. ``expected_channel``: the channel the
    envelope must be bound to (None: any). ``structure_ids``: accepted
    structure IDs.

    Replay rules: the decryptor keeps the newest key epoch it accepted
    (ordered by the epoch start time inside the wrapped key record, then key
    id) and the last accepted frame counter of each epoch it still knows.
    A frame is accepted only if its counter is strictly greater than the
    last accepted one of its epoch; frames of an epoch older than the newest
    accepted epoch are rejected (StaleKey). A restarted encryptor starts a
    new epoch (new key id, counter from 1), which is accepted because it is
    newer. With ``max_key_age`` > 0, epochs started longer ago than that
    (by the sender's clock) are rejected too, which bounds what can be
    replayed to a decryptor that restarted and lost its state.

    Nothing is remembered from an envelope that fails any check."""

    KEY_CACHE_SIZE = 8

    def __init__(self, private_key, verify_key=None, *, expected_channel: Optional[str] = None,
                 structure_ids=(NTNDARRAY_ENVELOPE_ID, DATA_ENVELOPE_ID),
                 max_key_age: float = 0.0):
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
        self._keys = OrderedDict()      # (key id, wrapped) -> (AESGCM, created ns)
        self._last = OrderedDict()      # key id -> last accepted counter
        self._newest = None             # (created ns, key id) of the newest accepted epoch
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
            h["timeStamp"] = _stamp_of_items(f, "timeStamp")
            h["dataTimeStamp"] = _stamp_of_items(f, "dataTimeStamp")
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
        if h["ciphertext"].nbytes < TAG_BYTES + _PT_HEADER.size:
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
            self._check_fresh(h, created)
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
            self._accept(h, aead, created)
        return value

    def _unwrap(self, h):
        cache_key = (h["keyId"], h["wrappedKey"])
        hit = self._keys.get(cache_key)
        if hit is not None:
            return hit
        try:
            record = self.private_key.decrypt(h["wrappedKey"], _OAEP)
        except ValueError:
            raise EnvelopeRejected("WrappedKey", "the wrapped key does not unwrap with this "
                                   "private key") from None
        if len(record) != _KEY_RECORD.size:
            raise EnvelopeRejected("WrappedKey", "key record of the wrong length")
        magic, version, key_id, created, key = _KEY_RECORD.unpack(record)
        if magic != _KEY_MAGIC or version != 1 or key_id != h["keyId"]:
            raise EnvelopeRejected("WrappedKey", "key record not for this key id")
        return AESGCM(key), created

    def _check_fresh(self, h, created):
        # an epoch dated in the future would become the newest one and lock
        # out every real epoch (StaleKey) until the decryptor restarts
        ahead = created - time.time_ns()
        if ahead > MAX_CLOCK_SKEW * 1e9:
            raise EnvelopeRejected("StaleKey", f"key epoch starts {ahead / 1e9:.0f} s in the "
                                   f"future (more than {MAX_CLOCK_SKEW:g} s of clock skew)")
        if self.max_key_age > 0 and time.time_ns() - created > self.max_key_age * 1e9:
            raise EnvelopeRejected("StaleKey", f"key epoch started "
                                   f"{(time.time_ns() - created) / 1e9:.0f} s ago "
                                   f"(maxKeyAge {self.max_key_age:g} s)")
        epoch = (created, h["keyId"])
        if self._newest is not None and epoch < self._newest:
            raise EnvelopeRejected("StaleKey", "key epoch older than the newest accepted one")
        last = self._last.get(h["keyId"])
        if last is not None and h["counter"] <= last:
            raise EnvelopeRejected("Replay", f"frame counter {h['counter']} not above "
                                   f"{last}, the last accepted of key epoch "
                                   f"{h['keyId'].hex()[:8]}")

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

    def _accept(self, h, aead, created):
        kid = h["keyId"]
        self._keys[(kid, h["wrappedKey"])] = (aead, created)
        self._keys.move_to_end((kid, h["wrappedKey"]))
        while len(self._keys) > self.KEY_CACHE_SIZE:
            self._keys.popitem(last=False)
        self._last[kid] = h["counter"]
        self._last.move_to_end(kid)
        while len(self._last) > self.KEY_CACHE_SIZE:
            self._last.popitem(last=False)
        epoch = (created, kid)
        if self._newest is None or epoch > self._newest:
            self._newest = epoch
