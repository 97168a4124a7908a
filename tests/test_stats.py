"""The consumer's statistics (pvagpu.stats): counters and their reset
baseline, error accounting, the pvapy-structured dictionary, the tables of
statistics types, and rate-limited error logging."""
import logging

import pytest

from pvagpu.errors import CorruptPayloadError, FrameError
from pvagpu.stats import (GROUPS, METADATA_STATS_TYPES, PVAPY_KEY_COUNT, STATS_TYPES, ErrorLog,
                          ProcessorCounters, PublisherCounters, ReceiverCounters, build_stats)


def test_tables_hold_pvapys_keys_first():
    assert set(STATS_TYPES) == set(GROUPS) == set(PVAPY_KEY_COUNT)
    assert [key for key, _ in STATS_TYPES["receiverStats"][:PVAPY_KEY_COUNT["receiverStats"]]] == [
        "nReceived", "receivedRate", "nRejected", "rejectedRate", "nErrors", "errorRate",
        "nOverruns", "overrunRate"]
    for group, items in STATS_TYPES.items():
        assert len(items) >= PVAPY_KEY_COUNT[group]
        assert len({key for key, _ in items}) == len(items)       # no key twice
    # one metadata channel's groups are a part of the same groups, same types, same order
    for group, items in METADATA_STATS_TYPES.items():
        assert [item for item in STATS_TYPES[group] if item in items] == list(items)


def test_reset_takes_a_baseline():
    counters = ReceiverCounters()
    counters.n_received = 5
    counters.n_overruns = 2
    counters.reset()
    counters.n_received += 3
    counts = counters.counts()
    assert counts["n_received"] == 3 and counts["n_overruns"] == 0
    assert counters.n_received == 8           # the counter itself is never written back


def test_processor_errors_are_broken_down():
    counters = ProcessorCounters()
    for exc in (FrameError("dims"), CorruptPayloadError("bad"), RuntimeError("user")):
        counters.count_error(exc)
    counts = counters.counts()
    assert (counts["n_errors"], counts["n_frame_errors"], counts["n_codec_errors"]) == (3, 1, 1)
    counters.first_object_id, counters.last_object_id = 1, 9
    counters.reset()
    assert counters.counts()["n_errors"] == 0
    assert counters.first_object_id is None and counters.last_object_id is None


def test_build_stats_accounting():
    receiver, processor, publisher = ReceiverCounters(), ProcessorCounters(), PublisherCounters()
    receiver.n_received = 12          # incl. the skipped first update
    receiver.n_skipped = 1
    receiver.n_accepted = 9
    receiver.n_overruns = 2
    receiver.n_missed = 3
    processor.n_processed = 6
    processor.count_error(FrameError("dims"))
    processor.first_object_id, processor.last_object_id = 1, 13
    processor.first_object_time, processor.last_object_time = 100.0, 104.0
    publisher.n_published = 6
    start = processor.start_time
    out = build_stats(consumer_id=3, input_channel="det:image", receiver=receiver,
                      queue_length=2, queue_max=8, processor=processor, publisher=publisher,
                      connected=True, user_stats={"mine": 1},
                      metadata_stats={"metadata-1": {"channel": "x"}}, now=start + 10.0)
    assert out["consumerId"] == 3 and out["inputChannel"] == "det:image"
    r, q, p = out["receiverStats"], out["queueStats"], out["processorStats"]
    assert (r["nReceived"], r["nOverruns"], r["nRejected"], r["nSkipped"]) == (12, 2, 2, 1)
    assert r["receivedRate"] == pytest.approx(12 / 4.0)         # per second of receiving time
    assert r["connected"] is True
    assert q == {"nReceived": 11, "nRejected": 2, "nDelivered": 7, "nQueued": 2, "maxLength": 8}
    assert (p["nProcessed"], p["nErrors"], p["nFrameErrors"], p["nMissed"]) == (6, 1, 1, 3)
    assert p["receivingTime"] == 4.0 and p["runtime"] == pytest.approx(10.0)
    assert (p["firstObjectId"], p["lastObjectId"]) == (1, 13)
    assert out["publisherStats"]["nPublished"] == 6
    assert out["userStats"] == {"mine": 1}
    assert out["metadataStats"] == {"metadata-1": {"channel": "x"}}
    # every key of the table is there, and nothing else
    for group in GROUPS:
        assert list(out[group]) == [key for key, _ in STATS_TYPES[group]]


def test_build_stats_without_publisher_or_frames():
    out = build_stats(consumer_id=1, input_channel="c", receiver=ReceiverCounters(),
                      queue_length=-1, queue_max=4, processor=ProcessorCounters(),
                      publisher=None)
    assert out["publisherStats"] == {} and out["userStats"] == {} and out["metadataStats"] == {}
    assert out["queueStats"]["nQueued"] == 0
    assert out["processorStats"]["processedRate"] == 0.0      # no receiving time yet


def test_error_log_is_rate_limited(caplog):
    clock = [1000.0]
    log = ErrorLog(logging.getLogger("test.stats"), period=5.0, clock=lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="test.stats"):
        for _ in range(4):
            log("codec", "bad payload %d", 1)
        log("frame", "bad dims")                      # another kind: its own limit
        clock[0] += 5.0
        log("codec", "bad payload %d", 2)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["bad payload 1", "bad dims",
                        "bad payload 2 (3 more codec errors not logged in the last 5 s)"]
