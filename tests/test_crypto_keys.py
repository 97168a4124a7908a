"""pvagpu.crypto.keys: key files, wrapping, signatures, fingerprints."""
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from pvagpu.crypto import keys
from pvagpu.crypto.errors import KeyFileError


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for kind in ("rsa", "ed25519"):
        keys.generate_key_pair(d / f"{kind}.pem", d / f"{kind}.pub.pem", kind=kind, bits=2048)
        out[kind] = (d / f"{kind}.pem", d / f"{kind}.pub.pem")
    return out


def test_generated_pairs_load_back_and_the_private_file_is_private(pairs):
    for kind, cls in (("rsa", rsa.RSAPrivateKey), ("ed25519", ed25519.Ed25519PrivateKey)):
        private, public = pairs[kind]
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
        key = keys.load_private_key(private)
        assert isinstance(key, cls)
        # the fingerprint names the key pair: the same from either half and either file
        fp = keys.fingerprint(key)
        assert len(fp) == 16 and int(fp, 16) >= 0
        assert fp == keys.fingerprint(keys.load_public_key(public))
        assert fp == keys.fingerprint(keys.load_public_key(private))   # pvapy's single key
    assert keys.fingerprint(keys.load_private_key(pairs["rsa"][0])) != \
        keys.fingerprint(keys.load_private_key(pairs["ed25519"][0]))


@pytest.mark.parametrize("kind,algorithm", [("ed25519", "ed25519"), ("rsa", "rsa-pss-sha256")])
def test_sign_and_verify(pairs, kind, algorithm):
    private = keys.load_private_key(pairs[kind][0])
    public = keys.load_public_key(pairs[kind][1])
    assert keys.signature_algorithm(private) == keys.signature_algorithm(public) == algorithm
    sig = keys.sign(private, b"message")
    assert keys.verify(public, sig, b"message")
    assert not keys.verify(public, sig, b"messagE")
    assert not keys.verify(public, sig[:-1] + bytes([sig[-1] ^ 1]), b"message")
    assert not keys.verify(public, b"", b"message")


def test_key_records_unwrap_only_with_their_key(pairs, tmp_path):
    private = keys.load_private_key(pairs["rsa"][0])
    record = bytes(range(61))
    wrapped = keys.wrap_key_record(keys.load_public_key(pairs["rsa"][1]), record)
    assert wrapped != keys.wrap_key_record(private.public_key(), record)    # randomised
    assert keys.unwrap_key_record(private, wrapped) == record
    other = keys.generate_key_pair(tmp_path / "other.pem", bits=2048)
    with pytest.raises(ValueError):
        keys.unwrap_key_record(other, wrapped)
    with pytest.raises(ValueError):
        keys.unwrap_key_record(private, wrapped[:-1] + bytes([wrapped[-1] ^ 1]))


def test_only_rsa_wraps_keys(pairs):
    rsa_key = keys.load_public_key(pairs["rsa"][1])
    assert keys.require_rsa(rsa_key, "recipient") is rsa_key
    with pytest.raises(KeyFileError, match="must be an RSA key"):
        keys.require_rsa(keys.load_public_key(pairs["ed25519"][1]), "recipient", "x.pem")


def test_key_file_errors(tmp_path, pairs):
    with pytest.raises(KeyFileError, match="no key file given"):
        keys.load_private_key("")
    with pytest.raises(KeyFileError, match="does not exist"):
        keys.load_public_key(tmp_path / "missing.pem")
    (tmp_path / "text.pem").write_text("hello")
    with pytest.raises(KeyFileError, match="not a PEM file"):
        keys.load_private_key(tmp_path / "text.pem")
    with pytest.raises(KeyFileError, match="no usable private key"):
        keys.load_private_key(pairs["rsa"][1])    # a public key where a private one is needed
    assert issubclass(KeyFileError, ValueError)
