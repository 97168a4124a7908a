"""Hardening of the encryption processors (issue 11, section 1): remote
downgrades, lockout of the real sender, freshness of the first object,
replay state across configure(), work spent before authentication, parser
bombs in authentic plaintexts, every rejection counted, key files."""
import json
import logging
import os
import stat
import time
import tracemalloc

import numpy as np
import pytest
from p4p import Type, Value

from _value_cases import frame, same
from pvagpu import crypto
from pvagpu.crypto import keys as keys_module
from pvagpu.errors import ConfigurationError
from pvagpu.hpc import AdImageDataDecryptor, AdImageDataEncryptor, DataDecryptor
from pvagpu.pva import serialize
from pvagpu.crypto import sealer as sealer_module
from test_crypto import CHANNEL, Capture, fields_of, keys, reason_of  # noqa: F401


def encryptor(keys, cls=AdImageDataEncryptor, channel=CHANNEL, **config):
    enc = cls({"privateKeyFilePath": keys["sender"], "publicKeyFilePath": keys["receiver.pub"],
               **config})
    enc.outputChannel = channel
    enc.dataPublisher = Capture()
    return enc


def decryptor(keys, cls=AdImageDataDecryptor, **config):
    dec = cls({"privateKeyFilePath": keys["receiver"], "publicKeyFilePath": keys["sender.pub"],
               **config})
    dec.inputChannel = CHANNEL
    dec.dataPublisher = Capture()
    return dec


def attacker(keys, **kwargs):
    """Anyone who holds the receiver's public key: unsigned envelopes."""
    return crypto.EnvelopeSealer(crypto.load_public_key(keys["receiver.pub"]), **kwargs)


def accepted(dec, envelope) -> bool:
    try:
        dec.process(envelope)
        return True
    except crypto.EnvelopeRejected:
        return False


def seal_raw(sealer, plaintext: bytes, like: Value, summary=None) -> Value:
    """An envelope around an arbitrary plaintext, made by a key holder
    (clear fields from ``like``; ``summary``: dtype, dims, codec)."""
    real = sealer_module.serialize_value
    sealer_module.serialize_value = lambda v, items=None: [plaintext]
    try:
        return sealer.seal(like, CHANNEL, summary)
    finally:
        sealer_module.serialize_value = real


def tampered_ciphertext(envelope):
    ct = envelope["ciphertext"].copy()
    ct[-1] ^= 1
    return Value(envelope.type(), fields_of(envelope) | {"ciphertext": ct})


# ---------------------------------------------------------------------------
# 1. Remote downgrade
# ---------------------------------------------------------------------------

def test_configure_refuses_to_weaken_a_running_decryptor(keys, caplog):
    dec = decryptor(keys)                                   # verifies by default
    enc = encryptor(keys)
    forger = attacker(keys)
    for change in ({"verify": False}, {"expectedChannel": "*"},
                   {"expectedChannel": "another:channel"},
                   {"publicKeyFilePath": keys["sender_rsa.pub"]},
                   {"privateKeyFilePath": keys["other"]},
                   {"verify": False, "expectedChannel": "*"}):
        with pytest.raises(ConfigurationError, match="allowDowngrade") as err:
            dec.configure(change)
        assert keys["dir"].name not in str(err.value)
    # still verifying, still bound: forged frames stay out, real ones get in
    assert reason_of(dec, forger.seal(frame(uid=1), CHANNEL)) == "Signature"
    assert same(dec.process(enc.process(frame(uid=2))), frame(uid=2))
    # tightening is fine; loosening again is not
    dec.configure({"maxKeyAge": 600})
    with pytest.raises(ConfigurationError, match="allowDowngrade"):
        dec.configure({"maxKeyAge": 0})
    # the start-time switch cannot be given later
    with pytest.raises(ConfigurationError, match="allowDowngrade"):
        dec.configure({"allowDowngrade": True})
    assert dec.getStats()["verified"]


def test_configure_refuses_to_weaken_a_running_encryptor(keys):
    enc = encryptor(keys)                                   # signs by default
    for change in ({"sign": False}, {"publicKeyFilePath": keys["other.pub"]},
                   {"privateKeyFilePath": keys["sender_rsa"]}, {"channelName": "elsewhere"}):
        with pytest.raises(ConfigurationError, match="allowDowngrade"):
            enc.configure(change)
    env = enc.process(frame())
    assert env["signature"].size == 64 and env["recipient"] == crypto.fingerprint(
        crypto.load_public_key(keys["receiver.pub"]))
    enc.configure({"keyRotationFrames": 10})                # not a weakening


def test_downgrades_are_possible_when_allowed_at_start(keys):
    dec = decryptor(keys, allowDowngrade=True)
    dec.configure({"verify": False, "expectedChannel": "*"})
    forged = attacker(keys).seal(frame(uid=1), "some:other:channel")
    assert same(dec.process(forged), frame(uid=1))
    enc = encryptor(keys, allowDowngrade="true")
    enc.configure({"sign": False})
    assert enc.process(frame())["signature"] is None


def test_configure_does_not_tell_a_remote_client_about_files(keys, tmp_path, caplog):
    (tmp_path / "text.pem").write_text("hello")
    dec = decryptor(keys, allowDowngrade=True)
    enc = encryptor(keys, allowDowngrade=True)
    probes = [str(tmp_path / "missing.pem"), str(tmp_path), str(tmp_path / "text.pem"),
              keys["sender.pub"]]
    messages = set()
    for path in probes:
        for proc, key in ((dec, "publicKeyFilePath"), (dec, "privateKeyFilePath"),
                          (enc, "publicKeyFilePath"), (enc, "privateKeyFilePath")):
            try:
                with caplog.at_level(logging.WARNING):
                    proc.configure({key: path})
            except ConfigurationError as exc:
                text = str(exc)
                assert str(tmp_path) not in text and "PEM" not in text
                assert "exist" not in text and "RSA" not in text and "Ed25519" not in text
                messages.add(text.replace("Decryptor", "").replace("Encryptor", ""))
    # one message for every kind of failure: nothing to tell the paths apart
    assert len(messages) <= 2, messages
    # the details are in the local log
    assert "does not exist" in caplog.text and "not a PEM file" in caplog.text


# ---------------------------------------------------------------------------
# 2. Lockout
# ---------------------------------------------------------------------------

def test_signatures_are_on_whenever_the_keys_allow(keys):
    enc = encryptor(keys)
    dec = decryptor(keys)
    assert enc.getStats()["signed"] and dec.getStats()["verified"]
    assert same(dec.process(enc.process(frame())), frame())
    # pvapy's single-key setup: signed and verified too
    enc1 = AdImageDataEncryptor({"privateKeyFilePath": keys["receiver"]})
    dec1 = AdImageDataDecryptor({"privateKeyFilePath": keys["receiver"]})
    enc1.outputChannel = dec1.inputChannel = CHANNEL
    env = enc1.process(frame(uid=3))
    assert env["signatureAlgorithm"] == "rsa-pss-sha256"
    assert same(dec1.process(env), frame(uid=3))
    assert reason_of(dec1, attacker(keys).seal(frame(uid=4), CHANNEL)) == "Signature"
    # an encryptor that cannot sign must be told to send unsigned envelopes
    with pytest.raises(ConfigurationError, match='"sign": false'):
        AdImageDataEncryptor({"publicKeyFilePath": keys["receiver.pub"]})
    unsigned = AdImageDataEncryptor({"publicKeyFilePath": keys["receiver.pub"], "sign": False})
    assert not unsigned.getStats()["signed"]


def test_unsigned_mode_one_forged_envelope_locks_nobody_out(keys, monkeypatch):
    dec = decryptor(keys, verify=False)
    real = encryptor(keys, sign=False)
    assert accepted(dec, real.process(frame(uid=1)))
    # a forged epoch dated a few minutes ahead (within the clock skew allowed)
    real_time_ns = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + 200 * 10**9)
    ahead = attacker(keys).seal(frame(uid=2), CHANNEL)
    monkeypatch.setattr(time, "time_ns", real_time_ns)
    assert accepted(dec, ahead)              # unsigned: anyone with the public key can send
    # one that takes over the real epoch's key id with a huge counter
    env = real.process(frame(uid=3))
    thief = attacker(keys)
    thief.rotate()
    thief._epoch.key_id = bytes(env["keyId"])
    thief._epoch.counter = 2 ** 62
    accepted(dec, thief.seal(frame(uid=4), CHANNEL))
    # the real sender goes on, and so does a restarted one
    assert accepted(dec, env)
    assert accepted(dec, real.process(frame(uid=5)))
    restarted = encryptor(keys, sign=False)
    assert accepted(dec, restarted.process(frame(uid=6)))
    assert accepted(dec, real.process(frame(uid=7)))
    assert reason_of(dec, env) == "Replay"   # and what was accepted stays a replay


def test_any_channel_and_a_frame_replayed_from_another_channel(keys):
    """Signed, expectedChannel "*": a real frame of a newer epoch from
    another channel must not make this channel's epoch stale."""
    dec = decryptor(keys, expectedChannel="*")
    here = encryptor(keys)
    there = encryptor(keys, channel="another:channel")
    assert accepted(dec, here.process(frame(uid=1)))
    time.sleep(0.002)
    assert accepted(dec, there.process(frame(uid=50)))     # newer epoch, other channel
    assert accepted(dec, here.process(frame(uid=2)))


# ---------------------------------------------------------------------------
# 3. Freshness on the first object
# ---------------------------------------------------------------------------

def test_the_first_object_passes_every_check(keys, monkeypatch):
    enc, dec = encryptor(keys), decryptor(keys)
    e1 = enc.process(frame(uid=1))
    assert same(dec.getOutputPvObjectType(e1), frame(uid=1))
    dec.process(e1)
    assert dec.getOutputPvObjectType(e1) is None                       # a replay
    old = decryptor(keys, maxKeyAge=60)
    real_time_ns = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() - 3600 * 10**9)
    stale = encryptor(keys).process(frame(uid=2))                      # an hour old
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + 3600 * 10**9)
    future = encryptor(keys).process(frame(uid=3))                     # an hour ahead
    monkeypatch.setattr(time, "time_ns", real_time_ns)
    assert old.getOutputPvObjectType(stale) is None
    assert old.getOutputPvObjectType(future) is None


# ---------------------------------------------------------------------------
# 4. Replay after reconfigure
# ---------------------------------------------------------------------------

def test_replay_state_survives_switching_the_receiver_key_and_back(keys):
    enc = encryptor(keys)
    dec = decryptor(keys, allowDowngrade=True)
    e1, e2 = enc.process(frame(uid=1)), enc.process(frame(uid=2))
    dec.process(e1)
    dec.process(e2)
    dec.configure({"privateKeyFilePath": keys["other"]})
    dec.configure({"privateKeyFilePath": keys["receiver"]})
    assert reason_of(dec, e2) == "Replay" and reason_of(dec, e1) == "Replay"
    assert accepted(dec, enc.process(frame(uid=3)))


# ---------------------------------------------------------------------------
# 5. Cost before authentication
# ---------------------------------------------------------------------------

@pytest.fixture
def rsa_unwraps(monkeypatch):
    calls = []
    real = keys_module.unwrap_key_record

    def counted(private_key, wrapped):
        calls.append(bytes(wrapped))
        return real(private_key, wrapped)
    monkeypatch.setattr(keys_module, "unwrap_key_record", counted)
    return calls


def test_rsa_work_on_keys_not_yet_accepted_is_bounded(keys, rsa_unwraps):
    dec = decryptor(keys, verify=False)
    real = encryptor(keys, sign=False)
    assert accepted(dec, real.process(frame(uid=1)))
    # the same junk again and again: one RSA operation
    junk = tampered_ciphertext(attacker(keys).seal(frame(uid=2), CHANNEL))
    n0 = len(rsa_unwraps)
    for _ in range(30):
        assert reason_of(dec, junk) == "Authentication"
    assert len(rsa_unwraps) - n0 == 1
    # a new wrapped key every time: a budget, counted when exceeded
    forger = attacker(keys)
    flood = []
    for uid in range(200):
        forger.rotate()
        flood.append(tampered_ciphertext(forger.seal(frame(uid=uid), CHANNEL)))
    n0 = len(rsa_unwraps)
    t0 = time.monotonic()
    for env in flood:
        accepted(dec, env)
        # the real sender's accepted epoch needs no RSA, and goes on
    spent = len(rsa_unwraps) - n0
    limit = crypto.KeyUnwrapper.BURST + crypto.KeyUnwrapper.RATE * (time.monotonic() - t0) + 1
    assert spent <= limit < 200
    assert dec.getStats()["nRejectedBudget"] == 200 - spent
    assert accepted(dec, real.process(frame(uid=3)))


def test_sizes_are_capped_before_they_are_used(keys, rsa_unwraps):
    dec = decryptor(keys, verify=False, maxFrameBytes=1 << 20)
    real = encryptor(keys, sign=False)
    env = real.process(frame(uid=1))
    fields = fields_of(env)
    cases = {
        "ciphertext": np.zeros((1 << 20) + 64, np.uint8),
        "dims": np.arange(100_000, dtype=np.int32),
        "wrappedKey": np.zeros(4096, np.uint8),
        "signature": np.zeros(100_000, np.uint8),
        "channel": "x" * 100_000,
    }
    for name, big in cases.items():
        assert reason_of(dec, Value(env.type(), fields | {name: big})) == "Malformed", name
    assert not rsa_unwraps                       # no RSA spent on any of them
    assert accepted(dec, env)


def test_a_large_rejected_frame_leaves_no_buffer_behind(keys):
    dec = decryptor(keys, verify=False)
    real = encryptor(keys, sign=False)
    assert accepted(dec, real.process(frame(uid=1)))
    big = real.process(frame(shape=(2048, 4096), uid=2))   # 16 MiB
    junk = tampered_ciphertext(big)
    del big
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert not accepted(dec, junk)        # (the exception, dropped, holds nothing)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert dec.getStats()["nRejectedAuthentication"] == 1
    assert kept < 1 << 20


# ---------------------------------------------------------------------------
# 6. Parser bombs in authentic plaintexts
# ---------------------------------------------------------------------------

def hand_made(type_spec, tree) -> bytes:
    t, d = json.dumps(type_spec).encode(), json.dumps(tree).encode()
    body = serialize.PLAINTEXT_HEADER.pack(b"PVGV", 1, 0, 0, len(t), len(d), 0) + t + d
    return body + bytes(-len(body) % 8)


def test_parser_bombs_are_refused_quickly(keys):
    dec = decryptor(keys, cls=DataDecryptor, verify=False)
    forger = attacker(keys, structure_id=crypto.DATA_ENVELOPE_ID)
    like = Value(Type([("uniqueId", "i")]), {"uniqueId": 1})
    n = 30_000
    bombs = {
        "fields": hand_made(["S", "b", [["uniqueId", "i"]] + [[f"f{i}", "i"] for i in range(n)]],
                            [1] + [0] * n),
        "elements": hand_made(["S", "b", [["uniqueId", "i"], ["a", ["aS", "e", []]]]],
                              [1, [None] * 2_000_000]),
        "empty structures": hand_made(["S", "b", [["uniqueId", "i"], ["a", ["aS", "e", []]]]],
                                      [1, [[]] * 1_000_000]),
        "strings": hand_made(["S", "b", [["uniqueId", "i"], ["a", "as"]]],
                             [1, ["x" * 1000] * 20_000]),
    }
    for name, plaintext in bombs.items():
        env = seal_raw(forger, plaintext, like)
        t0 = time.perf_counter()
        assert reason_of(dec, env) == "Payload", name
        assert time.perf_counter() - t0 < 0.5, name


def test_the_adimage_decryptor_takes_ntndarrays_only(keys):
    dec = decryptor(keys, verify=False)
    forger = attacker(keys)
    src = frame(uid=1)
    spec = src.type().aspy()
    lookalike = Value(Type(spec[2], id="my:NotAnNDArray:1"), fields_of(src))
    env = forger.seal(lookalike, CHANNEL, crypto.ntndarray_summary(src))
    assert reason_of(dec, env) == "Payload"
    # the data decryptor takes any structure
    data = decryptor(keys, cls=DataDecryptor, verify=False)
    env = attacker(keys, structure_id=crypto.DATA_ENVELOPE_ID).seal(lookalike, CHANNEL)
    assert data.process(env).getID() == "my:NotAnNDArray:1"


# ---------------------------------------------------------------------------
# 7. Every rejection counted
# ---------------------------------------------------------------------------

def _ntndarray_with(src, name, spec, value):
    """``src`` with field ``name`` retyped to ``spec`` and set to ``value``."""
    fields = [(n, spec if n == name else s) for n, s in src.type().aspy()[2]]
    values = fields_of(src) | {name: value}
    return Value(Type(fields, id=src.getID()), values)


def test_malformed_plaintexts_are_counted_rejections(keys):
    dec = decryptor(keys, verify=False)
    data = decryptor(keys, cls=DataDecryptor, verify=False)
    forger = attacker(keys)
    src = frame(uid=1, codec="lz4")
    summary = crypto.ntndarray_summary(src)
    bad_objects = [
        _ntndarray_with(src, "uniqueId", "s", "1"),
        _ntndarray_with(src, "codec", "s", "lz4"),
        _ntndarray_with(src, "dimension", "ai", np.array([8, 6], np.int32)),
        Value(src.type(), fields_of(src) | {"dimension": [None, None]}),
        Value(src.type(), fields_of(src) | {
            "codec": {"name": "lz4", "parameters": ("d", float("nan"))}}),
        Value(src.type(), fields_of(src) | {
            "codec": {"name": "lz4", "parameters": ("d", float("inf"))}}),
    ]
    n = 0
    for bad in bad_objects:
        plaintext = b"".join(bytes(p) for p in serialize.serialize_value(bad))
        env = seal_raw(forger, plaintext, src, summary)
        with pytest.raises(crypto.EnvelopeRejected) as err:
            dec.process(env)
        assert err.value.reason in ("Payload", "Malformed", "Mismatch")
        n += 1
        assert dec.nRejected == n
    # a data envelope whose object has a string uniqueId
    plaintext = b"".join(bytes(p) for p in serialize.serialize_value(
        Value(Type([("uniqueId", "s")]), {"uniqueId": "0"})))
    env = seal_raw(attacker(keys, structure_id=crypto.DATA_ENVELOPE_ID), plaintext,
                   Value(Type([("uniqueId", "i")]), {"uniqueId": 0}))
    with pytest.raises(crypto.EnvelopeRejected):
        data.process(env)
    assert data.nRejected == 1
    assert sum(v for k, v in dec.getStats().items() if k.startswith("nRejected") and
               k != "nRejected") == dec.nRejected


def test_only_authenticated_unique_ids_count_missed_frames(keys):
    dec = decryptor(keys, verify=True)
    enc = encryptor(keys, sign=True)
    for uid in (1, 2):
        dec.process(enc.process(frame(uid=uid)))
    real = enc.process(frame(uid=3))
    junk = Value(real.type(), fields_of(real) | {"uniqueId": 2 ** 31 - 1})
    assert reason_of(dec, junk) == "Signature"
    dec.process(real)
    for uid in (4, 7):
        dec.process(enc.process(frame(uid=uid)))
    assert dec.getStats()["nMissed"] == 2           # 5 and 6, nothing from the junk
    assert dec.lastAuthenticatedId == 7


# ---------------------------------------------------------------------------
# 8. Key files
# ---------------------------------------------------------------------------

def test_generate_key_pair_makes_a_private_file_and_follows_no_link(tmp_path):
    target = tmp_path / "key.pem"
    target.write_text("old")
    os.chmod(target, 0o644)
    keys_module.generate_key_pair(target, tmp_path / "key.pub.pem", bits=2048)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert keys_module.load_private_key(target)
    # a link planted where the key is to go: replaced, not written through
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch")
    os.chmod(victim, 0o644)
    link = tmp_path / "linked.pem"
    link.symlink_to(victim)
    keys_module.generate_key_pair(link, bits=2048)
    assert victim.read_text() == "do not touch"
    assert not link.is_symlink() and stat.S_IMODE(os.lstat(link).st_mode) == 0o600
    # no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "key.pem", "key.pub.pem", "linked.pem", "victim.txt"]


def test_a_private_key_readable_by_others_is_warned_about(tmp_path, caplog):
    path = tmp_path / "open.pem"
    keys_module.generate_key_pair(path, bits=2048)
    with caplog.at_level(logging.WARNING, logger="pvagpu.crypto.keys"):
        keys_module.load_private_key(path)
    assert "readable" not in caplog.text
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="pvagpu.crypto.keys"):
        keys_module.load_private_key(path)
    assert "readable by group or others" in caplog.text and str(path) in caplog.text
