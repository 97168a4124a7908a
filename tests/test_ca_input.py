"""Channel Access input (-im ca): a CA PV's updates as NTScalar Values to the processor.

The conversion and the receiver's counting are tested without a network;
the end-to-end test runs pvagpu-sim-server's embedded IOC (-mpv NAME: one
value put per frame) and two pvagpu-consumer -im ca processes on a private
loopback CA network. softioc is never imported here (its import changes
this process's later CA clients), and no CA context is made in this
process (libca reads the EPICS_CA_* settings once per process).
"""
import importlib.util
import json
import signal
import sys

import numpy as np
import pytest
from p4p.client.thread import Context

from conftest import need_installed, wait_for
from pvagpu.cli import consumer as cli
from pvagpu.consumer import Consumer
from pvagpu.errors import ConfigurationError
from pvagpu.pva.ca_monitor import CaValues, ca_time_stamp
from pvagpu.pva.frame_intake import SKIPPED
from pvagpu.pva.loopback import ca_loopback_env
from pvagpu.runtime.config import ConsumerConfig, parse_mode

HAVE_PYEPICS = importlib.util.find_spec("epics") is not None

#: what pyepics gives a callback of a DBR_TIME monitor after get_ctrlvars
AO = {"type": "time_double", "nelm": 1, "value": 2.5, "severity": 1, "status": 4,
      "posixseconds": 1_700_000_000, "nanoseconds": 123_456_789, "timestamp": 1.7e9,
      "units": "mm", "precision": 3, "lower_disp_limit": -10.0, "upper_disp_limit": 10.0,
      "lower_ctrl_limit": -9.0, "upper_ctrl_limit": 9.0, "lower_alarm_limit": float("nan"),
      "upper_alarm_limit": 8.0, "lower_warning_limit": -5.0, "upper_warning_limit": 5.0}


# --- the conversion -------------------------------------------------------------------

def test_scalar_with_properties_is_an_ntscalar():
    v = CaValues(properties=True)(AO)
    assert v.getID() == "epics:nt/NTScalar:1.0" and v.type()["value"] == "d"
    assert v["value"] == 2.5
    assert (v["timeStamp.secondsPastEpoch"], v["timeStamp.nanoseconds"]) == \
        (1_700_000_000, 123_456_789)
    assert (v["alarm.severity"], v["alarm.status"]) == (1, 4)
    if HAVE_PYEPICS:
        assert v["alarm.message"] == "HIGH"       # the CA alarm condition's name
    assert (v["display.limitLow"], v["display.limitHigh"]) == (-10.0, 10.0)
    assert (v["display.units"], v["display.format"]) == ("mm", "%.3f")
    assert (v["control.limitLow"], v["control.limitHigh"]) == (-9.0, 9.0)
    assert (v["valueAlarm.highAlarmLimit"], v["valueAlarm.lowWarningLimit"]) == (8.0, -5.0)
    assert np.isnan(v["valueAlarm.lowAlarmLimit"])
    # the metadata channels' form: value, alarm, timeStamp only
    plain = CaValues()(AO)
    assert sorted(plain.keys()) == ["alarm", "timeStamp", "value"] and plain["value"] == 2.5


def test_waveforms_are_ntscalararrays():
    values = CaValues(properties=True)
    wf = values({"type": "time_long", "nelm": 4, "value": np.array([1, 2, 3], np.int32),
                 "posixseconds": 5, "nanoseconds": 6, "units": "counts",
                 "lower_disp_limit": 0, "upper_disp_limit": 100})
    assert wf.getID() == "epics:nt/NTScalarArray:1.0" and wf.type()["value"] == "ai"
    np.testing.assert_array_equal(wf["value"], [1, 2, 3])
    assert (wf["display.units"], wf["display.limitHigh"]) == ("counts", 100)
    assert "control" not in wf.keys()          # as pvapy's CA provider: display only
    # a waveform holding one element (NORD 1) stays an array: the type never changes
    one = values({"type": "time_double", "nelm": 8, "value": 4.5, "posixseconds": 1,
                  "nanoseconds": 0})
    assert one.type()["value"] == "ad" and list(one["value"]) == [4.5]
    chars = CaValues()({"type": "time_char", "nelm": 3, "value": np.array([104, 105, 0], np.uint8),
                        "posixseconds": 1, "nanoseconds": 0})
    assert chars.type()["value"] == "aB"


def test_strings_enums_and_time_stamps():
    values = CaValues(properties=True)
    s = values({"type": "time_string", "nelm": 1, "value": "hello", "posixseconds": 1,
                "nanoseconds": 2, "units": None})
    assert s.type()["value"] == "s" and s["value"] == "hello" and "display" not in s.keys()
    e = values({"type": "time_enum", "nelm": 1, "value": 1, "enum_strs": ("zero", "one"),
                "posixseconds": 1, "nanoseconds": 2})
    assert e.getID() == "epics:nt/NTEnum:1.0"
    assert (e["value.index"], list(e["value.choices"])) == (1, ["zero", "one"])
    assert CaValues()({"type": "time_enum", "value": 1}).type()["value"] == "H"   # metadata: index
    indices = values({"type": "time_enum", "nelm": 2, "value": [0, 1]})    # an array of enums
    assert indices.type()["value"] == "aH" and list(indices["value"]) == [0, 1]
    # the float time stamp when pyepics gave no POSIX seconds
    assert ca_time_stamp({"timestamp": 12.25}) == (12, 250_000_000)
    assert ca_time_stamp({"posixseconds": None, "nanoseconds": None, "timestamp": 3.5}) == \
        (3, 500_000_000)
    with pytest.raises(ValueError, match="unsupported CA type"):
        values({"type": "time_unknown", "value": 1})
    with pytest.raises(ValueError, match="no value"):
        values({"type": "time_double", "nelm": 1, "value": None})


# --- the mode and the receiver ------------------------------------------------------------

def test_ca_is_an_input_mode_only():
    assert parse_mode("ca", "input") == "ca" and parse_mode("3", "input") == "ca"
    with pytest.raises(ConfigurationError, match="input mode only"):
        parse_mode("ca", "output")
    with pytest.raises(ConfigurationError, match="EJFAT"):
        parse_mode("ejfat", "input")
    config = cli.config_from_args(cli.build_parser().parse_args(["-ic", "x", "-im", "CA"]))
    assert config.input_mode == "ca" and config.processor_config()["inputMode"] == 3


def test_help_teaches_ca(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "ca monitors a Channel Access PV" in text and "-im ca -ic" in text


def test_ca_without_pyepics_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "epics", None)   # makes `import epics` fail
    with pytest.raises(ConfigurationError, match=r"-im ca .* needs pyepics: .*pvagpu\[ca\]"):
        Consumer(ConsumerConfig("x:y", input_mode="ca"))


@pytest.mark.skipif(not HAVE_PYEPICS, reason="pyepics (the ca extra) is not installed")
def test_receiver_counts_updates_as_frames(monkeypatch):
    delivered, room = [], [True]
    consumer = Consumer(ConsumerConfig("x:y", input_mode="ca", server_queue_size=4))
    receiver = consumer.receiver
    receiver.deliver = lambda oid, value: delivered.append((oid, value)) or room[0]
    monitor = receiver._monitor
    monkeypatch.setattr(monitor, "open", lambda: None)    # libca is not used here
    notes = []
    receiver.on_note = notes.append
    receiver.start()
    assert "missed frames are not counted" in notes[0]
    assert receiver.request.startswith("Channel Access monitor")
    for x in (0.0, 1.0, 2.0):                      # libca's callbacks
        monitor._on_update(**{**AO, "value": x})
    monitor._on_update(type="time_unknown", value=1)   # not convertible: a receiver error
    room[0] = False
    monitor._on_update(**{**AO, "value": 3.0})         # no room: an overrun
    monitor.on_connection(False)
    c = receiver.counters
    assert [oid for oid, _ in delivered] == [SKIPPED, None, None, None]
    assert [v["value"] for _, v in delivered] == [0.0, 1.0, 2.0, 3.0]
    assert (c.n_received, c.n_skipped, c.n_accepted, c.n_overruns, c.n_errors, c.n_missed) == \
        (5, 1, 3, 1, 1, 0)
    assert (c.n_connects, c.n_disconnects, receiver.connected) == (1, 1, False)
    receiver.stop()
    monitor._on_update(**AO)                       # after stop: not handed on
    assert len(delivered) == 4 and c.n_received == 5


# --- end to end, on a loopback CA network ------------------------------------------------

RECORDER = '''
import json
from p4p.nt import NTScalar
from pvagpu.hpc import UserDataProcessor

class Recorder(UserDataProcessor):
    """Keeps what each CA update carried; publishes ten times its value."""

    def __init__(self, configDict={}):
        super().__init__(configDict)
        self.out = configDict["out"]
        self.seen = []
        self.nt = NTScalar("d")

    def getOutputPvObjectType(self, pvObject):
        return NTScalar.buildType("d")

    def process(self, pvObject):
        x = pvObject["value"]
        self.seen.append([x, pvObject["timeStamp.secondsPastEpoch"],
                          pvObject["timeStamp.nanoseconds"], pvObject["alarm.severity"],
                          pvObject["display.format"], pvObject.getID()])
        self.updateOutputChannel(self.nt.wrap(10 * x))
        return pvObject

    def stop(self):
        with open(self.out, "w") as f:
            json.dump(self.seen, f)
'''


def status_value(client, name):
    value = client.get(name, timeout=2, throw=False)
    return None if isinstance(value, Exception) else value


def stamp(value):
    return value["timeStamp.secondsPastEpoch"] + 1e-9 * value["timeStamp.nanoseconds"]


@pytest.mark.pva
def test_consumers_process_every_ca_update(processes, tmp_path):
    need_installed("softioc", "epics")
    processes.env.update(ca_loopback_env())
    n, seed, pv = 30, 11, "cai:x"
    rng = np.random.default_rng(seed + 1)          # the sim server's metadata values
    expected = [rng.random(1)[0] for _ in range(n)]
    (tmp_path / "rec.py").write_text(RECORDER)
    out = tmp_path / "seen.json"
    processes.start("pvagpu-sim-server", "-cn", "cai:image", "-nx", "16", "-ny", "8",
                    "-dt", "uint16", "-np", str(n), "-fps", "20", "-wfc", "-std", "0.2",
                    "-shd", "120", "-rp", "0", "-mpv", pv, "--seed", str(seed))
    recorder = processes.start("pvagpu-consumer", "-im", "ca", "-ic", pv, "-id", "1",
                               "-sc", "cai:1:status", "-oc", "cai:1:output",
                               "-pf", str(tmp_path / "rec.py"), "-pc", "Recorder",
                               "-pa", json.dumps({"out": str(out)}))
    passthrough = processes.start("pvagpu-consumer", "-im", "ca", "-ic", pv, "-id", "2",
                                  "-sc", "cai:2:status", "-oc", "cai:2:output")
    client = Context("pva", nt=False)
    subs = []
    try:
        def connected(k):      # its value at connect received (and skipped, -siu 1)
            v = status_value(client, f"cai:{k}:status")
            return v is not None and v["receiverStats.nSkipped"] == 1

        wait_for(lambda: connected(1) and connected(2), timeout=60,
                 message="both consumers connected to the CA PV")
        got = {1: [], 2: [], "image": []}
        for key, name in ((1, "cai:1:output"), (2, "cai:2:output")):
            subs.append(client.monitor(name, got[key].append))
        wait_for(lambda: got[1] and got[2], timeout=20, message="the output channels")
        start = {k: len(got[k]) for k in (1, 2)}
        subs.append(client.monitor("cai:image", got["image"].append))  # starts the frames
        wait_for(lambda: all(len(got[k]) - start[k] >= n for k in (1, 2)), timeout=60,
                 message="every update on both output channels")

        def final_statuses():    # the status channels are published once a second
            v = [status_value(client, f"cai:{k}:status") for k in (1, 2)]
            return all(x is not None and x["processorStats.nProcessed"] >= n for x in v) and v

        statuses = wait_for(final_statuses, timeout=20, message="the statuses of every update")
        wait_for(lambda: len(got["image"]) >= n + 1, timeout=20, message="the frames")
    finally:
        for sub in subs:
            sub.close()
        client.close()
    for proc in (recorder, passthrough):
        proc.send_signal(signal.SIGINT)
    outs = [proc.communicate(timeout=60)[0] for proc in (recorder, passthrough)]
    assert [proc.returncode for proc in (recorder, passthrough)] == [0, 0], outs
    assert "missed frames are not counted" in outs[0]

    for s in statuses:            # each update a frame: none missed, none lost
        assert s["processorStats.nProcessed"] == n, s
        assert (s["processorStats.nErrors"], s["processorStats.nMissed"]) == (0, 0)
        assert (s["receiverStats.nOverruns"], s["receiverStats.nConnects"]) == (0, 1)
        assert (s["publisherStats.nPublished"], s["publisherStats.nErrors"]) == (n, 0)
    seen = json.loads(out.read_text())
    assert [x for x, *_ in seen] == expected       # every value put, in order
    assert {(sev, fmt, nt) for *_, sev, fmt, nt in seen} == \
        {(0, "%.6f", "epics:nt/NTScalar:1.0")}     # the ao record's PREC 6
    # each CA time stamp (POSIX) is that of the put just before frame k
    frames = {v["uniqueId"]: stamp(v) for v in got["image"] if v["uniqueId"] > 0}
    assert sorted(frames) == list(range(1, n + 1))
    for k, (_, sec, nsec, *_rest) in enumerate(seen, start=1):
        assert 0.0 <= frames[k] - (sec + 1e-9 * nsec) < 0.045, (k, frames[k], sec, nsec)
    # the output channels: ten times each value; the NTScalar passed through as it came
    assert [v["value"] for v in got[1][start[1]:]] == pytest.approx([10 * x for x in expected])
    passed = got[2][start[2]:]
    assert [v["value"] for v in passed] == expected
    assert [(v["timeStamp.secondsPastEpoch"], v["timeStamp.nanoseconds"]) for v in passed] == \
        [(sec, nsec) for _, sec, nsec, *_rest in seen]
    assert {(v.getID(), v["display.format"]) for v in passed} == \
        {("epics:nt/NTScalar:1.0", "%.6f")}
