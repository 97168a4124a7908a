"""The authenticated envelope (pvagpu.crypto) and the encryptor/decryptor
processors: round trips, tampering, replay, rotation, keys, malformed input."""
import random
import struct
import time

import numpy as np
import pytest
from p4p import Type, Value

from _value_cases import frame, same
from pvagpu import codecs, crypto
from pvagpu.crypto import sealer as sealer_module
from pvagpu.errors import CodecError, ConfigurationError
from pvagpu.hpc import (AdImageDataDecryptor, AdImageDataEncryptor, DataDecryptor,
                        DataEncryptor)
from pvagpu.pva import serialize

CHANNEL = "enc:image"


class Capture:
    """A dataPublisher that keeps what is published."""

    def __init__(self):
        self.values = []

    def updateOutputChannel(self, value):
        self.values.append(value)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    paths = {}
    for name, kind in (("receiver", "rsa"), ("sender", "ed25519"), ("other", "rsa"),
                       ("sender_rsa", "rsa")):
        crypto.generate_key_pair(d / f"{name}.pem", d / f"{name}.pub.pem", kind=kind, bits=2048)
        paths[name] = str(d / f"{name}.pem")
        paths[name + ".pub"] = str(d / f"{name}.pub.pem")
    paths["dir"] = d
    return paths


def pair(keys, sign=False, cls=(AdImageDataEncryptor, AdImageDataDecryptor), **enc_extra):
    enc = cls[0]({"privateKeyFilePath": keys["sender"], "publicKeyFilePath": keys["receiver.pub"],
                  "sign": sign, **enc_extra})
    dec = cls[1]({"privateKeyFilePath": keys["receiver"], "publicKeyFilePath": keys["sender.pub"],
                  "verify": sign})
    enc.outputChannel = dec.inputChannel = CHANNEL
    enc.dataPublisher, dec.dataPublisher = Capture(), Capture()
    return enc, dec


def fields_of(value: Value) -> dict:
    """The fields of a Value as a dict (p4p gives None for empty arrays)."""
    return {k: value[k] for k in value.keys() if value[k] is not None}


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------

DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
          np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip_every_dtype_and_codec(keys, dtype):
    enc, dec = pair(keys)
    n = 0
    for codec in [""] + codecs.names():
        try:
            src = frame(dtype, codec=codec, uid=100 + n)
        except CodecError:
            continue  # e.g. jpeg holds 8-bit pixels only
        envelope = enc.process(src)
        assert envelope.getID() == crypto.NTNDARRAY_ENVELOPE_ID
        assert envelope["codec"] == codec and envelope["dtype"] == np.dtype(dtype).name
        out = dec.process(envelope)
        assert same(out, src), codec
        assert dec.dataPublisher.values[-1] is out
        n += 1
    assert n >= 2 and dec.nDecrypted == enc.nEncrypted == n


@pytest.mark.parametrize("mode", [2, 3, 4])
def test_round_trip_colour_frames_and_signed(keys, mode):
    enc, dec = pair(keys, sign=True)
    src = frame(np.uint8, shape=(5, 7, 3), color_mode=mode)
    assert same(dec.process(enc.process(src)), src)


def test_round_trip_of_any_structure_with_data_encryptor(keys):
    enc, dec = pair(keys, cls=(DataEncryptor, DataDecryptor))
    T = Type([("uniqueId", "i"), ("u", ("U", "u_t", [("a", "i"), ("b", "s"), ("c", "ad")])),
              ("v1", "v"), ("v2", "v"), ("v3", "v"), ("v4", "v"), ("names", "as"),
              ("flags", "a?"), ("nested", ("aS", "item_t", [("x", "h"), ("y", "v")])),
              ("empty", "v"), ("e", "aL"),
              # a union member that only the Value can tell (two integer members)
              ("u2", ("U", "u2_t", [("a", "i"), ("b", "I"), ("s", ("S", "m_t", [("f", "f")]))])),
              ("u3", ("U", "u3_t", [("a", "i"), ("s", ("S", "m_t", [("f", "f")]))])),
              ("va", "av"), ("point", ("S", "p_t", [("x", "d"), ("label", "s")]))],
             id="my:thing:1")
    src = Value(T, {"uniqueId": 3, "u": ("c", np.array([1.5, -2.0])), "v1": ("H", 65535),
                    "v2": np.arange(4, dtype=np.int64), "v3": ["x", "y"],
                    "v4": Value(Type([("q", "B")], id="q_t"), {"q": 9}), "names": ["n", ""],
                    "flags": np.array([True, False]),
                    "nested": [{"x": -1, "y": ("I", 7)}, {"x": 2, "y": "s"}],
                    "e": np.array([2 ** 64 - 1], np.uint64), "u2": ("b", 4000000000),
                    "u3": ("s", {"f": 0.5}),
                    "va": [Value(Type([("z", "l")], id="z_t"), {"z": -2}), np.array([1, 2], np.int16),
                           "text", True],
                    "point": {"x": float("inf"), "label": "p"}})
    envelope = enc.process(src)
    assert envelope.getID() == crypto.DATA_ENVELOPE_ID and envelope["dims"] is None
    out = dec.process(envelope)
    assert out.type().aspy() == src.type().aspy() and out.tostr() == src.tostr()
    # the AdImage decryptor takes NTNDArray envelopes only
    _, addec = pair(keys)
    with pytest.raises(crypto.EnvelopeRejected) as err:
        addec.process(enc.process(src))
    assert err.value.reason == "Version"


# ---------------------------------------------------------------------------
# Tampering: 1000 single-bit flips over the whole envelope
# ---------------------------------------------------------------------------

def _fields_as_bits(envelope):
    """Field name -> (bytes, rebuild(bytes) -> field value), for every field
    that a bit flip can reach (empty fields have no bits)."""
    out = {}
    for name, code in crypto.ENVELOPE_FIELDS:
        val = envelope[name]
        if code == "aB" or code == "ai":
            if val is not None and val.nbytes:
                arr = val
                out[name] = (arr.tobytes(), lambda b, dt=arr.dtype: np.frombuffer(b, dt))
        elif code == "s":
            if val:
                out[name] = (val.encode("ascii"), lambda b: b.decode("ascii"))
        elif code in ("I", "i", "L"):
            fmt = {"I": "<I", "i": "<i", "L": "<Q"}[code]
            out[name] = (struct.pack(fmt, val), lambda b, f=fmt: struct.unpack(f, b)[0])
        else:  # time_t
            for sub in ("secondsPastEpoch", "nanoseconds", "userTag"):
                fmt = "<q" if sub == "secondsPastEpoch" else "<i"
                out[f"{name}.{sub}"] = (struct.pack(fmt, val[sub]),
                                        lambda b, f=fmt: struct.unpack(f, b)[0])
    return out


def _flipped(envelope, field, data, rebuild, bit, ascii_only):
    b = bytearray(data)
    if ascii_only:  # keep strings valid: flip one of the 7 low bits of a character
        byte, sub = divmod(bit, 7)
    else:
        byte, sub = divmod(bit, 8)
    b[byte] ^= 1 << sub
    values = fields_of(envelope)
    if "." in field:
        top, sub_name = field.split(".")
        values[top] = dict(envelope[top].items()) | {sub_name: rebuild(bytes(b))}
    else:
        values[field] = rebuild(bytes(b))
    return Value(envelope.type(), values)


@pytest.mark.parametrize("signed", [False, True])
def test_every_single_bit_flip_is_rejected(keys, signed):
    enc, dec = pair(keys, sign=signed)
    src = frame(np.uint16, shape=(8, 8))
    envelope = enc.process(src)
    opener = dec.opener
    opener.expected_channel = CHANNEL
    assert same(opener.open(envelope, commit=False), src)
    fields = _fields_as_bits(envelope)
    rng = random.Random(1234 + signed)
    names = sorted(fields)
    reasons = {}
    for i in range(500):
        name = names[i % len(names)]
        data, rebuild = fields[name]
        ascii_only = dict(crypto.ENVELOPE_FIELDS).get(name) == "s"
        nbits = len(data) * (7 if ascii_only else 8)
        tampered = _flipped(envelope, name, data, rebuild, rng.randrange(nbits), ascii_only)
        with pytest.raises(crypto.EnvelopeRejected) as err:
            opener.open(tampered, commit=False)
        reasons[err.value.reason] = reasons.get(err.value.reason, 0) + 1
    assert sum(reasons.values()) == 500
    if signed:
        assert set(reasons) <= {"Signature", "Channel", "Recipient", "Version", "Malformed"}
    else:
        assert "Authentication" in reasons and "WrappedKey" in reasons
    # untouched, it still opens
    assert same(opener.open(envelope), src)


def test_tampered_processor_frames_are_counted_and_the_stream_goes_on(keys):
    enc, dec = pair(keys)
    frames = [frame(uid=i, seed=i) for i in range(1, 5)]
    envelopes = [enc.process(f) for f in frames]
    bad = _flipped(envelopes[1], "ciphertext", *_fields_as_bits(envelopes[1])["ciphertext"],
                   bit=100, ascii_only=False)
    for env in (envelopes[0], bad, envelopes[2], envelopes[2], envelopes[3]):
        try:
            dec.process(env)
        except crypto.EnvelopeRejected:
            pass
    assert [int(v["uniqueId"]) for v in dec.dataPublisher.values] == [1, 3, 4]
    stats = dec.getStats()
    assert stats["nDecrypted"] == 3 and stats["nRejected"] == 2
    assert stats["nRejectedAuthentication"] == 1 and stats["nRejectedReplay"] == 1
    assert set(stats) == set(dec.getStatsPvaTypes())
    assert set(enc.getStats()) == set(enc.getStatsPvaTypes())
    dec.resetStats()
    assert dec.getStats()["nRejected"] == 0


# ---------------------------------------------------------------------------
# Replay, reorder, rotation, restart, wrong keys
# ---------------------------------------------------------------------------

def reason_of(dec, envelope):
    with pytest.raises(crypto.EnvelopeRejected) as err:
        dec.process(envelope)
    return err.value.reason


def test_replay_and_reorder_are_rejected(keys):
    enc, dec = pair(keys)
    e1, e2, e3 = (enc.process(frame(uid=i)) for i in (1, 2, 3))
    dec.process(e1)
    assert reason_of(dec, e1) == "Replay"
    dec.process(e3)
    assert reason_of(dec, e2) == "Replay"       # reordered: arrives after a later frame
    # a copy of a good frame under another uniqueId does not authenticate
    forged = Value(e3.type(), fields_of(e3) | {"uniqueId": 4, "counter": 4})
    assert reason_of(dec, forged) == "Authentication"


def test_key_rotation_while_frames_flow(keys):
    enc, dec = pair(keys, keyRotationFrames=3)
    key_ids = []
    for uid in range(1, 11):
        env = enc.process(frame(uid=uid))
        key_ids.append(env["keyId"].tobytes())
        assert int(dec.process(env)["uniqueId"]) == uid
    assert len(set(key_ids)) == 4 and enc.getStats()["nKeyRotations"] == 4
    assert dec.nDecrypted == 10
    # time-based rotation
    enc.configure({"keyRotationInterval": 1e-9})
    e_a, e_b = enc.process(frame(uid=11)), enc.process(frame(uid=12))
    assert e_a["keyId"].tobytes() != e_b["keyId"].tobytes()
    dec.process(e_a)
    dec.process(e_b)
    # a frame of an older key epoch, after a newer one, is stale
    assert reason_of(dec, e_a) in ("StaleKey", "Replay")
    old = Value(e_a.type(), fields_of(e_a))
    assert reason_of(dec, old) in ("StaleKey", "Replay")


def test_stale_epoch_and_encryptor_restart(keys):
    """Signed streams: an older epoch of the sender is over once a newer one
    was accepted (unsigned streams keep each epoch's counter instead, see
    test_crypto_hardening)."""
    enc1, dec = pair(keys, sign=True)
    early = [enc1.process(frame(uid=i)) for i in (1, 2)]
    enc2, _ = pair(keys, sign=True)              # a restarted encryptor: new epoch
    dec.process(early[0])
    later = enc2.process(frame(uid=1))
    assert int(dec.process(later)["uniqueId"]) == 1   # counter starts again, accepted
    assert reason_of(dec, early[1]) == "StaleKey"     # the old epoch is over


def test_replay_protection_survives_configure(keys):
    """The decryptor owns the replay state of its receiver key and hands it
    to every opener it makes: what it accepted stays a replay after
    configure(); another receiver key starts with a state of its own."""
    enc, dec = pair(keys)
    e1, e2 = enc.process(frame(uid=1)), enc.process(frame(uid=2))
    dec.process(e2)
    guard, opener = dec.replay_guard, dec.opener
    dec.configure({"maxKeyAge": 3600, "verify": False})
    assert dec.opener is not opener and dec.opener.replay_guard is guard
    assert reason_of(dec, e2) == "Replay"
    assert reason_of(dec, e1) == "Replay"             # reordered, after the configure
    # a failed configure changes nothing
    with pytest.raises(ConfigurationError):
        dec.configure({"privateKeyFilePath": keys["sender"]})
    assert dec.replay_guard is guard and reason_of(dec, e2) == "Replay"
    # another receiver key: a new guard, and an opener refuses a guard of another key
    dec.configure({"privateKeyFilePath": keys["other"]})
    assert dec.replay_guard is not guard
    assert dec.replay_guard.receiver == dec.opener.my_fp == crypto.fingerprint(
        crypto.load_private_key(keys["other"]))
    with pytest.raises(ValueError, match="replay guard"):
        crypto.EnvelopeOpener(crypto.load_private_key(keys["receiver"]),
                              replay_guard=dec.replay_guard)
    # back to the receiver key: its guard again (what it accepted stays a replay)
    dec.configure({"privateKeyFilePath": keys["receiver"]})
    assert dec.replay_guard is guard and reason_of(dec, e2) == "Replay"
    assert int(dec.process(enc.process(frame(uid=3)))["uniqueId"]) == 3


def test_wrong_keys_are_rejected(keys):
    enc, _ = pair(keys)
    env = enc.process(frame())
    other = AdImageDataDecryptor({"privateKeyFilePath": keys["other"], "verify": False})
    other.inputChannel = CHANNEL
    assert reason_of(other, env) == "Recipient"
    # even with the recipient fingerprint forged, the wrapped key does not open
    forged = Value(env.type(), fields_of(env) |
                   {"recipient": other.opener.my_fp})
    assert reason_of(other, forged) == "WrappedKey"
    # signed by the sender, verified against another key
    enc_s, _ = pair(keys, sign=True)
    dec_v = AdImageDataDecryptor({"privateKeyFilePath": keys["receiver"],
                                  "publicKeyFilePath": keys["sender_rsa.pub"], "verify": True})
    dec_v.inputChannel = CHANNEL
    assert reason_of(dec_v, enc_s.process(frame())) == "Signature"
    assert reason_of(dec_v, env) == "Signature"          # unsigned, but verify is on
    # wrong channel
    dec_c = AdImageDataDecryptor({"privateKeyFilePath": keys["receiver"], "verify": False,
                                  "allowDowngrade": True})
    dec_c.inputChannel = "another:channel"
    assert reason_of(dec_c, env) == "Channel"
    dec_c.configure({"expectedChannel": "*"})
    assert same(dec_c.process(env), frame())


def test_rsa_pss_signatures_and_pvapy_single_key_setup(keys):
    # pvapy style: one RSA key pair on both ends, sign/verify with it
    enc = AdImageDataEncryptor({"privateKeyFilePath": keys["receiver"], "sign": True})
    dec = AdImageDataDecryptor({"privateKeyFilePath": keys["receiver"], "verify": True})
    enc.outputChannel = dec.inputChannel = CHANNEL
    env = enc.process(frame())
    assert env["signatureAlgorithm"] == "rsa-pss-sha256" and env["signature"].size == 256
    assert same(dec.process(env), frame())


# ---------------------------------------------------------------------------
# Malformed objects
# ---------------------------------------------------------------------------

def test_malformed_and_truncated_objects_are_rejected(keys):
    enc, dec = pair(keys)
    env = enc.process(frame())
    fields = fields_of(env)
    assert reason_of(dec, frame()) == "Version"                      # not an envelope
    assert reason_of(dec, Value(crypto.envelope_type(), {})) in ("Version", "Malformed")
    ct = env["ciphertext"]
    for cut in (ct[:-1], ct[:10], ct[:0]):
        assert reason_of(dec, Value(env.type(), fields | {"ciphertext": cut})) in (
            "Authentication", "Malformed")
    assert reason_of(dec, Value(env.type(), fields | {"nonce": env["nonce"][:8]})) == "Malformed"
    assert reason_of(dec, Value(env.type(), fields | {"version": 2})) == "Version"
    assert reason_of(dec, Value(env.type(), fields | {"counter": 0})) == "Malformed"
    # same ID, other field types
    odd = Type([(n, "s" if n == "counter" else c) for n, c in crypto.ENVELOPE_FIELDS],
               id=crypto.NTNDARRAY_ENVELOPE_ID)
    assert reason_of(dec, Value(odd, fields | {"counter": "1"})) == "Malformed"
    short = Type(crypto.ENVELOPE_FIELDS[:-1], id=crypto.NTNDARRAY_ENVELOPE_ID)
    assert reason_of(dec, Value(short, {k: v for k, v in fields.items() if k != "signature"})) \
        == "Malformed"
    assert dec.getStats()["nRejected"] == dec.nRejected == 10
    assert same(dec.process(env), frame())                           # still works


def _seal_raw(sealer, plaintext: bytes, like: Value) -> Value:
    """An envelope around an arbitrary plaintext, made by a key holder."""
    real = sealer_module.serialize_value
    sealer_module.serialize_value = lambda v, items=None: [plaintext]
    try:
        return sealer.seal(like, CHANNEL, crypto.ntndarray_summary(like))
    finally:
        sealer_module.serialize_value = real


def test_authenticated_garbage_is_rejected_as_payload(keys):
    enc, dec = pair(keys)
    src = frame()
    good = b"".join(bytes(p) for p in serialize.serialize_value(src))
    head = serialize.PLAINTEXT_HEADER.size
    type_len = struct.unpack_from("<I", good, 8)[0]
    bad_type = bytearray(good)
    bad_type[head + 8 + 2] = ord("{")             # after 1 array length: break the type JSON
    cases = [b"", b"PVGV" + bytes(100), good[:-8], good + bytes(8), bytes(bad_type),
             good.replace(b'"aH"', b'"aX"', 1), good.replace(b"uniqueId", b"uniqueIX", 1)]
    for i, pt in enumerate(cases):
        env = _seal_raw(enc.sealer, pt, src)
        assert reason_of(dec, env) in ("Payload", "Malformed"), i
    assert type_len > 0


# ---------------------------------------------------------------------------
# Key files
# ---------------------------------------------------------------------------

def test_key_file_errors_are_clear(keys, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    notpem = tmp_path / "x.pem"
    notpem.write_text("hello")
    cases = [
        ({"publicKeyFilePath": str(tmp_path / "missing.pem")}, "does not exist"),
        ({"publicKeyFilePath": str(tmp_path)}, "cannot read"),
        ({"publicKeyFilePath": str(bad)}, "no usable"),
        ({"publicKeyFilePath": str(notpem)}, "not a PEM file"),
        ({"publicKeyFilePath": keys["sender.pub"]}, "must be an RSA key"),  # Ed25519: cannot wrap
        ({"publicKeyFilePath": keys["receiver.pub"], "sign": True}, "sign needs privateKeyFilePath"),
        ({}, "needs publicKeyFilePath"),
        ({"privateKeyFilePath": keys["sender"]}, "must be an RSA key"),
        ({"publicKeyFilePath": keys["receiver.pub"], "sign": "maybe"}, "true or false"),
    ]
    for config, text in cases:
        with pytest.raises(ConfigurationError, match=text):
            AdImageDataEncryptor(config)
    with pytest.raises(ConfigurationError, match="needs privateKeyFilePath"):
        AdImageDataDecryptor({})
    with pytest.raises(ConfigurationError, match="must be an RSA key"):
        AdImageDataDecryptor({"privateKeyFilePath": keys["sender"]})
    with pytest.raises(ConfigurationError, match="does not exist"):
        AdImageDataDecryptor({"privateKeyFilePath": keys["receiver"], "verify": True,
                              "publicKeyFilePath": str(tmp_path / "nope.pem")})
    small = tmp_path / "small.pem"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    small.write_bytes(rsa.generate_private_key(65537, 1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    with pytest.raises(ConfigurationError, match="1024-bit"):
        AdImageDataDecryptor({"privateKeyFilePath": str(small)})
    # configure() with a bad key raises and keeps the running configuration
    enc, dec = pair(keys)
    with pytest.raises(ConfigurationError):
        enc.configure({"publicKeyFilePath": str(bad)})
    with pytest.raises(ConfigurationError):
        dec.configure({"privateKeyFilePath": str(tmp_path / "missing.pem")})
    assert same(dec.process(enc.process(frame())), frame())


def test_output_type_of_the_decryptor_comes_from_the_first_frame(keys):
    enc, dec = pair(keys)
    env = enc.process(frame())
    first = dec.getOutputPvObjectType(env)
    assert same(first, frame())
    assert same(dec.process(env), frame())      # not taken as a replay
    assert dec.getOutputPvObjectType(Value(crypto.envelope_type(), {})) is None
    assert enc.getOutputPvObjectType(frame()).getID() == crypto.NTNDARRAY_ENVELOPE_ID
    # a SharedPV accepts posts of the exact type it was opened with
    from p4p.server.thread import SharedPV
    pv = SharedPV(initial=enc.getOutputPvObjectType(frame()))
    pv.post(enc.process(frame()))
    out = SharedPV(initial=first)
    out.post(dec.process(enc.process(frame(uid=8))))


def test_an_epoch_dated_in_the_future_is_rejected_and_locks_nobody_out(keys, monkeypatch):
    """Anyone with the receiver's public key can make an unsigned epoch; one
    dated far ahead must not become the newest and make real epochs stale."""
    real_time_ns = time.time_ns
    future, dec = pair(keys)
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + 3600 * 10**9)
    forged = future.process(frame(uid=1))          # its epoch starts an hour from now
    monkeypatch.setattr(time, "time_ns", real_time_ns)
    assert reason_of(dec, forged) == "StaleKey"
    honest, _ = pair(keys)
    assert same(dec.process(honest.process(frame(uid=2))), frame(uid=2))
