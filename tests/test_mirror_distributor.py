"""Many consumers on one stream through pvapy-mirror-server's distributor (INTEROP 3.8).

The recipe for a detector whose server has no distributor plugin (here a
p4p server in this process, as pvagpu-sim-server, p4p or NDPluginPvxs
are): pvapy-mirror-server serves the channel again from a pvDatabase
record (command line from pvagpu.launch.plan, as pvagpu-launch runs it),
and consumers joining one distributor group there share the frames. Both
plugin names work on the mirror: pvapy's ``pydistributor`` and
pvDatabase's ``distributor``.
"""
import threading
import time

import numpy as np
import pytest
from p4p.server import Server
from p4p.server.thread import SharedPV

from conftest import wait_for
from pvagpu import ntnda
from pvagpu.consumer import Consumer
from pvagpu.launch.plan import mirror_spec
from pvagpu.launch.settings import LaunchSettings
from pvagpu.pva.receiver import SKIPPED
from test_distributor import IdRecorder

pytestmark = [pytest.mark.pva, pytest.mark.peer]


class FrameSource:
    """An NTNDArray channel served by a p4p server in this process (no
    distributor plugin); frames 1, 2, 3, ... are posted when asked."""

    def __init__(self, name: str, shape=(8, 16)):
        self.image = np.arange(int(np.prod(shape)), dtype=np.uint16).reshape(shape)
        self.pv = SharedPV(initial=ntnda.value_from_image(self.image, 0))
        self.server = Server(providers=[{name: self.pv}])
        self.n_posted = 0

    def post(self, count: int, interval: float = 0.0) -> None:
        for _ in range(count):
            self.n_posted += 1
            self.pv.post(ntnda.value_from_image(self.image, self.n_posted))
            if interval:
                time.sleep(interval)

    def close(self) -> None:
        self.pv.close()
        self.server.stop()


@pytest.fixture
def source(pva_env):
    src = FrameSource("det:src")
    yield src
    src.close()


@pytest.fixture
def mirror(processes, source):
    """pvapy-mirror-server serving det:src as det:mirror."""
    spec = mirror_spec(LaunchSettings(mirror="det:src", input_channel="det:mirror"))
    return processes.start(*spec.argv)


def _consumer(cid, plugin="pydistributor", n_consumers=3):
    """A consumer in the group; ``consumer.skipped`` records the uniqueIds of
    the updates its receiver skipped (-siu 1: the value sent on connect)."""
    consumer = Consumer("det:mirror", IdRecorder(), consumer_id=cid, oid_offset=n_consumers,
                        distributor={"group": "g", "updates": 1, "trigger": "uniqueId"},
                        distributor_plugin=plugin)
    consumer.skipped = []
    deliver = consumer.receiver.deliver

    def recording_deliver(oid, value):
        if oid is SKIPPED:
            consumer.skipped.append(value["uniqueId"])
        return deliver(oid, value)

    consumer.receiver.deliver = recording_deliver
    return consumer


def _connected(consumers):
    for consumer in consumers:
        consumer.start()
    for consumer in consumers:
        wait_for(lambda c=consumer: c.receiver.connected, timeout=20,
                 message=f"consumer {consumer.consumer_id} connected to the mirror")


def _wait_quietly(condition, timeout):
    """Poll ``condition`` for up to ``timeout`` s; whether it came true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_mirror_command_line():
    spec = mirror_spec(LaunchSettings(mirror="13SIM1:Pva1:Image", mirror_queue_size=50))
    assert spec.argv[0].endswith("pvapy-mirror-server")
    assert spec.argv[1:] == ["-cm", "(13SIM1:Pva1:Image:mirror,13SIM1:Pva1:Image,pva,50)"]


@pytest.mark.parametrize("plugin", ["pydistributor", "distributor"])
def test_three_consumers_process_every_frame_exactly_once(source, mirror, plugin):
    consumers = [_consumer(cid, plugin) for cid in (1, 2, 3)]
    n = 90
    try:
        _connected(consumers)
        source.post(n, interval=0.002)
        wait_for(lambda: sum(len(c.processor.ids) for c in consumers) >= n, timeout=20,
                 message=f"{n} frames processed")
        stats = [c.shutdown() for c in consumers]
    finally:
        for consumer in consumers:
            consumer.shutdown()
    ids = [c.processor.ids for c in consumers]
    everything = sorted(i for part in ids for i in part)
    assert everything == list(range(1, n + 1))            # all, and none twice
    for part, s in zip(ids, stats):
        assert abs(len(part) - n / 3) <= 1                 # round robin
        assert s["processorStats"]["nProcessed"] == len(part)
        assert s["processorStats"]["nMissed"] == 0
        assert s["receiverStats"]["nSkipped"] == 1          # the value sent on connect


def test_a_consumer_leaving_and_one_joining_do_not_stop_the_others(source, mirror):
    consumers = {cid: _consumer(cid) for cid in (1, 2, 3)}
    n = 300
    poster = threading.Thread(target=source.post, args=(n, 0.004), daemon=True)
    try:
        _connected(consumers.values())
        poster.start()
        wait_for(lambda: len(consumers[2].processor.ids) >= 15, timeout=20,
                 message="consumer 2 under way")
        left = consumers[2].shutdown()                     # leaves mid-stream
        leave_window = (consumers[2].processor.ids[-1], source.n_posted)
        mark = len(consumers[1].processor.ids)
        wait_for(lambda: len(consumers[1].processor.ids) >= mark + 15, timeout=20,
                 message="consumer 1 going on without consumer 2")
        consumers[4] = _consumer(4)                         # joins mid-stream
        consumers[4].start()
        wait_for(lambda: consumers[4].processor.ids, timeout=20, message="consumer 4 joined")
        poster.join(timeout=30)
        # the last frame, and with it (frames come in order) all, is through
        wait_for(lambda: any(c.processor.ids and c.processor.ids[-1] == n
                             for c in consumers.values()), timeout=20, message="frame n")
        stats = {cid: c.shutdown() for cid, c in consumers.items()}
        stats[2] = left
    finally:
        for consumer in consumers.values():
            consumer.shutdown()
    ids = {cid: c.processor.ids for cid, c in consumers.items()}
    processed = [i for part in ids.values() for i in part]
    assert len(processed) == len(set(processed))          # no frame twice
    # Every frame is accounted for: processed once, or the joiner's connect
    # value (skipped by -siu 1, counted in its nSkipped), or lost by the server
    # at a membership change: the frame it sent consumer 2 as it left, or a
    # frame it gave consumer 4 before its subscription had started. Outside
    # those two windows, of a round (3 frames) each, nothing is lost: what
    # consumer 2 would have got after it left went to the others.
    # (the connect value may also be the last frame another consumer got)
    joiner_only = {i for i in consumers[4].skipped if i > 0} - set(processed)
    unaccounted = set(range(1, n + 1)) - set(processed) - joiner_only
    joined_at = ids[4][0]
    before_join = max(i for cid in (1, 3) for i in ids[cid] if i < joined_at)
    windows = set(range(leave_window[0] + 1, leave_window[1] + 2)) | set(
        range(before_join + 1, joined_at))
    assert unaccounted <= windows, (unaccounted, leave_window, before_join, joined_at)
    assert len(unaccounted) <= 2 and joined_at - before_join <= 4
    for cid in (1, 3):                                      # the others kept going
        assert max(ids[cid]) > joined_at > leave_window[1]
    assert len(ids[4]) > 10
    for cid, s in stats.items():                            # every count adds up
        assert s["processorStats"]["nProcessed"] == len(ids[cid])
        assert s["processorStats"]["nMissed"] == 0
        assert s["receiverStats"]["nSkipped"] == 1
        assert s["receiverStats"]["nReceived"] == len(ids[cid]) + 1
    assert (sum(s["processorStats"]["nProcessed"] for s in stats.values()) + len(joiner_only)
            + len(unaccounted)) == n
