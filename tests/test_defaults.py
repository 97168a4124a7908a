"""Defaults that do not lose frames (issue 11 section 3): the monitor queue
sized from the frame size, the live table on a terminal, and a server that
appears after the consumer found within a second."""
import os
import pty
import select
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from p4p.server import Server
from p4p.server.thread import SharedPV

from conftest import wait_for
from pvagpu import ntnda
from pvagpu.cli.consumer import AUTO_REPORT_PERIOD, _reporter_for, build_parser
from pvagpu.pva import monitor_queue
from pvagpu.pva.loopback import process_env
from pvagpu.pva.receiver import Receiver
from pvagpu.report import Reporter


def image_value(uid, shape=(64, 64), dtype=np.uint16):
    image = np.full(shape, uid % 1000, dtype=dtype)
    return ntnda.value_from_image(image, uid)


# -- the queue size -------------------------------------------------------------

def test_queue_size_follows_the_frame_size_and_the_budget():
    value = image_value(1, (512, 512))
    assert monitor_queue.frame_bytes(value) == 512 * 512 * 2
    assert monitor_queue.queue_size(512 * 512 * 2) == 512          # 256 MiB / 512 KiB
    assert monitor_queue.queue_size(64 * 2**20) == monitor_queue.MIN_QUEUE_SIZE
    assert monitor_queue.queue_size(100) == monitor_queue.MAX_QUEUE_SIZE
    assert monitor_queue.queue_size(0) == 256 // 4                  # unknown: 4 MiB assumed
    assert monitor_queue.frame_bytes(ntnda.NTNDARRAY_TYPE()) == 0   # an empty record
    assert "512 frames (512 KiB each, budget 256 MiB" in monitor_queue.describe(
        512, 512 * 512 * 2, monitor_queue.DEFAULT_QUEUE_MEMORY)


class Source:
    def __init__(self, name="dflt:image"):
        self.name = name
        self.pv = SharedPV(initial=image_value(0))
        self.server = Server(providers=[{name: self.pv}])

    def stop(self):
        self.server.stop()


@pytest.fixture
def source(pva_env):
    src = Source()
    yield src
    src.stop()


@pytest.mark.pva
def test_a_stalled_consumer_loses_no_frame_of_a_burst_by_default(source):
    """The consumer's thread stalls while 100 frames of 512 KiB (50 MiB,
    more than the socket buffers hold) are published: the default queue
    (256 MiB / 512 KiB = 512 frames) holds them all; pvxs' own default (4)
    lost about 3 of 4 of them."""
    release, got, notes = threading.Event(), [], []
    frames = [image_value(uid, (512, 512)) for uid in range(1, 101)]
    source.pv.post(image_value(0, (512, 512)))

    def deliver(oid, value):
        release.wait(20)
        got.append(oid)
        return True

    receiver = Receiver(source.name, deliver=deliver, on_note=notes.append)
    receiver.start()
    try:
        wait_for(lambda: receiver.counters.n_received, message="connected")
        assert receiver.queue_size == 512 and "queueSize=512" in receiver.request
        assert notes and notes[0].startswith("server queue 512 frames (512 KiB each")
        for value in frames:
            source.pv.post(value)
        release.set()
        wait_for(lambda: len(got) >= 101 or receiver.counters.n_missed, message="frames")
        wait_for(lambda: len(got) >= 101, timeout=5, message=f"all 100 frames ({len(got)})")
    finally:
        release.set()
        receiver.stop()
    assert got[1:] == list(range(1, 101)) and receiver.counters.n_missed == 0


@pytest.mark.pva
def test_sqs_overrides_the_sizing(source):
    receiver = Receiver(source.name, server_queue_size=7, deliver=lambda oid, v: True)
    receiver.start()
    try:
        assert "queueSize=7" in receiver.request and not receiver.sizing
        wait_for(lambda: receiver.counters.n_received, message="connected")
        assert receiver.queue_size == 7
    finally:
        receiver.stop()


@pytest.mark.pva
def test_started_before_the_first_frame_the_queue_grows_without_loss_or_repeat(source):
    """The source has no frame when the consumer starts: the sizing GET
    assumes 4 MiB frames (64 slots). At the first 512 KiB frame the
    receiver moves to a 512-frame queue while frames flow: every frame is
    delivered once, in order; then a stall of 100 frames (more than 64)
    loses none."""
    source.pv.close()
    source.pv.open(ntnda.NTNDARRAY_TYPE())           # an empty record: no frame yet
    release, got, notes = threading.Event(), [], []
    release.set()

    def deliver(oid, value):
        release.wait(20)
        got.append(oid)
        return True

    receiver = Receiver(source.name, deliver=deliver, on_note=notes.append)
    receiver.start()
    try:
        wait_for(lambda: receiver.counters.n_received, message="connected")
        assert receiver.queue_size == 64 and "4 MiB assumed" in notes[0]
        uid = 0
        while receiver._next is not None or receiver.queue_size == 64 or uid < 300:
            uid += 1
            source.pv.post(image_value(uid, (512, 512)))
            if uid % 8 == 0:
                time.sleep(0.002)                       # about 2000 fps: the switch under load
            assert uid < 20000, "the queue did not grow"
        wait_for(lambda: got and got[-1] == uid, message=f"frame {uid}")
        assert receiver.queue_size == 512 and "queueSize=512" in receiver.request
        assert any(n.startswith("server queue 512 frames (512 KiB each") and "was 64" in n
                   for n in notes)
        release.clear()                                 # a stall longer than 64 frames
        for uid in range(uid + 1, uid + 101):
            source.pv.post(image_value(uid, (512, 512)))
        release.set()
        wait_for(lambda: got[-1] == uid, timeout=10, message=f"frame {uid}")
    finally:
        release.set()
        receiver.stop()
    assert got[1:] == list(range(1, uid + 1)), "a frame lost or repeated"
    c = receiver.counters
    assert c.n_missed == 0 and c.n_received == uid + 1 and c.n_repeated == 0


@pytest.mark.parametrize("old_ids, new_ids, out_ids, retired_after", [
    # the new snapshot (5) is ahead: held back until the old one has delivered 5
    ([3, 4, 5, 6, 7], [5, 6, 7, 8, 9], [3, 4, 5, 6, 7, 8, 9], 3),
    # the new snapshot (3) is one the old one delivered: the old one is retired at once
    ([3, 4, 5, 6], [3, 4, 5, 6, 7], [3, 4, 5, 6, 7], 1),
    # the new one is behind the old one (at 5 when it sends 3): 4 and 5 are duplicates
    ([3, 4, 5, 6], [None, None, 3, 4, 5, 6], [3, 4, 5, 6], 3),
    # the source restarted its ids meanwhile: far below the last one is not a duplicate
    ([500, 501], [1, 2, 3], [500, 1, 2, 3], 1),
])
def test_the_switch_merges_two_subscriptions_by_id(old_ids, new_ids, out_ids, retired_after):
    """The merge on its own, old and new values interleaved: every id once,
    in order, and the old subscription retired once the two overlap."""
    from pvagpu.pva.monitor_switch import MonitorSwitch
    out, events = [], []
    switch = MonitorSwitch(out.append, lambda v: v, lambda: events.append(("retired", len(out))),
                           lambda: events.append(("through", len(out))), limit=10)
    for i in range(max(len(old_ids), len(new_ids))):
        if i < len(old_ids):
            switch.from_old(old_ids[i])
        if i < len(new_ids) and new_ids[i] is not None:
            switch.from_new(new_ids[i])
    assert out == out_ids
    assert events[0] == ("retired", retired_after) and events[1][0] == "through"
    sent = len(old_ids) + sum(uid is not None for uid in new_ids)
    assert switch.n_duplicates == sent - len(out)


SERVER = textwrap.dedent("""
    import sys, time
    from p4p.server import Server
    from p4p.server.thread import SharedPV
    from pvagpu import ntnda
    import numpy as np
    pv = SharedPV(initial=ntnda.value_from_image(np.zeros((8, 8), np.uint8), 1))
    with Server(providers=[{sys.argv[1]: pv}]):
        print(time.monotonic(), flush=True)
        time.sleep(60)
""")


@pytest.mark.pva
def test_a_server_that_appears_later_is_found_within_a_second(pva_env):
    """pvxs' search back-off (1, 2, 3, ... s) found a server that appeared
    7 s after the consumer about 3 s late; the receiver's fresh searches
    find it within about half a second."""
    first = []
    receiver = Receiver("late:image", skip_initial_updates=0,
                        deliver=lambda oid, v: first.append(time.monotonic()) or True)
    receiver.start()
    proc = None
    try:
        time.sleep(7.0)   # the scenario itself: the server appears 7 s after the consumer
        proc = subprocess.Popen([sys.executable, "-c", SERVER, "late:image"],
                                env=process_env(pva_env), stdout=subprocess.PIPE, text=True)
        up = float(proc.stdout.readline())
        wait_for(lambda: first, timeout=10, message="first frame")
        assert first[0] - up < 1.5, f"first frame {first[0] - up:.2f} s after the server"
    finally:
        receiver.stop()
        if proc is not None:
            proc.kill()
            proc.wait()


# -- the live table --------------------------------------------------------------

class Tty:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, text):
        self.text += text

    def flush(self):
        pass


@pytest.mark.parametrize("argv, live, period", [
    ([], True, AUTO_REPORT_PERIOD), (["-rp", "0"], False, 0.0), (["-dc"], False, 0.0),
    (["-ll", "info"], False, 0.0), (["-rp", "5"], True, 5.0),
])
def test_the_live_table_is_the_default_on_a_terminal(monkeypatch, argv, live, period):
    monkeypatch.setattr(sys, "stdout", Tty())
    monkeypatch.delenv("TERM", raising=False)
    args = build_parser().parse_args(["-ic", "x"] + argv)
    reporter = _reporter_for(args)
    assert (reporter is not None and reporter.live) == live and args.report_period == period
    if reporter is not None:
        reporter.close()


def test_no_periodic_output_by_default_off_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stdout", open(os.devnull, "w"))
    args = build_parser().parse_args(["-ic", "x"])
    assert _reporter_for(args) is None and args.report_period == 0.0
    args = build_parser().parse_args(["-ic", "x", "-rp", "2"])
    reporter = _reporter_for(args)
    assert reporter is not None and not reporter.live and args.report_period == 2.0


def test_a_note_goes_above_the_table():
    tty = Tty()
    reporter = Reporter(stream=tty)
    reporter.update({"consumerId": 1, "receiverStats": {"nReceived": 1}})
    reporter.note("server queue 4 frames")
    assert tty.text.endswith("\x1b[Jserver queue 4 frames\n") and reporter._lines_drawn == 0
    reporter.close()


@pytest.mark.pva
def test_consumer_on_a_terminal_draws_the_table_without_flags(source, pva_env):
    """pvagpu-consumer on a pseudo-terminal, no -rp: the live table appears."""
    master, slave = pty.openpty()
    env = process_env(pva_env)
    env.pop("TERM", None)
    proc = subprocess.Popen([sys.executable, "-m", "pvagpu.cli.consumer", "-ic", source.name,
                             "-rt", "2.5"], env=env, stdout=slave, stderr=subprocess.STDOUT)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "\x1b[?25l" in text and "receiver" in text.lower(), text   # the table was drawn
    assert "server queue" in text and "consumer 1 dflt:image: received 1" in text.splitlines()[-1]
