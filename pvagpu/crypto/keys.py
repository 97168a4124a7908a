"""Key files and the operations on keys: load and check PEM files, wrap and
unwrap the AES key records (RSA-OAEP), sign and verify (Ed25519 or RSA-PSS),
fingerprints, and making new key pairs.

pvagpu uses RSA keys (at least :data:`MIN_RSA_BITS` bits) to wrap the AES
keys and RSA or Ed25519 keys to sign; anything else is a
:class:`~pvagpu.crypto.errors.KeyFileError`.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from .errors import KeyFileError

MIN_RSA_BITS = 2048
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                     label=b"pvagpu-wrapped-key-1")
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


# -- key files ---------------------------------------------------------------

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


# -- what is done with keys --------------------------------------------------

def fingerprint(key) -> str:
    """16 hex digits identifying a key: SHA-256 of its public key (DER)."""
    pub = key.public_key() if hasattr(key, "public_key") else key
    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def wrap_key_record(recipient, record: bytes) -> bytes:
    """``record`` encrypted for RSA public key ``recipient`` (RSA-OAEP,
    SHA-256, MGF1-SHA-256, label ``pvagpu-wrapped-key-1``)."""
    return recipient.encrypt(record, _OAEP)


def unwrap_key_record(private_key, wrapped: bytes) -> bytes:
    """Inverse of :func:`wrap_key_record`; ValueError if ``wrapped`` was not
    made for ``private_key`` or was altered."""
    return private_key.decrypt(wrapped, _OAEP)


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
