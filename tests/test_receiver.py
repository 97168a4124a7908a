"""pvagpu.pva.receiver: what the receiver counts and hands on.

Updates are given to ``Receiver._on_value`` directly (the PVA thread's
per-update step), so these tests need no PVA network; the receiver over a
real monitor is tested through the consumer (test_consumer.py) and its
flags (test_consumer_flags.py, test_distributor.py).
"""
import logging

import numpy as np
import pytest

from pvagpu import ntnda
from pvagpu.pva.receiver import SKIPPED, Receiver


def update(unique_id):
    return ntnda.value_from_image(np.zeros((2, 2), np.uint8), unique_id)


def test_missed_frames_are_counted_from_the_first_processed_frame():
    """As in pvapy, uniqueId accounting starts at the first processed frame:
    a gap between the skipped connect snapshot and it is not a loss (the
    snapshot may be any old frame), later gaps are."""
    ids = (5, 8, 9, 12)              # snapshot 5; then 10 and 11 never arrive
    got = []
    receiver = Receiver("test:snapshot", skip_initial_updates=1,
                        deliver=lambda oid, value: got.append(oid))
    for unique_id in ids:
        receiver._on_value(update(unique_id))
    assert got == [SKIPPED, 8, 9, 12]
    assert receiver.counters.n_missed == 2 and receiver.counters.n_skipped == 1
    try:
        from pvapy.hpc.dataProcessingController import DataProcessingController
        from pvapy.hpc.userDataProcessor import UserDataProcessor as PvapyProcessor
    except ImportError:
        return
    processor = PvapyProcessor()
    processor.objectIdField = "uniqueId"
    pvapy = DataProcessingController({"skipInitialUpdates": 1}, processor)
    for unique_id in ids:
        pvapy.process({"uniqueId": unique_id})
    assert pvapy.nMissed == 2


def test_a_reopened_subscription_does_not_deliver_the_snapshot_seen_again():
    """A subscription opened again (a reconnect, or the channel search's
    re-open racing the first connect) starts with the record's current
    value: when that is the update last seen, skipped snapshot included, it
    is counted as repeated and not delivered; a new one is delivered."""
    got = []
    receiver = Receiver("test:reopen", skip_initial_updates=1,
                        deliver=lambda oid, value: got.append(oid))
    receiver._on_value(update(0))            # the connect snapshot: skipped
    receiver._resync = True                  # what a re-open sets
    receiver._on_value(update(0))            # the same snapshot again
    receiver._on_value(update(1))
    receiver._on_value(update(2))
    receiver._resync = True
    receiver._on_value(update(2))            # the reconnect snapshot of frame 2
    receiver._resync = True
    receiver._on_value(update(3))            # a new frame after a re-open
    c = receiver.counters
    assert got == [SKIPPED, 1, 2, 3]
    assert (c.n_repeated, c.n_missed, c.n_received) == (2, 0, 6)


def test_a_refused_update_is_an_overrun_and_not_a_miss():
    """deliver returns False when it has no room (a full frame queue): the
    update is counted as an overrun; the ids stay tracked, so the next
    accepted frame is not counted as missed for it."""
    room = [True, False, False, True]
    got = []

    def deliver(oid, value):
        if not room.pop(0):
            return False
        got.append(oid)
        return True

    receiver = Receiver("test:overrun", skip_initial_updates=0, deliver=deliver)
    for unique_id in (1, 2, 3, 4):
        receiver._on_value(update(unique_id))
    c = receiver.counters
    assert got == [1, 4]
    assert (c.n_received, c.n_accepted, c.n_overruns, c.n_missed) == (4, 2, 2, 0)


def test_a_failing_delivery_is_a_receiver_error_and_the_stream_goes_on(caplog):
    def deliver(oid, value):
        if oid == 2:
            raise RuntimeError("delivery bug")

    receiver = Receiver("test:error", skip_initial_updates=0, deliver=deliver)
    with caplog.at_level(logging.ERROR):
        for unique_id in (1, 2, 3):
            receiver._on_value(update(unique_id))
    c = receiver.counters
    assert (c.n_received, c.n_accepted, c.n_errors, c.n_overruns) == (3, 3, 1, 0)
    assert any("delivering update 2 failed: RuntimeError: delivery bug" in r.getMessage()
               for r in caplog.records)


def test_updates_without_the_oid_field_are_delivered_without_accounting(caplog):
    from p4p import Type, Value
    no_id = Type([("value", "i")])
    got = []
    receiver = Receiver("test:noid", skip_initial_updates=0,
                        deliver=lambda oid, value: got.append((oid, value["value"])))
    for n in (7, 9):
        receiver._on_value(Value(no_id, {"value": n}))
    assert got == [(None, 7), (None, 9)] and receiver.counters.n_missed == 0
    assert sum("missed-frame accounting is off" in r.getMessage() for r in caplog.records) == 1


def test_start_needs_somewhere_to_deliver():
    with pytest.raises(ValueError, match="nothing to deliver the frames to"):
        Receiver("test:nowhere").start()


@pytest.mark.parametrize("offset", [1, 2])
def test_authenticated_ids_are_accounted_after_processing_and_overruns_once(offset):
    """track_ids off (a decryptor): nothing is accounted on receipt, even for
    a far-off clear id; account() counts the gaps between authenticated
    ids, less the ids dropped as overruns (counted once, as overruns)."""
    step = offset
    room = {1 * step: True, 2 * step: True, 3 * step: False, 2 ** 31 - 1: True,
            6 * step: True}
    receiver = Receiver("test:auth", skip_initial_updates=0, oid_offset=offset,
                        deliver=lambda oid, value: room[oid])
    receiver.track_ids = False
    for uid in room:
        receiver._on_value(update(uid))
    c = receiver.counters
    assert c.n_missed == 0 and c.n_overruns == 1     # nothing accounted on receipt
    for uid in (1 * step, 2 * step):
        receiver.account(uid)
    receiver.account(6 * step)                       # 3 dropped (overrun), 4 and 5 missed
    assert c.n_missed == 2
