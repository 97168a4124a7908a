"""Encrypted stream over PV Access:

pvagpu-sim-server -> pvagpu-consumer (AdImageDataEncryptor, signing) ->
pvagpu-consumer (AdImageDataDecryptor, verifying) -> this test, which checks
every decrypted frame bit for bit against the same frame taken from the sim
server's channel, and that the uniqueIds come out consecutive."""
import json
import threading

import numpy as np
import pytest
from p4p.client.thread import Context

from conftest import wait_for
from pvagpu import crypto
from pvagpu.pva.loopback import free_port
from test_crypto import CHANNEL, fields_of, keys  # noqa: F401 (keys: a fixture)
from _value_cases import frame
from p4p import Value

N_CHECK = 60          # frames checked after the first one seen on the output


class Collector:
    def __init__(self):
        self.frames = {}
        self.order = []
        self.lock = threading.Lock()

    def __call__(self, value):
        if isinstance(value, Exception):
            return
        uid = int(value["uniqueId"])
        with self.lock:
            if uid > 0:
                self.frames[uid] = value
                self.order.append(uid)


def same(a, b) -> bool:
    return (a.type().aspy() == b.type().aspy() and a.tostr() == b.tostr()
            and a["value"].tobytes() == b["value"].tobytes())


def status(ctx, name):
    value = ctx.get(name, timeout=2, throw=False)
    return None if isinstance(value, Exception) else value


@pytest.mark.pva
def test_sim_server_encryptor_decryptor_every_frame_bit_for_bit(processes, tmp_path):
    for name, kind in (("receiver", "rsa"), ("sender", "ed25519")):
        crypto.generate_key_pair(tmp_path / f"{name}.pem", tmp_path / f"{name}.pub.pem",
                                 kind=kind, bits=2048)
    frames = np.random.default_rng(3).integers(0, 65535, (10, 48, 64), dtype=np.uint16)
    np.save(tmp_path / "frames.npy", frames)
    enc_args = {"privateKeyFilePath": str(tmp_path / "sender.pem"), "sign": True,
                "publicKeyFilePath": str(tmp_path / "receiver.pub.pem"), "keyRotationFrames": 25}
    dec_args = {"privateKeyFilePath": str(tmp_path / "receiver.pem"), "verify": True,
                "publicKeyFilePath": str(tmp_path / "sender.pub.pem")}

    # each server on its own TCP port, found through it as a name server: no
    # dependence on UDP search (several servers share the UDP port on loopback)
    ports = {name: free_port() for name in ("sim", "enc", "dec")}
    base = dict(processes.env)

    def serving(name, *look_at):
        processes.env = dict(base, EPICS_PVAS_SERVER_PORT=str(ports[name]),
                             EPICS_PVA_NAME_SERVERS=" ".join(f"127.0.0.1:{ports[n]}"
                                                             for n in look_at))

    ctx = Context("pva", nt=False, conf={
        "EPICS_PVA_NAME_SERVERS": " ".join(f"127.0.0.1:{p}" for p in ports.values())},
        useenv=True)
    subs = []
    try:
        source, output = Collector(), Collector()
        serving("sim")
        # the sim server waits for its first client (this test), then 1.5 s, then 30 fps
        # until stopped
        sim = processes.start("pvagpu-sim-server", "-cn", "cp:sim", "-if",
                              str(tmp_path / "frames.npy"), "-fps", "30", "-np", "3000",
                              "-wfc", "-std", "1.5", "-shd", "30", "-rp", "0")
        subs.append(ctx.monitor("cp:sim", source, notify_disconnect=True))
        serving("enc", "sim")
        processes.start("pvagpu-consumer", "-ic", "cp:sim", "-oc", "cp:enc", "-sc", "cp:enc:status",
                        "-pc", "pvagpu.hpc:AdImageDataEncryptor", "-pa", json.dumps(enc_args), "-dc")
        wait_for(lambda: (s := status(ctx, "cp:enc:status")) is not None and
                 s["userStats.nEncrypted"] >= 1, timeout=30, message="encryptor busy")
        # the decryptor's first update is a real envelope: its output record exists at once
        serving("dec", "enc")
        processes.start("pvagpu-consumer", "-ic", "cp:enc", "-oc", "cp:dec", "-sc", "cp:dec:status",
                        "-pc", "pvagpu.hpc:AdImageDataDecryptor", "-pa", json.dumps(dec_args), "-dc")
        wait_for(lambda: (s := status(ctx, "cp:dec:status")) is not None and
                 s["userStats.nDecrypted"] >= 1, timeout=30, message="decryptor busy")
        subs.append(ctx.monitor("cp:dec", output))
        wait_for(lambda: output.order, timeout=30, message="first decrypted frame")
        first = output.order[0]
        last = first + N_CHECK
        wait_for(lambda: last in output.frames, timeout=30, message=f"decrypted frame {last}")
        with output.lock:
            order = [uid for uid in output.order if uid <= last]
        assert order == list(range(first, last + 1)), "uniqueIds not consecutive"
        for uid in order:
            src, out = source.frames[uid], output.frames[uid]
            assert same(out, src), f"frame {uid} differs"
            assert np.array_equal(out["value"].reshape(48, 64), frames[(uid - 1) % 10])

        enc = wait_for(lambda: (s := status(ctx, "cp:enc:status")) is not None and
                       s["processorStats.lastObjectId"] >= last and s, timeout=20,
                       message="encryptor status")
        dec = wait_for(lambda: (s := status(ctx, "cp:dec:status")) is not None and
                       s["processorStats.lastObjectId"] >= last and s, timeout=20,
                       message="decryptor status")
        assert enc["userStats.nKeyRotations"] >= 3 and enc["processorStats.nErrors"] == 0
        assert dec["userStats.nRejected"] == 0 and dec["processorStats.nErrors"] == 0
        assert dec["processorStats.nMissed"] == 0
        assert dec["userStats.nDecrypted"] == dec["processorStats.nProcessed"] >= N_CHECK
        sim.terminate()
    finally:
        for sub in subs:
            sub.close()
        ctx.close()


@pytest.mark.parametrize("queued", [False, True])
def test_the_consumer_counts_missed_frames_from_authenticated_ids_only(keys, queued):
    """Issue 11 section 1.7: the decryptor's consumer does not account the
    clear uniqueId on receipt; after each accepted envelope it accounts the
    processor's lastAuthenticatedId. A junk envelope with a far-off clear
    uniqueId between good frames leaves processorStats.nMissed at 0; a real
    gap (5, 6 never sent) counts 2; with a frame queue, frame 9 dropped
    from the full queue is an overrun and not also missed."""
    from pvagpu.consumer import Consumer
    from pvagpu.hpc import AdImageDataDecryptor, AdImageDataEncryptor

    enc = AdImageDataEncryptor({"privateKeyFilePath": keys["sender"], "sign": True,
                                "publicKeyFilePath": keys["receiver.pub"]})
    enc.outputChannel = CHANNEL
    dec = AdImageDataDecryptor({"privateKeyFilePath": keys["receiver"],
                                "publicKeyFilePath": keys["sender.pub"], "verify": True})
    consumer = Consumer(CHANNEL, dec, skip_initial_updates=0,
                        receiver_queue_size=100 if queued else None)
    dec.inputChannel = CHANNEL      # what start() sets; not started: no network here
    receiver, delivery = consumer.receiver, consumer.delivery
    assert not receiver.track_ids
    envelopes = {uid: enc.process(frame(uid=uid)) for uid in (1, 2, 3, 4, 7, 8, 9, 10)}
    junk = Value(envelopes[3].type(), fields_of(envelopes[3]) | {"uniqueId": 2 ** 31 - 1})

    def offer(*items):
        for item in items:
            receiver._on_value(envelopes[item] if isinstance(item, int) else item)

    offer(1, 2)
    assert consumer.stats()["processorStats"]["nMissed"] == 0
    offer(junk, 3, 4, 7)            # the junk's clear id is far off: rejected, not accounted
    if queued:                      # nothing processed yet: the queue holds them
        offer(8)
        delivery.resize(delivery.queue_length)
        offer(9)                    # the queue is full: dropped, an overrun
        delivery.resize(100)
        offer(10)
        delivery.start()
    else:
        offer(8, 9, 10)
    try:
        wait_for(lambda: dec.lastAuthenticatedId == 10, message="frame 10 processed")
    finally:
        delivery.stop(5)
    stats = consumer.stats()
    assert dec.nRejected == 1 and stats["processorStats"]["nErrors"] == 1
    assert stats["receiverStats"]["nOverruns"] == (1 if queued else 0)
    assert stats["processorStats"]["nMissed"] == 2     # 5 and 6: not the junk's, not 9
    assert stats["processorStats"]["nProcessed"] == (7 if queued else 8)


@pytest.mark.pva
def test_a_decryptor_in_two_workers_counts_missed_frames_from_authenticated_ids(keys, pva_env):
    """The same accounting with the decryptor in 2 worker processes, whose
    frames finish in any order: the authenticated ids are put back in the
    order the frames came, so the junk envelope's far-off clear id counts
    nothing and the real gap (5, 6) counts 2."""
    from pvagpu.consumer import Consumer
    from pvagpu.hpc import AdImageDataEncryptor
    from pvagpu.runtime.config import ConsumerConfig

    enc = AdImageDataEncryptor({"privateKeyFilePath": keys["sender"], "sign": True,
                                "publicKeyFilePath": keys["receiver.pub"]})
    enc.outputChannel = CHANNEL
    envelopes = {uid: enc.process(frame(uid=uid)) for uid in (1, 2, 3, 4, 7, 8, 9, 10)}
    junk = Value(envelopes[3].type(), fields_of(envelopes[3]) | {"uniqueId": 2 ** 31 - 1})
    config = ConsumerConfig(CHANNEL, processor_class="pvagpu.hpc:AdImageDataDecryptor",
                            processor_args={"privateKeyFilePath": keys["receiver"],
                                            "publicKeyFilePath": keys["sender.pub"],
                                            "verify": True},
                            n_workers=2, skip_initial_updates=0)
    with Consumer(config) as consumer:
        receiver = consumer.receiver
        assert not receiver.track_ids
        for item in (1, 2, junk, 3, 4, 7, 8, 9, 10):
            receiver._on_value(envelopes[item] if isinstance(item, int) else item)
        wait_for(lambda: (p := consumer.stats()["processorStats"])["nProcessed"] +
                 p["nErrors"] == 9, timeout=60, message="9 envelopes answered")
        stats = consumer.stats()
    p = stats["processorStats"]
    assert (p["nProcessed"], p["nErrors"], p["nMissed"]) == (8, 1, 2)
    assert receiver.ids.last_id == 10
    assert sorted(h.counters.n_processed for h in consumer.workers.handles)[0] >= 1
