"""Metadata channels (pvagpu.pva.metadata): spec parsing, the bounded queue,
PVA monitors against an in-test p4p server, and Channel Access against the
soft IOC that epicscorelibs (a p4p dependency) ships, through pyepics."""
import os
import queue
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from p4p import Type, Value
from p4p.client.thread import Context
from p4p.nt import NTScalar
from p4p.server import Server
from p4p.server.thread import SharedPV

from conftest import loopback_env, process_env, wait_for
from pvagpu.errors import ConfigurationError
from pvagpu.ntnda import TIME_T
from pvagpu.pva.loopback import ca_loopback_env
from pvagpu.pva.metadata import MetadataChannels, parse_spec, parse_specs
from pvagpu.pva.metadata_queue import DEFAULT_METADATA_QUEUE_SIZE, MetadataQueue
from pvagpu.pva.publisher import LocalServer
from pvagpu.pva.status import StatusChannel


# --------------------------------------------------------------------------
# specifications
# --------------------------------------------------------------------------

def test_parse_specs_normalizes_in_order():
    assert parse_specs("pva://a:b,ca://c,d") == ["pva://a:b", "ca://c", "ca://d"]
    assert parse_specs(" PVA://x , y ,") == ["pva://x", "ca://y"]
    assert parse_specs("a,,b") == ["ca://a", "ca://b"]
    assert parse_specs("") == [] and parse_specs(None) == []
    assert parse_spec("pva://dev:image.uniqueId") == ("pva", "dev:image.uniqueId")


@pytest.mark.parametrize("text, message", [
    ("http://x", "unknown protocol 'http'"),
    ("pva://", "empty name"),
    ("ca://", "empty name"),
    ("pva://a b", "not allowed"),
    ("pva://pva://a", "contains '://'"),
    ("pva://a,ca://a", "given twice"),
    ("a,a", "given twice"),
])
def test_parse_specs_rejects(text, message):
    with pytest.raises(ConfigurationError, match=message):
        parse_specs(text)


def test_constructor_validates_lists():
    with pytest.raises(ConfigurationError, match="','"):
        MetadataChannels(["pva://a,b"])
    with pytest.raises(ConfigurationError, match="must be a string"):
        MetadataChannels([3])
    with pytest.raises(ConfigurationError, match="given twice"):
        MetadataChannels(["pva://a", "pva://a"])
    mc = MetadataChannels("pva://a,pva://b", queue_size=0)
    assert mc.specs == ["pva://a", "pva://b"] and list(mc.queue_map) == ["a", "b"]
    assert mc.queue_size == DEFAULT_METADATA_QUEUE_SIZE   # 0 = default, never unbounded
    assert mc.stats()["metadata-2"]["channel"] == "b"
    mc.stop()   # stop without start is harmless


def test_ca_without_pyepics_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "epics", None)   # makes `import epics` fail
    with pytest.raises(ConfigurationError, match=r"ca:// metadata channels need pyepics: pip install pyepics"):
        MetadataChannels(["ca://x"])
    with pytest.raises(ConfigurationError, match="need pyepics"):
        MetadataChannels(["bare:name"])
    MetadataChannels(["pva://x"])   # PVA alone does not need it


# --------------------------------------------------------------------------
# the queue
# --------------------------------------------------------------------------

def test_queue_bounded_fifo_and_counters():
    q = MetadataQueue(3)
    assert [q.put(i) for i in range(5)] == [True, True, True, False, False]
    assert q.stats() == {"nReceived": 3, "nRejected": 2, "nDelivered": 0, "nQueued": 3}
    assert [q.get(), q.get(timeout=1.0), q.get_nowait()] == [0, 1, 2]
    with pytest.raises(queue.Empty):
        q.get()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    assert q.getCounters() == {"nReceived": 3, "nRejected": 2, "nDelivered": 3, "nQueued": 0}
    q.maxLength = 1
    assert q.put("a") and not q.put("b") and q.maxLength == 1
    q.resetCounters()
    assert q.stats() == {"nReceived": 0, "nRejected": 0, "nDelivered": 0, "nQueued": 1}
    assert q.clear() == 1 and q.empty()


def test_queue_get_waits_for_a_put():
    q = MetadataQueue(2)
    threading.Timer(0.05, q.put, args=("late",)).start()
    assert q.get(timeout=10) == "late"


# --------------------------------------------------------------------------
# PVA channels against an in-test p4p server
# --------------------------------------------------------------------------

PLAIN = Type([("value", "d"), ("timeStamp", TIME_T)])


def plain_value(x, seconds):
    return Value(PLAIN, {"value": x, "timeStamp": {"secondsPastEpoch": seconds, "nanoseconds": 7}})


@pytest.fixture
def server(pva_env):
    """A loopback p4p server with an NTScalar channel and a plain
    {value, timeStamp} channel; stopped at the end of the test."""
    pvs = {"md:scalar": SharedPV(nt=NTScalar("d"), initial=0.0),
           "md:plain": SharedPV(initial=plain_value(0.0, 1000))}
    srv = Server(providers=[pvs])
    yield pvs
    srv.stop()


def received(mc, n):
    return mc.stats()[f"metadata-{n}"]["receiverStats"]["nReceived"]


def drain(q):
    out = []
    while len(q):
        out.append(q.get())
    return out


@pytest.mark.pva
def test_updates_arrive_in_order(server):
    with MetadataChannels(["pva://md:scalar", "pva://md:plain"], server_queue_size=100) as mc:
        assert mc.wait_connected(10)
        wait_for(lambda: received(mc, 1) == 1 and received(mc, 2) == 1, message="initial values")
        for i in range(1, 31):
            server["md:scalar"].post(float(i), timestamp=1.7e9 + i)
            server["md:plain"].post(plain_value(10.0 * i, 1000 + i))
        wait_for(lambda: received(mc, 1) == 31 and received(mc, 2) == 31, message="31 updates each")

        scalars = drain(mc.queue_map["md:scalar"])
        assert [v["value"] for v in scalars] == [float(i) for i in range(31)]
        assert [v["timeStamp.secondsPastEpoch"] for v in scalars[1:]] == [
            1_700_000_000 + i for i in range(1, 31)]
        plains = drain(mc.queue_map["md:plain"])
        assert [v["value"] for v in plains] == [10.0 * i for i in range(31)]
        assert [v["timeStamp.secondsPastEpoch"] for v in plains] == [1000 + i for i in range(31)]
        assert plains[5]["timeStamp.nanoseconds"] == 7

        with pytest.raises(queue.Empty):
            mc.queue_map["md:scalar"].get(timeout=0.05)
        stats = mc.stats()
        assert stats["metadata-1"]["queueStats"] == {
            "nReceived": 31, "nRejected": 0, "nDelivered": 31, "nQueued": 0}
        assert stats["metadata-2"]["receiverStats"]["nOverruns"] == 0


@pytest.mark.pva
def test_full_queue_drops_and_counts(server):
    mc = MetadataChannels(["pva://md:scalar"], queue_size=3, server_queue_size=50)
    mc.start()
    try:
        wait_for(lambda: received(mc, 1) == 1, message="initial value")
        for i in range(1, 11):
            server["md:scalar"].post(float(i))
        wait_for(lambda: received(mc, 1) == 11, message="11 updates")

        q = mc.queue_map["md:scalar"]
        assert [v["value"] for v in drain(q)] == [0.0, 1.0, 2.0]   # the oldest kept
        s = mc.stats(receiving_time=2.0)["metadata-1"]
        assert s["channel"] == "md:scalar"
        assert s["queueStats"] == {"nReceived": 3, "nRejected": 8, "nDelivered": 3, "nQueued": 0}
        r = s["receiverStats"]
        assert (r["nReceived"], r["nOverruns"], r["nRejected"]) == (11, 8, 0)
        assert r["receivedRate"] == pytest.approx(5.5) and r["overrunRate"] == pytest.approx(4.0)
        assert r["rejectedRate"] == 0.0

        # the status channel structure, filled with the real figures
        status_server = LocalServer("test-status")
        try:
            channel = StatusChannel(status_server, "test:status", 1, "det:image",
                                    metadata_ids=[1])
            status = channel.value_for({"consumerId": 1, "metadataStats": mc.stats()})
        finally:
            status_server.stop()
        assert status["metadataStats_1.producerId"] == 1
        assert status["metadataStats_1.channel"] == "md:scalar"
        assert status["metadataStats_1.receiverStats.nReceived"] == 11
        assert status["metadataStats_1.receiverStats.nOverruns"] == 8
        assert status["metadataStats_1.queueStats.nRejected"] == 8
        assert status["metadataStats_1.queueStats.nDelivered"] == 3
        assert status["metadataStats_1.receiverStats.receivedRate"] > 0

        mc.reset_stats()
        assert mc.stats()["metadata-1"]["receiverStats"]["nReceived"] == 0
        assert mc.stats()["metadata-1"]["queueStats"]["nRejected"] == 0
    finally:
        mc.stop()


@pytest.mark.pva
def test_stop_is_clean(server):
    mc = MetadataChannels(["pva://md:scalar", "pva://md:absent"])
    mc.start()
    wait_for(lambda: mc.connected["md:scalar"], message="connection")
    assert not mc.wait_connected(0.05)     # md:absent never connects
    wait_for(lambda: received(mc, 1) == 1, message="initial value")
    mc.stop()
    mc.stop()                              # idempotent
    assert mc.connected == {"md:scalar": False, "md:absent": False}

    # an update that a still-open probe monitor sees does not reach mc
    seen = queue.Queue()
    with Context("pva", nt=False) as probe:
        sub = probe.monitor("md:scalar", seen.put)
        try:
            assert seen.get(timeout=10)["value"] == 0.0
            server["md:scalar"].post(42.0)
            assert seen.get(timeout=10)["value"] == 42.0
        finally:
            sub.close()
    assert received(mc, 1) == 1
    assert [v["value"] for v in drain(mc.queue_map["md:scalar"])] == [0.0]   # kept after stop


@pytest.mark.pva
def test_disconnect_is_noticed(pva_env):
    pv = SharedPV(nt=NTScalar("i"), initial=5)
    srv = Server(providers=[{"md:gone": pv}])
    mc = MetadataChannels(["pva://md:gone"]).start()
    try:
        assert mc.wait_connected(10)
        srv.stop()
        wait_for(lambda: not mc.connected["md:gone"], message="disconnect")
        assert mc.queue_map["md:gone"].get(timeout=1)["value"] == 5
    finally:
        mc.stop()
        srv.stop()


# --------------------------------------------------------------------------
# Channel Access against epicscorelibs' soft IOC
# --------------------------------------------------------------------------

IOC_DB = """\
record(ao, "md:ca") { field(PREC, "3") }
record(waveform, "md:wf") { field(FTVL, "LONG") field(NELM, "4") }
record(stringout, "md:s") {}
record(mbbo, "md:enum") { field(ZRST, "zero") field(ONST, "one") }
"""


class Ioc:
    """epicscorelibs' soft IOC in a subprocess, driven through its console."""

    def __init__(self, db_path, env):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "epicscorelibs.ioc", "-d", str(db_path)],
            env=process_env(env), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def ready(self):
        assert self.proc.poll() is None, "IOC exited:\n" + "".join(self.lines)
        return any("IOC Running" in line for line in self.lines)

    def dbpf(self, name, value):
        self.proc.stdin.write(f"ioc({f'dbpf {name} {value}'!r})\n")
        self.proc.stdin.flush()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)


@pytest.fixture(scope="module")
def ca_ioc(tmp_path_factory):
    """One IOC for the module. libca (inside pyepics) reads EPICS_CA_* once
    per process, when its context is created, so the CA settings are
    process-wide for the rest of the session; they confine CA to loopback."""
    pytest.importorskip("epics", reason="pyepics (the optional CA client) is not installed")
    ca_env = ca_loopback_env()
    saved = {key: os.environ.get(key) for key in ca_env}
    os.environ.update(ca_env)
    db = tmp_path_factory.mktemp("ioc") / "md.db"
    db.write_text(IOC_DB)
    ioc = Ioc(db, {**loopback_env(), **ca_env})
    try:
        wait_for(ioc.ready, timeout=15, message="IOC start")
        yield ioc
    finally:
        ioc.stop()
        for key, val in saved.items():
            if val is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = val


@pytest.mark.pva
def test_ca_updates_as_values(ca_ioc):
    mc = MetadataChannels(["ca://md:ca", "md:wf", "ca://md:s", "md:enum"], queue_size=10)
    mc.start()
    try:
        assert mc.wait_connected(10)
        wait_for(lambda: all(received(mc, n) >= 1 for n in (1, 2, 3, 4)), message="initial values")
        initial = drain(mc.queue_map["md:ca"])
        assert len(initial) == 1 and initial[0]["alarm.severity"] == 3   # INVALID: never processed

        for x in (1.5, 2.5, 3.5):
            ca_ioc.dbpf("md:ca", x)
        ca_ioc.dbpf("md:wf", '"[1,2,3]"')
        ca_ioc.dbpf("md:s", "hello")
        ca_ioc.dbpf("md:enum", 1)
        wait_for(lambda: received(mc, 1) == 4 and received(mc, 2) >= 2
                 and received(mc, 3) >= 2 and received(mc, 4) >= 2, message="CA updates")

        values = drain(mc.queue_map["md:ca"])
        assert [v["value"] for v in values] == [1.5, 2.5, 3.5]
        assert values[0].type()["value"] == "d"
        assert values[0]["alarm.severity"] == 0
        stamps = [v["timeStamp.secondsPastEpoch"] + 1e-9 * v["timeStamp.nanoseconds"] for v in values]
        assert stamps == sorted(stamps) and abs(stamps[-1] - time.time()) < 600

        wf = drain(mc.queue_map["md:wf"])[-1]
        assert wf.type()["value"] == "ai"
        np.testing.assert_array_equal(wf["value"], [1, 2, 3])
        assert drain(mc.queue_map["md:s"])[-1]["value"] == "hello"
        enum = drain(mc.queue_map["md:enum"])[-1]
        assert (enum["value"], enum.type()["value"]) == (1, "H")

        s = mc.stats()["metadata-1"]
        assert s["channel"] == "md:ca"
        assert s["receiverStats"]["nReceived"] == 4 and s["receiverStats"]["nRejected"] == 0
        assert s["queueStats"] == {"nReceived": 4, "nRejected": 0, "nDelivered": 4, "nQueued": 0}
    finally:
        mc.stop()
    assert not any(mc.connected.values())
