"""pvagpu-consumer: frames flow, statistics, status and control channels,
faults, reconnects, processor loading, signals (issue 4).

Sources are an in-test p4p server or pvapy-ad-sim-server; everything runs on
loopback ports of its own (conftest), waits on conditions, and stops every
server it starts.
"""
import json
import os
import queue
import signal
import textwrap
import time

import numpy as np
import pytest
from p4p import Type, Value
from p4p.client.thread import Context
from p4p.nt import NTScalar
from p4p.server import Server
from p4p.server.thread import SharedPV

from conftest import wait_for
from pvagpu import ntnda
from pvagpu.cli.consumer import main as cli_main
from pvagpu.consumer import Consumer
from pvagpu.errors import ConfigurationError
from pvagpu.hpc import UserDataProcessor
from pvagpu.processors import FrameCounter
from pvagpu.pva.status import status_fields
from pvagpu.runtime.loading import load_processor_class
from pvagpu.stats import PVAPY_KEY_COUNT, STATS_TYPES, IdTracker

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(4)
IMAGE = RNG.integers(0, 255, (12, 16), dtype=np.uint8)


def _type_with_string_member():
    """NTNDArray whose value union also has a string array (a member no
    image can be in), to send a frame with the wrong union member."""
    name, type_id, fields = ntnda.NTNDARRAY_TYPE.aspy()
    fields = list(fields)
    union = fields[0][1]
    fields[0] = ("value", ("U", union[1], list(union[2]) + [("stringValue", "as")]))
    return Type(fields, id=type_id)


SOURCE_TYPE = _type_with_string_member()


def frame(uid, image=IMAGE, **kw):
    """A good NTNDArray frame of SOURCE_TYPE."""
    return ntnda.build_value(("ubyteValue", image.reshape(-1)), uid, shape=image.shape,
                             dtype=image.dtype, value_type=SOURCE_TYPE, **kw)


class Source:
    """An in-test NTNDArray server on its own p4p Server."""

    def __init__(self, name="src:image", first=0):
        self.name = name
        self.pv = SharedPV(initial=frame(first))
        self.server = Server(providers=[{name: self.pv}])

    def post(self, value):
        self.pv.post(value if isinstance(value, Value) else frame(value))

    def stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def source(pva_env):
    src = Source()
    yield src
    src.stop()


@pytest.fixture
def client(pva_env):
    ctx = Context("pva", nt=False)
    yield ctx
    ctx.close()


def connected(consumer):
    wait_for(lambda: consumer.receiver.connected, timeout=20, message="consumer connected")


def post_all(src, consumer, items):
    """Post each item and wait until the consumer received it (no squashing)."""
    for item in items:
        n = consumer.receiver.counters.n_received
        src.post(item)
        wait_for(lambda: consumer.receiver.counters.n_received > n, timeout=10,
                 message=f"frame {item if isinstance(item, int) else item['uniqueId']} received")


def processed(consumer, n):
    def done():
        s = consumer.stats()["processorStats"]
        return s["nProcessed"] + s["nErrors"] >= n
    wait_for(done, timeout=20, message=f"{n} frames processed")
    return consumer.stats()


# ---------------------------------------------------------------------------
# missed-frame accounting (no PVA)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("offset, ids, missed", [
    (1, [1, 2, 3, 4], 0),
    (1, [1, 2, 5, 6, 10], 5),
    (1, [10, 11, 3, 4, 6], 1),          # a restarted source: backward ids are no loss
    (3, [1, 4, 7, 13], 1),              # every 3rd frame is ours; 10 missed
    (3, [1, 4, 9, 10], 0),              # off-grid ids give no fractional misses
    (4, [2, 6, 22], 3),
])
def test_missed_frames_from_id_gaps(offset, ids, missed):
    tracker = IdTracker(offset)
    assert sum(tracker.update(i) for i in ids) == missed


def _turns(consumer, n_consumers, updates, n_ids):
    """The ids a distributor hands consumer ``consumer`` (0-based): runs of
    ``updates`` consecutive ids, one turn per consumer in order."""
    return [i for i in range(1, n_ids + 1) if ((i - 1) // updates) % n_consumers == consumer]


@pytest.mark.parametrize("n_consumers, updates", [(4, 3), (2, 5), (3, 2), (1, 4)])
def test_missed_frames_with_several_updates_per_turn(n_consumers, updates):
    """Every id of the consumer's pattern that does not arrive is missed,
    none else: checked on random losses against the pattern itself."""
    rng = np.random.default_rng(n_consumers * 10 + updates)
    offset = (n_consumers - 1) * updates + 1
    for consumer in range(n_consumers):
        ours = _turns(consumer, n_consumers, updates, 600)
        for _ in range(20):
            keep = rng.random(len(ours)) > rng.choice([0.0, 0.1, 0.5])
            keep[0] = True
            got = [i for i, k in zip(ours, keep) if k]
            tracker = IdTracker(offset, updates)
            missed = sum(tracker.update(i) for i in got)
            assert missed == sum(1 for i in ours if got[0] < i < got[-1] and i not in got)


@pytest.mark.peer
@pytest.mark.parametrize("n_consumers, updates", [(4, 3), (2, 5), (3, 1)])
def test_missed_frames_agree_with_pvapys_count(n_consumers, updates):
    """pvapy's DataProcessingController and IdTracker count the same
    misses for the same ids (losses inside turns, whole turns, both)."""
    pytest.importorskip("pvaccess")
    from pvapy.hpc.dataProcessingController import DataProcessingController
    from pvapy.hpc.userDataProcessor import UserDataProcessor as PvapyProcessor
    rng = np.random.default_rng(updates)
    offset = (n_consumers - 1) * updates + 1
    ours = _turns(0, n_consumers, updates, 3000)
    for loss in (0.0, 0.05, 0.3):
        got = [i for i in ours if i == 1 or rng.random() >= loss]
        processor = PvapyProcessor()
        processor.objectIdField = "uniqueId"          # set by pvapy's framework
        pvapy = DataProcessingController({"objectIdOffset": offset, "skipInitialUpdates": 0,
                                          "nSequentialUpdates": updates}, processor)
        for i in got:
            pvapy.process({"uniqueId": i})
        tracker = IdTracker(offset, updates)
        assert sum(tracker.update(i) for i in got) == pvapy.nMissed


# ---------------------------------------------------------------------------
# frames flow, output, status
# ---------------------------------------------------------------------------

@pytest.mark.pva
def test_frames_flow_and_are_republished(source, client):
    with Consumer(source.name, FrameCounter({}), output_channel="_", status_channel="_",
                  status_period=0.2) as consumer:
        connected(consumer)
        outputs = []
        sub = client.monitor("pvapy:consumer:1:output", outputs.append)
        try:
            wait_for(lambda: outputs, message="output channel connected")
            post_all(source, consumer, range(1, 21))
            stats = processed(consumer, 20)
            wait_for(lambda: outputs[-1]["uniqueId"] == 20, message="output frame 20")
        finally:
            sub.close()
        p, r = stats["processorStats"], stats["receiverStats"]
        assert (p["nProcessed"], p["nMissed"], p["nErrors"]) == (20, 0, 0)
        assert (p["firstObjectId"], p["lastObjectId"]) == (1, 20)
        assert r["nReceived"] == 21 and r["nSkipped"] == 1 and r["nOverruns"] == 0
        assert stats["userStats"]["nFrames"] == 20
        assert stats["publisherStats"]["nPublished"] == 20
        out = outputs[-1]
        assert np.array_equal(out["value"].reshape(IMAGE.shape), IMAGE)
        assert out.getID() == "epics:nt/NTNDArray:1.0"

        status = wait_for(lambda: (lambda v: v if v["processorStats.nProcessed"] == 20 else None)(
            client.get("pvapy:consumer:1:status", timeout=5)), message="status shows 20 frames")
        assert status["consumerId"] == 1 and status["inputChannel"] == source.name
        assert status["receiverStats.nReceived"] == 21
        assert status["userStats.nFrames"] == 20 and status["userStats.nx"] == 16
        assert status["objectId"] >= 1
    final = consumer.final_stats["processorStats"]
    assert final["endTime"] >= final["startTime"] > 0


@pytest.mark.pva
def test_missed_frames_honour_the_oid_offset(source):
    with Consumer(source.name, FrameCounter({"publish": False}), oid_offset=2) as consumer:
        connected(consumer)
        post_all(source, consumer, [1, 3, 5, 11, 13])     # 7 and 9 missed
        stats = processed(consumer, 5)
    assert stats["processorStats"]["nMissed"] == 2
    assert stats["processorStats"]["nProcessed"] == 5


class Slow(UserDataProcessor):
    def process(self, pvObject):
        time.sleep(0.05)


@pytest.mark.pva
def test_overruns_when_the_queue_is_full(source):
    with Consumer(source.name, Slow(), receiver_queue_size=2, server_queue_size=64) as consumer:
        connected(consumer)
        for uid in range(1, 31):
            source.post(uid)
        counts = consumer.receiver.counters
        wait_for(lambda: counts.n_received == 31, timeout=20, message="30 frames received")
        assert consumer.delivery.queue_length <= 2
        stats = processed(consumer, 31 - 1 - counts.n_overruns)
    r, p, q = stats["receiverStats"], stats["processorStats"], stats["queueStats"]
    assert r["nOverruns"] > 0 and r["nOverruns"] == r["nRejected"] == q["nRejected"]
    assert p["nProcessed"] + r["nOverruns"] == 30
    assert p["nMissed"] == 0          # dropped frames are overruns, not counted twice
    assert q["maxLength"] == 2


class Faulty(FrameCounter):
    def process(self, pvObject):
        if pvObject["uniqueId"] == 6:
            raise RuntimeError("processor bug")
        return FrameCounter.process(self, pvObject)


@pytest.mark.pva
def test_bad_frames_are_counted_and_the_stream_goes_on(source, client, caplog):
    bad_dims = ntnda.build_value(("ubyteValue", np.zeros(10, np.uint8)), 2, shape=(4, 4),
                                 dtype=np.uint8, value_type=SOURCE_TYPE)
    wrong_member = ntnda.build_value(("stringValue", np.array(["a", "b"])), 3, shape=(1, 2),
                                     dtype=np.uint8, value_type=SOURCE_TYPE)
    unknown_codec = ntnda.build_value(("ubyteValue", np.zeros(16, np.uint8)), 4, shape=(4, 4),
                                      dtype=np.uint8, codec="nosuch", value_type=SOURCE_TYPE)
    corrupt = ntnda.build_value(("ubyteValue", RNG.integers(0, 255, 40, dtype=np.uint8)), 5,
                                shape=(8, 8), dtype=np.uint8, codec="lz4", value_type=SOURCE_TYPE)
    with Consumer(source.name, Faulty({}), output_channel="out") as consumer:
        connected(consumer)
        post_all(source, consumer, [frame(1), bad_dims, wrong_member, unknown_codec, corrupt, 6,
                                    frame(7)])
        stats = processed(consumer, 7)
        assert client.get("out", timeout=5)["uniqueId"] == 7
    p = stats["processorStats"]
    assert (p["nProcessed"], p["nErrors"], p["nMissed"]) == (2, 5, 0)
    assert p["nFrameErrors"] == 2 and p["nCodecErrors"] == 2
    assert stats["userStats"]["nFrames"] == 2
    warnings = [r.getMessage() for r in caplog.records if "not processed" in r.getMessage()]
    assert any("processor bug" in w for w in warnings)


@pytest.mark.pva
def test_reconnects_and_counts_the_frames_missed_meanwhile(pva_env):
    src = Source()
    try:
        with Consumer(src.name, FrameCounter({"publish": False})) as consumer:
            connected(consumer)
            post_all(src, consumer, range(1, 6))
            src.stop()
            wait_for(lambda: not consumer.receiver.connected, timeout=20, message="disconnect")
            src = Source(first=5)          # back, still showing frame 5 (a repeat)
            wait_for(lambda: consumer.receiver.counters.n_repeated == 1, timeout=30,
                     message="reconnected")
            assert consumer.receiver.connected
            post_all(src, consumer, [9, 10])  # 6, 7, 8 were published while we were away
            stats = processed(consumer, 7)
    finally:
        src.stop()
    p, r = stats["processorStats"], stats["receiverStats"]
    assert (p["nProcessed"], p["nMissed"], p["lastObjectId"]) == (7, 3, 10)
    assert (r["nDisconnects"], r["nConnects"], r["nRepeated"]) == (1, 2, 1)


class Batched(UserDataProcessor):
    def __init__(self, configDict=None):
        super().__init__(configDict)
        self.batches = []

    def processBatch(self, values):
        self.batches.append([v["uniqueId"] for v in values])


@pytest.mark.pva
def test_accumulated_frames_go_to_processBatch(source):
    processor = Batched()
    with Consumer(source.name, processor, accumulate_objects=4, accumulation_timeout=0.3,
                  server_queue_size=64) as consumer:
        connected(consumer)
        for uid in range(1, 11):
            source.post(uid)
        stats = processed(consumer, 10)
    ids = [i for batch in processor.batches for i in batch]
    assert ids == list(range(1, 11))
    assert all(1 <= len(batch) <= 4 for batch in processor.batches)
    assert stats["processorStats"]["nProcessed"] == 10


class PartlyFailing(UserDataProcessor):
    """processBatch fails the frames with even ids, as a GPU processor does
    for corrupt frames of a batch."""

    def processBatch(self, values):
        from pvagpu.errors import BatchFramesError, FrameError
        bad = [(v["uniqueId"], FrameError(f"frame {v['uniqueId']} is bad"))
               for v in values if v["uniqueId"] % 2 == 0]
        if bad:
            raise BatchFramesError(bad, len(values) - len(bad))


@pytest.mark.pva
def test_frames_failed_inside_a_batch_are_counted_one_by_one(source):
    with Consumer(source.name, PartlyFailing(), accumulate_objects=4, accumulation_timeout=0.3,
                  server_queue_size=64) as consumer:
        connected(consumer)
        for uid in range(1, 11):
            source.post(uid)
        wait_for(lambda: consumer.stats()["processorStats"]["nProcessed"]
                 + consumer.stats()["processorStats"]["nErrors"] >= 10, timeout=20,
                 message="10 frames processed or failed")
        p = consumer.stats()["processorStats"]
    assert (p["nProcessed"], p["nErrors"], p["nMissed"]) == (5, 5, 0)
    assert consumer.counters.n_frame_errors == 5


# ---------------------------------------------------------------------------
# status and control channels (the control channel's own protocol, unknown
# and missing commands included: test_control.py)
# ---------------------------------------------------------------------------

def _group_prefix_matches(ours, pvapy_fields):
    """Our status fields carry pvapy's, in pvapy's order, in every group."""
    ours = dict(ours)
    for name, spec in pvapy_fields:
        mine = ours[name]
        if isinstance(spec, tuple) and spec[0] == "S" and spec[1] == "structure":
            assert mine[0] == "S" and mine[1] == "structure", name
            assert mine[2][:len(spec[2])] == spec[2], name
        else:
            assert mine == spec, name


@pytest.mark.pva
@pytest.mark.peer
def test_status_and_control_structures_match_pvapy(processes, client, source):
    pvapy = processes.start("pvapy-hpc-consumer", "-ic", "nosuch:image", "-id", "7",
                            "-sc", "_", "-cc", "_", "-pf",
                            os.path.join(REPO, "examples", "pvapy_frame_stats.py"),
                            "-pc", "FrameStatsProcessor", "-mc", "pva://meta:x", "-rt", "60",
                            "-dc")
    theirs = wait_status(client, "pvapy:consumer:7:status", lambda v: True,
                         message="pvapy status channel")
    their_control = client.get("pvapy:consumer:7:control", timeout=5)
    pvapy.terminate()

    module = load_processor_class(os.path.join(REPO, "examples", "frame_stats.py"),
                                  "FrameStatsProcessor")
    with Consumer(source.name, module({}), status_channel="_", control_channel="_",
                  metadata_channels=["pva://meta:x"]):
        ours = client.get("pvapy:consumer:1:status", timeout=5)
        our_control = client.get("pvapy:consumer:1:control", timeout=5)
    assert ours["consumerId"] == 1 and our_control["consumerId"] == 1
    # exactly pvapy's structure without pvagpu's extra fields
    from pvagpu.pva.status import user_stats_fields
    pvapy_only = Type(status_fields(user_stats_fields(module({}).getStatsPvaTypes()), [1],
                                    extras=False))
    assert pvapy_only.aspy() == theirs.type().aspy()
    # the served record: pvapy's fields first in every group, then ours
    assert ours.getID() == theirs.getID() == "structure"
    _group_prefix_matches(ours.type().aspy()[2], theirs.type().aspy()[2])
    assert our_control.type().aspy() == their_control.type().aspy()
    for group, count in PVAPY_KEY_COUNT.items():
        assert len(STATS_TYPES[group]) >= count


class MetadataReader(UserDataProcessor):
    """Pairs each frame with the metadata values that arrived before it."""

    def __init__(self, configDict=None):
        super().__init__(configDict)
        self.pairs = []

    def process(self, pvObject):
        values = []
        while True:
            try:
                values.append(self.metadataQueueMap["meta:x"].get(timeout=0)["value"])
            except queue.Empty:
                break
        self.pairs.append((pvObject["uniqueId"], values))


@pytest.mark.pva
def test_metadata_channels_reach_the_processor_and_the_status(source, client):
    meta = SharedPV(nt=NTScalar("d"), initial=0.5)
    server = Server(providers=[{"meta:x": meta}])
    try:
        processor = MetadataReader()
        with Consumer(source.name, processor, status_channel="st",
                      metadata_channels=["pva://meta:x"], status_period=0.2) as consumer:
            connected(consumer)
            assert consumer.metadata.wait_connected(timeout=20)
            meta.post(1.5)
            wait_for(lambda: len(consumer.metadata.queue_map["meta:x"]) == 2,
                     message="metadata queued")
            post_all(source, consumer, [1])
            processed(consumer, 1)
            status = wait_status(client, "st",
                                 lambda v: v["metadataStats_1.receiverStats.nReceived"] == 2,
                                 message="metadata counted on the status channel")
        assert processor.pairs == [(1, [0.5, 1.5])]
        assert status["metadataStats_1.channel"] == "meta:x"
        assert status["metadataStats_1.producerId"] == 1
        assert status["metadataStats_1.queueStats.nDelivered"] == 2
    finally:
        server.stop()


class RecordAdder(UserDataProcessor):
    """Adds its own record to the consumer's server, as pvapy processors do."""

    def start(self):
        self.written = []
        self.pvaServer.addRecord("extra:threshold", Value(Type([("value", "d")]), {"value": 1.0}),
                                 self.written.append)


@pytest.mark.pva
def test_processors_can_add_records_to_the_consumer_server(source, client):
    processor = RecordAdder()
    with Consumer(source.name, processor):
        assert client.get("extra:threshold", timeout=5)["value"] == 1.0
        client.put("extra:threshold", {"value": 2.5}, timeout=5)
        assert [v["value"] for v in processor.written] == [2.5]
        assert client.get("extra:threshold", timeout=5)["value"] == 2.5


def control_messages(client, name):
    messages = []
    sub = client.monitor(name, lambda v: messages.append(v["statusMessage"]))
    wait_for(lambda: messages, message="control channel monitor")
    return messages, sub


@pytest.mark.pva
def test_control_commands(source, client):
    processor = FrameCounter({})
    with Consumer(source.name, processor, status_channel="st", control_channel="ctl",
                  status_period=0) as consumer:
        connected(consumer)
        post_all(source, consumer, range(1, 4))
        processed(consumer, 3)
        messages, sub = control_messages(client, "ctl")
        try:
            def command(cmd, args=None, expect=None):
                n = len(messages)
                client.put("ctl", {"command": cmd} if args is None else
                           {"command": cmd, "args": args}, timeout=5)
                if expect is not None:
                    wait_for(lambda: expect in messages[n:], message=f"{cmd}: {expect}")
                return messages[n:]

            seen = command("configure", json.dumps({"publish": False, "objectIdOffset": 2}),
                           "Configuration successful")
            assert seen.index("Command successful") < seen.index("Configuration successful")
            assert processor.publish is False and consumer.receiver.ids.offset == 2
            assert client.get("ctl", timeout=5)["args"] == '{"publish": false, "objectIdOffset": 2}'
            command("configure", "{not json")
            wait_for(lambda: any(m.startswith("Configuration failed: args are not valid JSON")
                                 for m in messages), message="configure with bad JSON fails")
            assert processor.publish is False
            command("configure", json.dumps({"nSequentialUpdates": 3}),
                    "Configuration successful")
            assert consumer.receiver.ids.sequential == 3

            before = client.get("st", timeout=5)["objectId"]
            command("get_stats", expect="Stats update successful")
            status = client.get("st", timeout=5)
            assert status["objectId"] > before and status["processorStats.nProcessed"] == 3

            command("reset_stats", expect="Stats reset successful")
            assert consumer.stats()["processorStats"]["nProcessed"] == 0
            assert processor.nFrames == 0
            post_all(source, consumer, [5])       # no miss after a reset
            stats = processed(consumer, 1)
            assert stats["processorStats"]["nMissed"] == 0
            assert stats["processorStats"]["firstObjectId"] == 5

            command("stop", expect="Stop flag set")
            assert consumer.wait(timeout=5)
        finally:
            sub.close()


# ---------------------------------------------------------------------------
# processor loading and the command line
# ---------------------------------------------------------------------------

def test_processor_loading_errors(tmp_path, capsys):
    with pytest.raises(ConfigurationError, match="no class 'Nope'"):
        load_processor_class(os.path.join(REPO, "examples", "frame_stats.py"), "Nope")
    with pytest.raises(ConfigurationError, match="cannot import module"):
        load_processor_class(None, "no_such_module:Thing")
    assert load_processor_class(None, "pvagpu.processors:FrameCounter") is FrameCounter
    assert load_processor_class(None, "pvagpu.processors.FrameCounter") is FrameCounter
    cases = [
        (["-pc", "pvagpu.processors:FrameCounter", "-pa", "{bad json"], "not valid JSON"),
        (["-pc", "pvagpu.processors:FrameCounter", "-pa", "[1, 2]"], "JSON object"),
        (["-pf", str(tmp_path / "missing.py"), "-pc", "X"], "does not exist"),
        (["-pc", "pvagpu.processors:Missing"], "no class 'Missing'"),
        (["-pc", "pvagpu.processors:FrameCounter", "-rs", "receiver,bogus"], "bogus"),
    ]
    for args, message in cases:
        assert cli_main(["-ic", "x:image"] + args) == 2
        err = capsys.readouterr().err
        assert "error" in err and message in err, (args, err)


class FailsToStart(UserDataProcessor):
    def start(self):
        raise OSError("no detector geometry file")


@pytest.mark.pva
def test_a_processor_that_fails_to_start_leaves_nothing_running(source, client):
    consumer = Consumer(source.name, FailsToStart(), status_channel="st")
    with pytest.raises(OSError, match="geometry"):
        consumer.start()
    assert consumer.server.channels == [] and consumer.shutdown() is None
    assert isinstance(client.get("st", timeout=0.5, throw=False), Exception)


def test_help_explains_each_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ["-ic", "-oc", "-sc", "-cc", "-pf", "-pc", "-pa", "-of", "-oo", "-siu", "-sqs",
                 "-rqs", "-ao", "-at", "-mc", "-rt", "-rp", "-rs", "-ll", "-lf", "-id", "-nc",
                 "-dc"]:
        assert f"{flag} " in text or f"{flag}," in text, flag
    assert text.count("Example:") >= 20


STOP_MARKER_PROCESSOR = textwrap.dedent("""
    import json
    from pvagpu.hpc import UserDataProcessor

    class Marker(UserDataProcessor):
        def __init__(self, configDict={}):
            UserDataProcessor.__init__(self, configDict)
            self.path = configDict["marker"]
            self.n = 0

        def process(self, pvObject):
            self.n += 1
            self.updateOutputChannel(pvObject)

        def stop(self):
            with open(self.path, "w") as f:
                json.dump({"n": self.n, "id": self.processorId}, f)

        def getStats(self):
            return {"n": self.n}

        def getStatsPvaTypes(self):
            return {"n": "I"}
""")


def wait_status(client, name, condition, timeout=30, message="status"):
    def check():
        value = client.get(name, timeout=1, throw=False)
        return value if not isinstance(value, Exception) and condition(value) else None
    return wait_for(check, timeout=timeout, message=message)


@pytest.mark.pva
@pytest.mark.parametrize("sig, how", [(signal.SIGINT, "file"), (signal.SIGTERM, "module")])
def test_cli_runs_the_processor_and_stops_cleanly_on_signals(sig, how, source, client,
                                                             processes, tmp_path):
    (tmp_path / "marker_proc.py").write_text(STOP_MARKER_PROCESSOR)
    marker = tmp_path / "stopped.json"
    if how == "file":
        processor = ["-pf", str(tmp_path / "marker_proc.py"), "-pc", "Marker"]
    else:
        processor = ["-pc", "marker_proc:Marker"]
        processes.env["PYTHONPATH"] = str(tmp_path)
    proc = processes.start("pvagpu-consumer", "-ic", source.name, "-id", "3", "-sc", "s:*",
                           "-oc", "o:*", *processor, "-pa", json.dumps({"marker": str(marker)}),
                           "-dc", "-rp", "0.5")
    wait_status(client, "s:3", lambda v: v["receiverStats.connected"], message="CLI connected")
    for uid in range(1, 6):
        source.post(uid)
        wait_status(client, "o:3", lambda v, uid=uid: v["uniqueId"] == uid, message=f"output {uid}")
    wait_status(client, "s:3", lambda v: v["processorStats.nProcessed"] == 5 and
                v["userStats.n"] == 5, message="status shows 5 frames")
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert json.loads(marker.read_text()) == {"n": 5, "id": 3}
    summary = out.strip().splitlines()[-1]
    assert "received 6" in summary and "processed 5" in summary and "missed 0" in summary, out


@pytest.mark.pva
def test_cli_control_stop_and_runtime(source, client, processes):
    proc = processes.start("pvagpu-consumer", "-ic", source.name, "-cc", "_", "-sc", "_",
                           "-dc", "-rt", "120")
    wait_status(client, "pvapy:consumer:1:status", lambda v: v["receiverStats.connected"],
                message="CLI connected")
    client.put("pvapy:consumer:1:control", {"command": "stop"}, timeout=5)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "received 1, processed 0" in out, out
    quick = processes.start("pvagpu-consumer", "-ic", source.name, "-rt", "0.5", "-dc")
    out, _ = quick.communicate(timeout=30)
    assert quick.returncode == 0 and "runtime" in out, out


@pytest.mark.pva
def test_cli_n_consumers_each_receive_every_frame(source, client, processes):
    proc = processes.start("pvagpu-consumer", "-ic", source.name, "-nc", "2", "-id", "4",
                           "-sc", "multi:*:status")
    for cid in (4, 5):
        wait_status(client, f"multi:{cid}:status", lambda v: v["receiverStats.connected"],
                    message=f"consumer {cid} connected")
    for uid in range(1, 4):
        source.post(uid)
    for cid in (4, 5):
        status = wait_status(client, f"multi:{cid}:status",
                             lambda v: v["processorStats.nProcessed"] == 3,
                             message=f"consumer {cid} processed 3")
        assert status["consumerId"] == cid
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert out.count("processed 3") == 2 and "2 consumers finished" in out, out


@pytest.mark.pva
@pytest.mark.peer
def test_cli_receives_every_frame_of_pvapy_ad_sim_server(processes, client):
    # the sim server serves its channel during the start delay, so the
    # consumer connects (to the empty record, skipped) before frame 1
    sim = processes.start("pvapy-ad-sim-server", "-cn", "sim:image", "-nx", "32", "-ny", "24",
                          "-fps", "20", "-rt", "2", "-std", "3", "-shd", "0", "-dc")
    proc = processes.start("pvagpu-consumer", "-ic", "sim:image", "-sc", "_",
                           "-pc", "pvagpu.processors:FrameCounter", "-dc")
    wait_status(client, "pvapy:consumer:1:status", lambda v: v["receiverStats.connected"],
                message="consumer connected")
    sim.communicate(timeout=60)        # all frames published, server gone
    status = wait_status(
        client, "pvapy:consumer:1:status",
        lambda v: not v["receiverStats.connected"] and v["queueStats.nQueued"] == 0,
        message="consumer saw the server go")
    p = status["processorStats"]
    assert p["firstObjectId"] == 1 and p["lastObjectId"] == p["nProcessed"] >= 30
    assert p["nMissed"] == 0 and p["nErrors"] == 0
    assert status["userStats.nFrames"] == p["nProcessed"]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    summary = out.strip().splitlines()[-1]
    assert f"received {p['nProcessed'] + 1}, processed {p['nProcessed']}, missed 0, errors 0, " \
           f"overruns 0" in summary, out
