"""Sharing frames between consumers with a server-side distributor plugin
(pvapy's pydistributor; INTEROP 3.4, 3.8): the hand-built monitor request,
the automatic oid offset, the flags, and two consumers splitting the frames
of pvapy-ad-sim-server.
"""
import threading

import pytest
from p4p import Value

from conftest import wait_for
from pvagpu.cli.consumer import build_parser, main as cli_main
from pvagpu.consumer import Consumer
from pvagpu.hpc import UserDataProcessor
from pvagpu.pva.receiver import distributor_options, monitor_request
from pvagpu.runtime.config import distributor_oid_offset


def test_request_without_distributor_is_a_string():
    assert monitor_request() == "field()"
    assert monitor_request(8) == "record[queueSize=8]field()"
    assert monitor_request(0, {"group": None, "updates": None}) == "field()"


def test_distributor_request_is_a_pvrequest_value():
    assert distributor_options({"group": "g", "set": None, "trigger": "uniqueId",
                                "updates": 3}) == "group:g;trigger:uniqueId;updates:3"
    request = monitor_request(0, {"updates": 1})
    assert isinstance(request, Value)
    assert request.todict() == {"field": {"_": {"_options": {"pydistributor": "updates:1"}}}}
    request = monitor_request(16, {"group": "g", "set": "A"}, plugin="distributor")
    assert request.todict() == {
        "field": {"_": {"_options": {"distributor": "group:g;set:A"}}},
        "record": {"_options": {"queueSize": "16"}}}


@pytest.mark.parametrize("kw, offset", [
    ({}, 1),                                                         # every frame
    ({"n_consumers": 4}, 1),                                         # no distributor
    ({"n_consumers": 2, "distributor_updates": 1}, 2),
    ({"n_consumers": 4, "distributor_updates": 1}, 4),
    ({"n_consumers": 3, "distributor_updates": 5}, 11),
    ({"n_consumers": 4, "distributor_updates": 2, "n_distributor_sets": 3}, 5),
    ({"oid_offset": 7, "n_consumers": 2, "distributor_updates": 1}, 7),  # -oo wins
])
def test_automatic_oid_offset(kw, offset):
    assert distributor_oid_offset(kw.pop("oid_offset", 0), **kw) == offset


def test_distributor_flags(capsys):
    args = build_parser().parse_args(["-ic", "x", "-dg", "g", "-ds", "A", "-dt", "uniqueId",
                                      "-du", "2", "-nds", "3", "-dpn", "distributor"])
    assert (args.distributor_group, args.distributor_set, args.distributor_trigger,
            args.distributor_updates, args.n_distributor_sets,
            args.distributor_plugin_name) == ("g", "A", "uniqueId", 2, 3, "distributor")
    assert build_parser().parse_args(["-ic", "x"]).distributor_plugin_name == "pydistributor"
    with pytest.raises(SystemExit):
        cli_main(["-ic", "x", "-nds", "2", "-du", "1"])          # sets need -ds
    assert "--distributor-set" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli_main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ["-dpn", "-dg", "-ds", "-dt", "-du", "-nds"]:
        assert f"{flag} " in text or f"{flag}," in text, flag


class IdRecorder(UserDataProcessor):
    """Keeps the uniqueId of every processed frame and the smallest image size."""

    def __init__(self, configDict={}):
        UserDataProcessor.__init__(self, configDict)
        self.ids = []
        self.min_size = None
        self.lock = threading.Lock()

    def process(self, pvObject):
        with self.lock:
            self.ids.append(pvObject["uniqueId"])
            size = len(pvObject["value"])
            self.min_size = size if self.min_size is None else min(self.min_size, size)


@pytest.mark.pva
@pytest.mark.peer
@pytest.mark.parametrize("updates", [1, 3])
def test_two_consumers_share_the_frames_of_pvapy_ad_sim_server(processes, updates):
    # the sim server serves its (empty) record during the start delay, so both
    # consumers join the distributor group before frame 1
    sim = processes.start("pvapy-ad-sim-server", "-cn", "sim:image", "-nx", "16", "-ny", "8",
                          "-fps", "20", "-rt", "2", "-std", "3", "-shd", "0", "-dc")
    offset = distributor_oid_offset(n_consumers=2, distributor_updates=updates)
    consumers = [Consumer("sim:image", IdRecorder(), consumer_id=cid, oid_offset=offset,
                          distributor={"updates": updates}) for cid in (1, 2)]
    try:
        for consumer in consumers:
            consumer.start()
        for consumer in consumers:
            wait_for(lambda c=consumer: c.receiver.connected, timeout=15,
                     message=f"consumer {consumer.consumer_id} connected")
        sim.communicate(timeout=30)          # all frames published, server gone
        for consumer in consumers:
            wait_for(lambda c=consumer: not c.receiver.connected, timeout=15,
                     message=f"consumer {consumer.consumer_id} saw the server go")
        stats = [consumer.stats()["processorStats"] for consumer in consumers]
    finally:
        for consumer in consumers:
            consumer.shutdown()
    first, second = (consumer.processor.ids for consumer in consumers)
    assert first and second and not set(first) & set(second)
    everything = sorted(first + second)
    assert everything == list(range(1, everything[-1] + 1)) and len(everything) >= 30
    assert abs(len(first) - len(second)) <= updates
    for ids in (first, second):             # turns of `updates` consecutive frames
        assert all(ids[k + 1] - ids[k] in (1, updates + 1) for k in range(len(ids) - 1))
    for consumer, s, ids in zip(consumers, stats, (first, second)):
        assert consumer.receiver.ids.offset == updates + 1
        assert consumer.receiver.ids.sequential == updates
        assert consumer.processor.min_size == 16 * 8      # whole frames, not just the id
        assert s["nProcessed"] == len(ids) and s["nMissed"] == 0 and s["nErrors"] == 0
