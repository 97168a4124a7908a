"""Late joins (issue 13 item 7): channels that appear after the consumer
started are found within about a second (metadata channels as the input
channel: pvagpu.pva.channel_search), and an output record whose type does
not depend on the input is served from the start, so a downstream
consumer subscribed before the upstream's first frame gets the first frames.

The sleeps of a few seconds below are the scenarios themselves (the
upstream appears that long after the downstream started, when pvxs' own
search back-off would wait seconds more); every wait for a result is a
condition with a timeout."""
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from p4p import Type
from p4p.server import Server
from p4p.server.thread import SharedPV

from conftest import wait_for
from pvagpu import ntnda
from pvagpu.consumer import Consumer
from pvagpu.hpc import UserDataProcessor
from pvagpu.pva.loopback import process_env
from pvagpu.pva.metadata import MetadataChannels
from pvagpu.pva.receiver import SKIPPED, Receiver
from pvagpu.runtime.frames import FrameRunner

LATE = 3.0        # seconds between the downstream's start and the upstream's


META_SERVER = textwrap.dedent("""
    import sys, time
    from p4p.nt import NTScalar
    from p4p.server import Server
    from p4p.server.thread import SharedPV
    pv = SharedPV(nt=NTScalar("d"), initial=1.5)
    with Server(providers=[{sys.argv[1]: pv}]):
        print(time.monotonic(), flush=True)
        sys.stdin.readline()
        pv.post(2.5)
        print("posted", flush=True)
        time.sleep(60)
""")


@pytest.mark.pva
def test_a_metadata_channel_that_appears_later_is_found_within_a_second(pva_env):
    """The metadata server (another process) appears 4.5 s after the
    consumer's start: pvxs' back-off alone searched next at about 6 s
    (found 1.5-2 s late); the fresh searches find it within about 0.5 s."""
    channels = MetadataChannels(["pva://late:meta"])
    channels.start()
    proc = None
    try:
        time.sleep(4.5)
        proc = subprocess.Popen([sys.executable, "-c", META_SERVER, "late:meta"],
                                env=process_env(pva_env), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        up = float(proc.stdout.readline())
        assert channels.wait_connected(timeout=10), "metadata channel not found"
        found = time.monotonic() - up
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "posted"
        queue = channels.queue_map["late:meta"]
        wait_for(lambda: len(queue) >= 2, message="two metadata updates")
        assert [queue.get()["value"] for _ in range(2)] == [1.5, 2.5]
    finally:
        channels.stop()
        if proc is not None:
            proc.kill()
            proc.wait()
    assert found < 1.0, f"found {found:.2f} s after the server appeared"


class Sums(UserDataProcessor):
    """Publishes (uniqueId, sum of the pixels): an output type known before any input."""

    OUTPUT = Type([("uniqueId", "i"), ("sum", "d")])

    def process(self, pvObject):
        self.updateOutputChannel({"uniqueId": pvObject["uniqueId"],
                                  "sum": float(np.sum(pvObject["value"]))})

    def getOutputPvObjectType(self, pvObject):
        return self.OUTPUT


def image(uid):
    return ntnda.value_from_image(np.full((4, 4), uid, np.uint16), uid)


@pytest.mark.pva
def test_a_downstream_consumer_started_first_gets_the_upstreams_first_frames(pva_env):
    """Started in reverse order: the downstream receiver, then (LATE s
    later) the upstream consumer, then its source, which has no frame yet.
    The upstream's output record is served at its start, before it has an
    input, so the downstream joins at once and gets frame 1 onwards."""
    got = []
    downstream = Receiver("late:sums", deliver=lambda oid, value: oid is SKIPPED or got.append(
        (oid, value["sum"])) or True)
    source_pv = SharedPV(initial=ntnda.NTNDARRAY_TYPE())
    source = upstream = None
    downstream.start()
    try:
        time.sleep(LATE)
        upstream = Consumer("late:source", Sums(), output_channel="late:sums")
        upstream.start()
        up = time.monotonic()
        assert upstream.publisher.is_open           # served with no input at all
        wait_for(lambda: downstream.connected, timeout=10, message="downstream connected")
        found = time.monotonic() - up
        source = Server(providers=[{"late:source": source_pv}])
        wait_for(lambda: upstream.receiver.connected, message="upstream connected")
        for uid in range(1, 21):
            source_pv.post(image(uid))
        wait_for(lambda: len(got) >= 20, message=f"20 frames downstream ({len(got)})")
    finally:
        downstream.stop()
        if upstream is not None:
            upstream.shutdown()
        if source is not None:
            source.stop()
    assert found < 1.0, f"downstream found the upstream {found:.2f} s after it started"
    assert got == [(uid, 16.0 * uid) for uid in range(1, 21)]       # from the first frame
    assert downstream.counters.n_skipped == 1                       # the empty record only


class Stub:
    """A publisher that only records what it is opened with."""

    channel = "stub"

    def __init__(self):
        self.opened = None
        from pvagpu.stats import PublisherCounters
        self.counters = PublisherCounters()

    @property
    def is_open(self):
        return self.opened is not None

    def open(self, first):
        self.opened = first


class NeedsInput(UserDataProcessor):
    def getOutputPvObjectType(self, pvObject):
        return {"uniqueId": pvObject["uniqueId"]}     # raises without an input


@pytest.mark.parametrize("processor, at_start", [
    (Sums(), True),                 # declared: served from the start
    (UserDataProcessor(), False),   # the input's own structure: from the first object
    (NeedsInput(), False),          # reads the input: from the first object, no error
])
def test_the_output_is_served_at_start_only_when_its_type_needs_no_input(processor, at_start):
    publisher = Stub()
    runner = FrameRunner(processor, publisher)
    assert runner.open_output_at_start() is at_start
    assert (publisher.opened is Sums.OUTPUT) is at_start
    assert publisher.counters.n_errors == 0
    if not at_start:
        runner.offer_output(image(1))
        assert publisher.is_open
