"""Proof under load and faults: the consumer on loopback, measured.

Scenarios (each a function returning its figures and a list of failed
checks; tests/test_soak.py runs them with the short profile):

- ``rated``: pvagpu-sim-server at the rated rate -> pvagpu-consumer with its
  defaults (FrameCounter, no publishing): frames lost (0) and the consumer's
  RSS at the start (after the first 10 % of the run) and the end (within 5 %);
- ``faults``: the input server killed with SIGKILL and restarted, then
  stopped with SIGSTOP for 5 s and resumed: the consumer survives,
  reconnects by itself, and its missed count equals the frames it really
  did not get (the ids absent from what it processed);
- ``hostile``: malformed NTNDArrays (wrong union member, dims that disagree,
  huge dims, negative sizes, corrupt codec payloads, absurd attribute
  lists) between good frames: every bad one counted, every good one
  processed, RSS flat;
- ``slow``: a processor slower than the stream: misses counted (processed +
  missed = what was published), memory bounded, the status channel answering;
- ``crypto``: tampered envelopes between good ones, encryptor -> PVA ->
  decryptor (signing and verifying keys): all rejected and counted, every
  good frame decrypted bit for bit.

    python benchmarks/soak.py                 # the full profile (10-minute rated run)
    python benchmarks/soak.py --quick         # the short profile (about a minute)
    python benchmarks/soak.py --only hostile crypto

Prints one line per scenario and the machine, writes benchmarks/results/soak.json.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from p4p import Type, Value  # noqa: E402
from p4p.client.thread import Context  # noqa: E402
from p4p.server import Server  # noqa: E402
from p4p.server.thread import SharedPV  # noqa: E402

from pvagpu import crypto, ntnda  # noqa: E402
from pvagpu.consumer import Consumer  # noqa: E402
from pvagpu.hpc import AdImageDataDecryptor, AdImageDataEncryptor, UserDataProcessor  # noqa: E402
from pvagpu.processors import FrameCounter  # noqa: E402
from pvagpu.pva.loopback import loopback_env, process_env  # noqa: E402

#: the two profiles: the issue's figures, and a short one for CI
PROFILES = {
    "full": {"rated_s": 600, "rated_fps": 200, "rated_shape": (512, 512), "hostile_bad": 10000,
             "slow_s": 20, "slow_queue": 0, "tampered": 1000, "fault_fps": 100},
    "short": {"rated_s": 8, "rated_fps": 100, "rated_shape": (256, 256), "hostile_bad": 600,
              "slow_s": 3, "slow_queue": 20, "tampered": 120, "fault_fps": 100},
}


def rss_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def _flat(start: float, end: float, limit: float = 0.05) -> bool:
    return abs(end - start) <= limit * start


# ---------------------------------------------------------------------------
# rated rate, default flags
# ---------------------------------------------------------------------------

def rated(env: dict, seconds: float, fps: float, shape=(512, 512)) -> dict:
    """Consumer started first with its defaults, then the server; N frames."""
    n = int(seconds * fps)
    penv = process_env(env)
    consumer = subprocess.Popen(
        [sys.executable, "-m", "pvagpu.cli.consumer", "-ic", "soak:rated", "-sc", "soak:st",
         "-pc", "pvagpu.processors:FrameCounter", "-pa", '{"publish": false}'],
        env=penv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = subprocess.Popen(
        ["pvagpu-sim-server", "-cn", "soak:rated", "-nx", str(shape[1]), "-ny", str(shape[0]),
         "-dt", "uint16", "-fps", str(fps), "-np", str(n), "-rt", "0", "-cs", "50", "-std", "3",
         "-shd", "600", "-rp", "0"], env=penv, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    ctx = Context("pva", nt=False)
    status = lambda: ctx.get("soak:st", timeout=2, throw=False)  # noqa: E731
    try:
        def processed(missed=False):
            s = status()
            if isinstance(s, Exception):
                return 0
            return s["processorStats.nProcessed"] + (s["processorStats.nMissed"] if missed else 0)
        wait_until(lambda: processed() >= max(1, n // 10), seconds + 60, "10 % of the frames")
        rss_start = rss_mib(consumer.pid)
        wait_until(lambda: processed(missed=True) >= n or server.poll() is not None,
                   seconds * 1.5 + 60, "every frame")
        time.sleep(1.0)
        s = status()
        rss_end = rss_mib(consumer.pid)
    finally:
        ctx.close()
        for proc in (consumer, server):
            proc.send_signal(signal.SIGINT)
        out, _ = consumer.communicate(timeout=30)
        server.communicate(timeout=30)
    got = s["processorStats.nProcessed"]
    result = {"frames": n, "fps": fps, "shape": list(shape), "seconds": seconds,
              "processed": got, "lost": n - got, "missed": s["processorStats.nMissed"],
              "rss_start_mib": round(rss_start, 1), "rss_end_mib": round(rss_end, 1),
              "rss_change_pct": round(100 * (rss_end - rss_start) / rss_start, 2),
              "start_notes": [line for line in out.splitlines() if line.startswith("server queue")]}
    result["failed"] = [text for ok, text in (
        (got == n, f"lost {n - got} frames"), (result["missed"] == 0, "missed counted"),
        (_flat(rss_start, rss_end), f"RSS changed {result['rss_change_pct']} %")) if not ok]
    return result


# ---------------------------------------------------------------------------
# SIGKILL + restart, SIGSTOP 5 s + SIGCONT
# ---------------------------------------------------------------------------

class Recorder(UserDataProcessor):
    """Records the uniqueId of every frame it is given."""

    def __init__(self, configDict=None, delay: float = 0.0):
        super().__init__(configDict or {})
        self.ids = []
        self.delay = delay

    def process(self, pvObject):
        if self.delay:
            time.sleep(self.delay)
        self.ids.append(int(pvObject["uniqueId"]))
        return pvObject


def id_gaps(ids) -> int:
    """Frames absent from a sequence of ids (a smaller id: a restarted server)."""
    return sum(b - a - 1 for a, b in zip(ids, ids[1:]) if b > a + 1)


def faults(env: dict, fps: float = 100) -> dict:
    penv = process_env(env)

    def server(n):
        return subprocess.Popen(
            ["pvagpu-sim-server", "-cn", "soak:fault", "-nx", "64", "-ny", "64", "-fps", str(fps),
             "-np", str(n), "-rt", "0", "-cs", "20", "-std", "1", "-shd", "600", "-rp", "0"],
            env=penv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    recorder = Recorder()
    result = {}
    with Consumer("soak:fault", recorder) as consumer:
        r = consumer.receiver
        first = server(100000)
        try:
            wait_until(lambda: len(recorder.ids) >= fps, 30, "frames from the first server")
            first.send_signal(signal.SIGKILL)
            first.wait()
            wait_until(lambda: not r.connected, 60, "the disconnect")
            seen_before = len(recorder.ids)
        finally:
            if first.poll() is None:
                first.kill()
        n2 = int(fps * 9)
        second = server(n2)
        try:
            t_restart = time.monotonic()
            wait_until(lambda: r.connected, 30, "the reconnect")
            result["reconnect_s"] = round(time.monotonic() - t_restart, 2)
            wait_until(lambda: max(recorder.ids[seen_before:] or [0]) >= 2 * fps, 30,
                       "frames from the restarted server")
            second.send_signal(signal.SIGSTOP)
            time.sleep(5.0)                     # the fault under test: 5 s stopped
            second.send_signal(signal.SIGCONT)
            wait_until(lambda: max(recorder.ids[seen_before:] or [0]) >= n2, 60,
                       "the restarted server's last frame")
            time.sleep(0.5)
        finally:
            second.send_signal(signal.SIGCONT)
            second.terminate()
            second.wait()
        after = [i for i in recorder.ids[seen_before:] if i > 0]
        result.update({
            "connects": r.counters.n_connects, "disconnects": r.counters.n_disconnects,
            "missed_counted": r.counters.n_missed, "missed_real": id_gaps(recorder.ids),
            "restarted_frames": n2, "restarted_received": len(set(after)),
            "restarted_absent": n2 - len(set(after))})
    result["failed"] = [text for ok, text in (
        (result["disconnects"] >= 1 and result["connects"] >= 2, "no reconnect"),
        (result["missed_counted"] == result["missed_real"],
         f"missed counted {result['missed_counted']} != real {result['missed_real']}"),
        (result["restarted_absent"] == id_gaps(after),
         "frames of the restarted server absent but not counted")) if not ok]
    return result


# ---------------------------------------------------------------------------
# a hostile server
# ---------------------------------------------------------------------------

def _hostile_type():
    """NTNDArray whose value union also has a string array member."""
    name, type_id, fields = ntnda.NTNDARRAY_TYPE.aspy()
    fields = list(fields)
    union = fields[0][1]
    fields[0] = ("value", ("U", union[1], list(union[2]) + [("stringValue", "as")]))
    return Type(fields, id=type_id)


HOSTILE_TYPE = _hostile_type()
_IMAGE = np.arange(32 * 24, dtype=np.uint16).reshape(24, 32)


def good_frame(uid):
    return ntnda.build_value(("ushortValue", _IMAGE.reshape(-1)), uid, shape=_IMAGE.shape,
                             dtype=_IMAGE.dtype, value_type=HOSTILE_TYPE)


def bad_frame(uid, kind: int):
    """Six kinds of malformed NTNDArray, by ``kind % 6``."""
    v = good_frame(uid)
    k = kind % 6
    if k == 0:
        v["value"] = ("stringValue", ["x"] * 8) if kind % 12 == 0 else ("booleanValue", [True] * 3)
    elif k == 1:
        v["dimension"] = [{"size": 100}, {"size": 100}]
    elif k == 2:
        v["dimension"] = [{"size": 2**31 - 1}, {"size": 2**31 - 1}]
    elif k == 3:
        v["dimension"] = [{"size": -1}, {"size": -64}]
    elif k == 4:
        v["codec.name"] = ("lz4", "bslz4", "zlib", "blosc")[kind % 4]
        v["value"] = ("ubyteValue", np.frombuffer(os.urandom(256), np.uint8))
        v["compressedSize"], v["uncompressedSize"] = 256, _IMAGE.nbytes
    else:
        v["attribute"] = [{"name": "ColorMode", "value": 77 + kind}] + [
            {"name": "a" * 200 + str(i), "value": i} for i in range(300)]
    return v


def hostile(env: dict, n_bad: int = 10000, bad_per_good: int = 10) -> dict:
    pv = SharedPV(initial=good_frame(0))
    server = Server(providers=[{"soak:hostile": pv}])
    counter = FrameCounter({"publish": False})
    n_good = n_bad // bad_per_good
    try:
        with Consumer("soak:hostile", counter) as consumer:
            r = consumer.receiver
            wait_until(lambda: r.connected, 20, "the consumer")
            posted, uid, rss_start = 0, 0, None
            for i in range(n_bad):
                uid += 1
                pv.post(bad_frame(uid, i))
                posted += 1
                if (i + 1) % bad_per_good == 0:
                    uid += 1
                    pv.post(good_frame(uid))
                    posted += 1
                if posted % 50 == 0:   # stay within the queue: no frame squashed
                    wait_until(lambda: r.counters.n_received >= posted + 1, 30, "the consumer")
                if rss_start is None and i >= n_bad // 10:
                    rss_start = rss_mib()
            wait_until(lambda: consumer.counters.n_processed + consumer.counters.n_errors
                       >= posted, 60, "every frame")
            rss_end = rss_mib()
            c = consumer.counters
            result = {"bad": n_bad, "good": n_good, "errors": c.n_errors,
                      "frame_errors": c.n_frame_errors, "codec_errors": c.n_codec_errors,
                      "good_processed": counter.nFrames, "missed": r.counters.n_missed,
                      "rss_start_mib": round(rss_start, 1), "rss_end_mib": round(rss_end, 1)}
    finally:
        server.stop()
    result["failed"] = [text for ok, text in (
        (result["errors"] == n_bad, f"{result['errors']} of {n_bad} bad frames counted"),
        (result["good_processed"] == n_good, f"{result['good_processed']} of {n_good} good"),
        (result["missed"] == 0, "frames missed"),
        (_flat(rss_start, rss_end), "RSS not flat")) if not ok]
    return result


# ---------------------------------------------------------------------------
# a processor slower than the stream
# ---------------------------------------------------------------------------

def slow(env: dict, seconds: float = 20, fps: float = 200, delay: float = 0.02,
         server_queue: int = 0) -> dict:
    shape = (256, 256)
    frames = [ntnda.value_from_image(np.full(shape, i, np.uint16), 0) for i in range(8)]
    pv = SharedPV(initial=ntnda.value_from_image(np.zeros(shape, np.uint16), 0))
    server = Server(providers=[{"soak:slow": pv}])
    recorder = Recorder(delay=delay)
    ctx = Context("pva", nt=False)
    latencies, rss = [], []
    try:
        with Consumer("soak:slow", recorder, status_channel="soak:slow:st",
                      server_queue_size=server_queue) as consumer:
            r = consumer.receiver
            wait_until(lambda: r.connected, 20, "the consumer")
            rss_start = rss_mib()
            n = int(seconds * fps)
            t0 = time.monotonic()
            for uid in range(1, n + 1):
                value = frames[uid % 8]
                value["uniqueId"] = uid
                pv.post(value)
                if uid % int(fps // 2) == 0:
                    t = time.monotonic()
                    ctx.get("soak:slow:st", timeout=5)
                    latencies.append(time.monotonic() - t)
                    rss.append(rss_mib())
                time.sleep(max(0.0, t0 + uid / fps - time.monotonic()))
            wait_until(lambda: recorder.ids and recorder.ids[-1] == n, 120, "the last frame")
            result = {"published": n, "processed": len(recorder.ids),
                      "missed": r.counters.n_missed, "queue": r.queue_size,
                      "status_get_max_s": round(max(latencies), 3),
                      "rss_start_mib": round(rss_start, 1), "rss_max_mib": round(max(rss), 1)}
    finally:
        ctx.close()
        server.stop()
    queue_mib = result["queue"] * 2 * np.prod(shape) * 2 / 2**20   # both sides of the queue
    result["failed"] = [text for ok, text in (
        (result["missed"] > 0, "no miss counted"),
        (result["processed"] + result["missed"] == result["published"],
         "processed + missed != published"),
        (result["rss_max_mib"] - result["rss_start_mib"] < queue_mib + 64, "memory grew"),
        (result["status_get_max_s"] < 1.0, "status channel slow")) if not ok]
    return result


# ---------------------------------------------------------------------------
# tampered envelopes
# ---------------------------------------------------------------------------

def _tampered(envelope, kind: int, open_type):
    """A copy of ``envelope`` with one clear or secret part changed."""
    v = Value(open_type, envelope.todict())
    k = kind % 6
    if k == 0:
        c = np.array(v["ciphertext"], copy=True)
        c[kind % c.size] ^= 0x01
        v["ciphertext"] = c
    elif k == 1:
        v["uniqueId"] = int(v["uniqueId"]) + 1000000
    elif k == 2:
        n = np.array(v["nonce"], copy=True)
        n[0] ^= 0xFF
        v["nonce"] = n
    elif k == 3:
        v["ciphertext"] = np.array(v["ciphertext"])[:-17]
    elif k == 4:
        s = np.array(v["signature"], copy=True)
        s[kind % max(1, s.size)] ^= 0x80
        v["signature"] = s
    else:
        v["dims"] = [9999, 9999]
    return v


def tampered(env: dict, n_tampered: int = 1000, per_good: int = 4, workdir=None) -> dict:
    work = Path(workdir or tempfile.mkdtemp(prefix="pvagpu-soak-"))
    for name, kind in (("receiver", "rsa"), ("sender", "ed25519")):
        crypto.generate_key_pair(work / f"{name}.pem", work / f"{name}.pub.pem", kind=kind,
                                 bits=2048)
    rng = np.random.default_rng(11)
    sources = {}
    src_pv = SharedPV(initial=ntnda.value_from_image(np.zeros((24, 32), np.uint16), 0))
    relay, envelopes, decrypted = None, [], {}
    encryptor = AdImageDataEncryptor({
        "privateKeyFilePath": str(work / "sender.pem"), "sign": True,
        "publicKeyFilePath": str(work / "receiver.pub.pem")})
    decryptor = AdImageDataDecryptor({
        "privateKeyFilePath": str(work / "receiver.pem"), "verify": True,
        "expectedChannel": "soak:enc",    # the relay republishes the encryptor's envelopes
        "publicKeyFilePath": str(work / "sender.pub.pem")})
    enc_out = encryptor.updateOutputChannel
    dec_out = decryptor.updateOutputChannel
    encryptor.updateOutputChannel = lambda v: (envelopes.append(v), enc_out(v))[1]
    decryptor.updateOutputChannel = lambda v: (decrypted.__setitem__(int(v["uniqueId"]), v),
                                               dec_out(v))[1]
    server = Server(providers=[{"soak:src": src_pv}])
    relay_server = None
    n_good = n_tampered // per_good
    try:
        with Consumer("soak:src", encryptor, output_channel="soak:enc") as enc:
            wait_until(lambda: enc.receiver.connected, 20, "the encryptor")
            # frame 1 makes the first envelope, which opens the relay's record
            def post(uid):
                image = rng.integers(0, 65535, (24, 32), dtype=np.uint16)
                sources[uid] = ntnda.value_from_image(image, uid)
                src_pv.post(sources[uid])
                wait_until(lambda: len(envelopes) >= uid, 20, f"envelope {uid}")
                return envelopes[uid - 1]
            first = post(1)
            open_type = first.type()
            relay = SharedPV(initial=Value(open_type, first.todict()))
            relay_server = Server(providers=[{"soak:relay": relay}])
            with Consumer("soak:relay", decryptor, output_channel="soak:dec",
                          skip_initial_updates=0) as dec:
                r = dec.receiver
                wait_until(lambda: 1 in decrypted, 20, "the first frame decrypted")
                posted = r.counters.n_received
                k = 0
                for uid in range(2, n_good + 2):
                    envelope = post(uid)
                    for _ in range(per_good):
                        relay.post(_tampered(envelope, k, open_type))
                        k += 1
                    relay.post(Value(open_type, envelope.todict()))
                    posted += per_good + 1
                    wait_until(lambda: r.counters.n_received >= posted, 20, "the decryptor")
                wait_until(lambda: dec.counters.n_processed + dec.counters.n_errors
                           >= r.counters.n_received - 0, 30, "the decryptor's last frame")
                stats = decryptor.getStats()
                result = {"tampered": k, "good": n_good + 1, "rejected": stats["nRejected"],
                          "decrypted": stats["nDecrypted"],
                          "reasons": {key: val for key, val in stats.items()
                                      if key.startswith("nRejected") and key != "nRejected"
                                      and val},
                          "errors_counted": dec.counters.n_errors}
    finally:
        server.stop()
        if relay_server is not None:
            relay_server.stop()
    exact = sum(1 for uid, src in sources.items() if uid in decrypted and
                decrypted[uid]["value"].tobytes() == src["value"].tobytes()
                and decrypted[uid].tostr() == src.tostr())
    result["bit_exact"] = exact
    result["failed"] = [text for ok, text in (
        (result["rejected"] == k, f"{result['rejected']} of {k} tampered rejected"),
        (result["errors_counted"] == k, "rejections not counted by the consumer"),
        (exact == len(sources), f"{exact} of {len(sources)} good frames bit for bit")) if not ok]
    return result


# ---------------------------------------------------------------------------

SCENARIOS = ("rated", "faults", "hostile", "slow", "crypto")


def run(names, profile: dict) -> dict:
    results = {}
    for name in names:
        env = loopback_env()
        os.environ.update(env)
        t0 = time.monotonic()
        if name == "rated":
            res = rated(env, profile["rated_s"], profile["rated_fps"], profile["rated_shape"])
        elif name == "faults":
            res = faults(env, profile["fault_fps"])
        elif name == "hostile":
            res = hostile(env, profile["hostile_bad"])
        elif name == "slow":
            res = slow(env, profile["slow_s"], server_queue=profile["slow_queue"])
        else:
            res = tampered(env, profile["tampered"])
        res["elapsed_s"] = round(time.monotonic() - t0, 1)
        results[name] = res
        shown = {k: v for k, v in res.items() if k != "failed"}
        print(f"{name:8s} {'ok  ' if not res['failed'] else 'FAIL'} {shown}"
              + (f" FAILED: {res['failed']}" if res["failed"] else ""), flush=True)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the short profile")
    p.add_argument("--only", nargs="+", choices=SCENARIOS, help="these scenarios only")
    p.add_argument("--rated-seconds", type=float, help="length of the rated run")
    p.add_argument("--out", default=str(HERE / "results" / "soak.json"))
    args = p.parse_args(argv)
    from _machine import describe, line
    profile = dict(PROFILES["short" if args.quick else "full"])
    if args.rated_seconds:
        profile["rated_s"] = args.rated_seconds
    results = run(args.only or SCENARIOS, profile)
    info = describe()
    print(line(info))
    failed = {name: r["failed"] for name, r in results.items() if r["failed"]}
    out = {"benchmark": "soak", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "profile": "short" if args.quick else "full", "settings": profile,
           "machine": info, "results": results, "failed": failed}
    path = Path(args.out)
    old = json.loads(path.read_text()) if path.exists() else {}
    if args.only and old.get("results"):   # keep the other scenarios' last figures
        out["results"] = {**old["results"], **results}
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
