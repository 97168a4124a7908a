"""Key files and the operations on keys: load and check PEM files, wrap and
unwrap the AES key records (RSA-OAEP), sign and verify (Ed25519 or RSA-PSS),
fingerprints, and making new key pairs.

pvagpu uses RSA keys (at least :data:`MIN_RSA_BITS` bits) to wrap the AES
keys and RSA or Ed25519 keys to sign; anything else is a
:class:`~pvagpu.crypto.errors.KeyFileError`. A private key file that group
or others can read is loaded with a warning in the log (not refused:
``chmod 600`` it); :func:`generate_key_pair` writes private keys 0600,
atomically, never through a link.
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from .errors import KeyFileError

log = logging.getLogger(__name__)

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
    _warn_if_readable_by_others(path, what)
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


def _warn_if_readable_by_others(path, what: str) -> None:
    """A private key file that group or others may read is logged as a
    warning (not refused: a shared setup may rely on a group, and the
    operator decides); ``chmod 600`` silences it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s: private key file %r is readable by group or others (mode %o); "
                    "chmod 600 it", what, str(path), stat.S_IMODE(mode))


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
    public key (PEM); for tests, benchmarks and first setups.

    Each file is written to a new temporary file in the same directory
    (created 0600 with O_EXCL and O_NOFOLLOW: never through a link, never
    with the mode of a file already there) and then renamed over the
    target, so a link planted at the target is replaced, not followed, and
    a reader sees the old file or the whole new one."""
    key = (ed25519.Ed25519PrivateKey.generate() if kind == "ed25519"
           else rsa.generate_private_key(public_exponent=65537, key_size=bits))
    _write_atomically(private_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), 0o600)
    if public_path:
        _write_atomically(public_path, key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    return key


def _write_atomically(path, data: bytes, mode: int) -> None:
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o600)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 64 random bits
        raise FileExistsError(f"cannot create a temporary file next to {str(path)!r}")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode != 0o600:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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


def signature_size(key) -> int:
    """Bytes of a signature by ``key`` (either half): 64 for Ed25519, the
    modulus size for RSA-PSS."""
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return 64
    return (key.key_size + 7) // 8


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
