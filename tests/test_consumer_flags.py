"""pvagpu-consumer's -cid/--consumer-id-list, -ifs/--id-format-spec and
-fr/--field-request, with pvapy-hpc-consumer's names, semantics and defaults
(INTEROP 3.1; pvaPy pvapy/cli/hpcConsumer.py, pvapy/hpc/systemController.py,
dataConsumerController.py, dataConsumer.py).

PVA tests run on loopback ports of their own (conftest), wait on conditions
and stop every server they start.
"""
import json
import re
import signal
import textwrap

import numpy as np
import pytest
from p4p import Type, Value
from p4p.client.thread import Context
from p4p.server import Server
from p4p.server.thread import SharedPV

from conftest import wait_for
from pvagpu import ntnda
from pvagpu.cli import consumer as cli
from pvagpu.consumer import Consumer
from pvagpu.errors import ConfigurationError
from pvagpu.hpc import UserDataProcessor
from pvagpu.processors import FrameCounter
from pvagpu.pva.receiver import Receiver, monitor_request, parse_field_request
from pvagpu.runtime.naming import channel_name, format_id, parse_id_list

IMAGE = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)


# ---------------------------------------------------------------------------
# -cid / --consumer-id-list: a strict parser instead of pvapy's eval
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, ids", [
    ("1,3,7", [1, 3, 7]),
    (" 2 , 5 ", [2, 5]),
    ("[4,2]", [4, 2]),                   # pvapy evaluates "[...]" as written
    ("9", [9]),
    ("range(1,5)", [1, 2, 3, 4]),
    ("range(2, 11, 3)", [2, 5, 8]),
    ("range(5,1,-2)", [5, 3]),
    ("range(3)", [0, 1, 2]),
])
def test_consumer_id_list_forms(text, ids):
    assert parse_id_list(text) == ids


@pytest.mark.parametrize("text, message", [
    ("range(1,5", "expected range(first,last+1[,step])"),
    ("range(1,5,0)", "step is 0"),
    ("range(a,b)", "expected range(first,last+1[,step])"),
    ("range(0,10**9)", "expected range(first,last+1[,step])"),
    ("range(0,100000)", "at most"),
    ("range(4,1)", "names no consumer"),
    ("__import__('os')", "expected comma-separated ids"),
    ("1;2", "expected comma-separated ids"),
    ("1,,2", "expected comma-separated ids"),
    ("1.5", "expected comma-separated ids"),
    ("-3", "expected comma-separated ids"),
    ("", "expected comma-separated ids"),
    ("2,5,2", "id 2 is given twice"),
])
def test_bad_consumer_id_lists_are_refused(text, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        parse_id_list(text)


def test_bad_consumer_id_list_on_the_command_line(capsys, tmp_path):
    """Exit 2 with the reason; the text is never evaluated."""
    canary = tmp_path / "evaluated"
    for text in ["range(1,5", f"__import__('pathlib').Path({str(canary)!r}).touch()"]:
        with pytest.raises(SystemExit) as exc:
            cli.main(["-ic", "x:image", "-cid", text])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "argument -cid/--consumer-id-list" in err and "consumer id list" in err, err
    assert not canary.exists()


@pytest.fixture
def dispatched(monkeypatch):
    """main()'s choice between one consumer and several, without starting any."""
    calls = []
    monkeypatch.setattr(cli, "_run_one", lambda args: calls.append(("one", args)) or 0)
    monkeypatch.setattr(cli, "_run_many",
                        lambda parser, args, ids: calls.append(("many", args, ids)) or 0)
    return calls


def test_consumer_id_list_overrides_id_and_n_consumers(dispatched):
    assert cli.main(["-ic", "x:*", "-id", "1", "-nc", "4", "-cid", "3,9", "-du", "1"]) == 0
    how, args, ids = dispatched.pop()
    assert how == "many" and ids == [3, 9]
    assert (args.consumer_id, args.n_consumers) == (3, 2)
    assert args.oid_offset == 2            # (N-1)*U+1 with N = the number of listed ids
    assert cli.main(["-ic", "x:*", "-nc", "3", "-cid", "7"]) == 0
    how, args = dispatched.pop()
    assert how == "one" and args.consumer_id == 7
    assert cli.main(["-ic", "x:*", "-id", "4", "-nc", "2"]) == 0      # -nc as before
    assert dispatched.pop()[2] == [4, 5]


def test_children_get_their_id_and_the_new_flags():
    parser = cli.build_parser()
    args = parser.parse_args(["-ic", "x:*", "-cid", "2,5", "-ifs", "03d", "-fr", "value",
                              "-sc", "_"])
    argv = cli._child_argv(parser, args, 5)
    assert "--id-format-spec=03d" in argv and "--field-request=value" in argv
    assert "--consumer-id=5" in argv and "--n-consumers=1" in argv
    assert not any(a.startswith("--consumer-id-list") for a in argv)
    child = parser.parse_args(argv)
    assert (child.consumer_id, child.consumer_id_list, child.id_format_spec,
            child.field_request) == (5, None, "03d", "value")


# ---------------------------------------------------------------------------
# -ifs / --id-format-spec
# ---------------------------------------------------------------------------

def test_id_format_spec_applies_wherever_the_id_goes_into_a_name():
    assert format_id(7) == "7" and format_id(7, "") == "7" and format_id(7, "03d") == "007"
    assert channel_name("_", "status", 7, "03d") == "pvapy:consumer:007:status"
    assert channel_name("_", "control", 12, "04x") == "pvapy:consumer:000c:control"
    assert channel_name("det*:image", "input", 3, "02d") == "det03:image"
    assert channel_name("out:*:*", "output", 3, ">3") == "out:  3:  3"
    assert channel_name("_", "output", 3) == "pvapy:consumer:3:output"
    consumer = Consumer("in:*", None, consumer_id=4, id_format_spec="03d",
                        output_channel="_", status_channel="s:*", control_channel="_")
    assert (consumer.input_channel, consumer.output_channel, consumer.status_channel_name,
            consumer.control_channel_name) == ("in:004", "pvapy:consumer:004:output", "s:004",
                                               "pvapy:consumer:004:control")
    assert consumer.consumer_id == 4          # the id itself stays a number
    with pytest.raises(ConfigurationError, match="cannot format consumer id 4"):
        Consumer("in", None, consumer_id=4, id_format_spec="s")


@pytest.mark.parametrize("spec", ["s", "{", "q", "03.2f}", ".3"])
def test_bad_id_format_spec_exits_with_the_reason(spec, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["-ic", "x:*", "-ifs", spec])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument -ifs/--id-format-spec" in err and f"id format spec {spec!r}" in err, err


# ---------------------------------------------------------------------------
# -fr / --field-request: the request string (pvapy's getPvMonitorRequest)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, oid, fields", [
    ("", "uniqueId", ()),                                     # the default: every field
    ("value", "uniqueId", ("uniqueId", "value")),             # the oid field first, as pvapy
    ("value,uniqueId", "uniqueId", ("value", "uniqueId")),
    ("field(value, codec.name)", "uniqueId", ("uniqueId", "value", "codec.name")),
    ("timeStamp", "timeStamp.userTag", ("timeStamp",)),       # a structure holding the oid
    ("value", "timeStamp.userTag", ("timeStamp.userTag", "value")),
])
def test_field_request_always_includes_the_oid_field(text, oid, fields):
    assert parse_field_request(text, oid) == fields


def test_field_request_reaches_the_monitor_request():
    fields = parse_field_request("value,codec", "uniqueId")
    assert monitor_request(0, None, fields=fields) == "field(uniqueId,value,codec)"
    assert monitor_request(8, None, fields=fields) == \
        "record[queueSize=8]field(uniqueId,value,codec)"
    receiver = Receiver("x:image", field_request="compressedSize", server_queue_size=4)
    assert receiver.request == "record[queueSize=4]field(uniqueId,compressedSize)"
    assert Receiver("x:image").request == "field()"
    # what p4p makes of it: the pvRequest that goes to the server
    from p4p.client.raw import Context as RawContext
    assert RawContext.makeRequest(receiver.request).todict() == {
        "field": {"uniqueId": {}, "compressedSize": {}}, "record": {"_options": {"queueSize": "4"}}}


def test_field_request_is_ignored_with_a_warning_when_the_distributor_is_used(caplog):
    receiver = Receiver("x:image", field_request="value", distributor={"updates": 1})
    assert receiver.fields == ()
    assert isinstance(receiver.request, Value)
    assert receiver.request.todict() == {"field": {"_": {"_options": {"pydistributor":
                                                                      "updates:1"}}}}
    assert any("field request 'value' ignored" in r.getMessage() and r.levelname == "WARNING"
               for r in caplog.records)


@pytest.mark.parametrize("text", ["value[x=y]", "field(value", "value,,codec",
                                  "_[pydistributor=updates:1]", "value codec"])
def test_bad_field_request_exits_with_the_reason(text, capsys):
    with pytest.raises(ConfigurationError, match="is not a field name"):
        parse_field_request(text)
    with pytest.raises(SystemExit) as exc:
        cli.main(["-ic", "x:image", "-fr", text])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument -fr/--field-request" in err and "is not a field name" in err, err


def test_help_explains_the_new_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag, example in [("-cid", "Example: -cid 1,3,7"), ("-ifs", "Example: -ifs 03d"),
                          ("-fr", "Example: -fr")]:
        assert f"{flag} " in text, flag
        section = text[text.index(f"  {flag} "):]
        section = section[:section.index("\n  -", 1)]
        assert example in " ".join(section.split()), (flag, section)


# ---------------------------------------------------------------------------
# PVA: what the processor receives with a field request
# ---------------------------------------------------------------------------

class FieldRecorder(UserDataProcessor):
    """Keeps, per frame, the fields the server sent and whether pixels came."""

    def __init__(self, configDict=None):
        super().__init__(configDict)
        self.frames = []

    def process(self, pvObject):
        self.frames.append({"uniqueId": pvObject["uniqueId"],
                            "fields": sorted(pvObject.keys()),
                            "changed": sorted(pvObject.changedSet()),
                            "pixels": "value" in pvObject and pvObject["value"] is not None})


def frame(uid):
    return ntnda.value_from_image(IMAGE, uid)


@pytest.fixture
def source(pva_env):
    pv = SharedPV(initial=frame(0))
    server = Server(providers=[{"flags:image": pv}])
    yield pv
    server.stop()


def run_frames(pv, consumer, ids):
    wait_for(lambda: consumer.receiver.connected, timeout=30, message="consumer connected")
    for uid in ids:
        n = consumer.receiver.counters.n_received
        pv.post(frame(uid))
        wait_for(lambda: consumer.receiver.counters.n_received > n, timeout=15,
                 message=f"frame {uid} received")

    def done():
        p = consumer.stats()["processorStats"]
        return p["nProcessed"] + p["nErrors"] >= len(ids)
    wait_for(done, timeout=20, message=f"{len(ids)} frames processed")
    return consumer.stats()


@pytest.mark.pva
def test_server_sends_only_the_requested_fields(source):
    """A p4p (pvxs) server keeps the type but sends and marks only the
    requested fields: no pixels reach the processor."""
    recorder = FieldRecorder()
    with Consumer("flags:image", recorder, field_request="compressedSize") as consumer:
        stats = run_frames(source, consumer, [1, 2, 3])
    assert stats["processorStats"]["nProcessed"] == 3
    assert [f["uniqueId"] for f in recorder.frames] == [1, 2, 3]
    for f in recorder.frames:
        assert f["changed"] == ["compressedSize", "uniqueId"] and not f["pixels"], f
    full = FieldRecorder()
    with Consumer("flags:image", full) as consumer:           # no -fr: everything
        run_frames(source, consumer, [4])
    assert full.frames[0]["pixels"] and "dimension" in full.frames[0]["changed"]


@pytest.mark.pva
def test_frames_without_the_fields_a_processor_needs(source, pva_env):
    """FrameCounter decodes the image. Without dimensions a frame is an empty
    one (no image, as before); dimensions without pixels are a bad frame,
    and a structure lacking the fields (what a pvDatabase server sends for a
    field request) fails too: counted errors, and the stream goes on."""
    counter = FrameCounter({"publish": False})
    with Consumer("flags:image", counter, field_request="uniqueId") as consumer:
        stats = run_frames(source, consumer, [1, 2, 3])
    p = stats["processorStats"]
    assert (p["nProcessed"], p["nErrors"], p["nMissed"], p["lastObjectId"]) == (3, 0, 0, 3)
    assert counter.nFrames == 0
    with Consumer("flags:image", FrameCounter({"publish": False}),
                  field_request="dimension") as consumer:
        stats = run_frames(source, consumer, [4, 5])
    p = stats["processorStats"]
    assert (p["nProcessed"], p["nErrors"], p["nFrameErrors"], p["lastObjectId"]) == (0, 2, 2, 5)

    subset_type = Type([("uniqueId", "i"), ("codec", ("S", None, [("name", "s")]))])
    subset = SharedPV(initial=Value(subset_type, {"uniqueId": 0}))
    server = Server(providers=[{"flags:subset": subset}])
    try:
        with Consumer("flags:subset", FrameCounter({"publish": False})) as consumer:
            wait_for(lambda: consumer.receiver.connected, timeout=30, message="connected")
            for uid in (1, 2):
                n = consumer.receiver.counters.n_received
                subset.post(Value(subset_type, {"uniqueId": uid}))
                wait_for(lambda: consumer.receiver.counters.n_received > n, timeout=15,
                         message=f"subset frame {uid}")
            wait_for(lambda: consumer.stats()["processorStats"]["nErrors"] == 2, timeout=20,
                     message="2 errors counted")
            assert consumer.stats()["processorStats"]["lastObjectId"] == 2
    finally:
        server.stop()


@pytest.mark.pva
@pytest.mark.peer
def test_pvapy_server_sends_a_structure_of_the_requested_fields(processes):
    """pvapy-ad-sim-server (pvDatabase) sends just the requested fields."""
    sim = processes.start("pvapy-ad-sim-server", "-cn", "flags:sim", "-nx", "8", "-ny", "8",
                          "-fps", "20", "-rt", "60", "-std", "2", "-shd", "0", "-dc")
    recorder = FieldRecorder()
    with Consumer("flags:sim", recorder, field_request="field(codec.name)") as consumer:
        wait_for(lambda: consumer.stats()["processorStats"]["nProcessed"] >= 3, timeout=60,
                 message="3 frames from pvapy-ad-sim-server")
    sim.terminate()
    for f in recorder.frames[:3]:
        assert f["fields"] == ["codec", "uniqueId"] and not f["pixels"], f
    assert consumer.final_stats["processorStats"]["nMissed"] == 0


# ---------------------------------------------------------------------------
# PVA: the command line with pvagpu-sim-server
# ---------------------------------------------------------------------------

def wait_status(client, name, condition, timeout=60, message="status"):
    def check():
        value = client.get(name, timeout=1, throw=False)
        return value if not isinstance(value, Exception) and condition(value) else None
    return wait_for(check, timeout=timeout, message=message, interval=0.2)


@pytest.fixture
def sim(processes):
    """pvagpu-sim-server: small frames, 20 per second, until stopped."""
    return processes.start("pvagpu-sim-server", "-cn", "flags:sim", "-nx", "16", "-ny", "8",
                           "-cs", "4", "-fps", "20", "-rt", "300", "-std", "0", "-shd", "0")


@pytest.fixture
def client(pva_env):
    ctx = Context("pva", nt=False)
    yield ctx
    ctx.close()


@pytest.mark.pva
def test_cli_consumer_id_list_with_id_format(sim, processes, client):
    proc = processes.start("pvagpu-consumer", "-ic", "flags:sim", "-cid", "2,5", "-ifs", "03d",
                           "-sc", "_", "-cc", "_", "-pc", "pvagpu.processors:FrameCounter")
    for cid in (2, 5):
        status = wait_status(client, f"pvapy:consumer:{cid:03d}:status",
                             lambda v: v["processorStats.nProcessed"] >= 3,
                             message=f"consumer {cid} processed 3 frames")
        assert status["consumerId"] == cid and status["inputChannel"] == "flags:sim"
        assert status["userStats.nFrames"] >= 3 and status["processorStats.nErrors"] == 0
        assert client.get(f"pvapy:consumer:{cid:03d}:control", timeout=5)["consumerId"] == cid
    # no consumer 1 (-id's default) and no unformatted names
    for name in ("pvapy:consumer:001:status", "pvapy:consumer:2:status"):
        assert isinstance(client.get(name, timeout=0.5, throw=False), Exception), name
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "2 consumers finished, exit codes 0, 0" in out, out


FIELD_PROCESSOR = textwrap.dedent("""
    import json
    from pvagpu import pva
    from pvagpu.hpc import UserDataProcessor

    class FieldLogger(UserDataProcessor):
        def __init__(self, configDict={}):
            UserDataProcessor.__init__(self, configDict)
            self.config = {k: configDict[k] for k in (
                "processorId", "inputChannel", "outputChannel", "fieldRequest")}
            self.path = configDict["marker"]
            self.n = 0
            self.nPixels = 0
            self.changed = set()

        def process(self, pvObject):
            self.n += 1
            self.changed.update(pvObject.changedSet())
            if pvObject["value"] is not None:
                self.nPixels += 1

        def stop(self):
            with open(self.path, "w") as f:
                json.dump({"config": self.config, "n": self.n, "nPixels": self.nPixels,
                           "changed": sorted(self.changed)}, f)

        def getStats(self):
            return {"n": self.n, "nPixels": self.nPixels}

        def getStatsPvaTypes(self):
            return {"n": pva.UINT, "nPixels": pva.UINT}
""")


@pytest.mark.pva
def test_cli_field_request_and_single_listed_id(sim, processes, client, tmp_path):
    (tmp_path / "field_logger.py").write_text(FIELD_PROCESSOR)
    marker = tmp_path / "stopped.json"
    proc = processes.start("pvagpu-consumer", "-ic", "flags:sim", "-cid", "7", "-ifs", "03d",
                           "-sc", "_", "-oc", "out:*", "-fr", "compressedSize",
                           "-pf", str(tmp_path / "field_logger.py"), "-pc", "FieldLogger",
                           "-pa", json.dumps({"marker": str(marker)}))
    status = wait_status(client, "pvapy:consumer:007:status", lambda v: v["userStats.n"] >= 3,
                         message="consumer 7 processed 3 frames")
    assert status["consumerId"] == 7 and status["userStats.nPixels"] == 0
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    result = json.loads(marker.read_text())
    assert result["config"] == {"processorId": 7, "inputChannel": "flags:sim",
                                "outputChannel": "out:007", "fieldRequest": "compressedSize"}
    assert result["n"] >= 3 and result["nPixels"] == 0
    assert result["changed"] == ["compressedSize", "uniqueId"]
