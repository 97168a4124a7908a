"""The status channel's record (pvagpu.pva.status): its layout, taken from
pvagpu.stats' tables, and its values, converted and clamped to the fields'
types; one record served and read back over loopback PVA."""
import pytest
from p4p import Type, Value
from p4p.client.thread import Context

from pvagpu import pva
from pvagpu.ntnda import TIME_T
from pvagpu.pva.publisher import LocalServer
from pvagpu.pva.status import (HEADER_FIELDS, StatusChannel, fill, metadata_stats_spec,
                               status_fields, status_type, user_stats_fields)
from pvagpu.stats import (GROUPS, METADATA_STATS_TYPES, PVAPY_KEY_COUNT, STATS_TYPES,
                          ProcessorCounters, PublisherCounters, ReceiverCounters, build_stats)

U32_MAX = 2**32 - 1


def test_layout_follows_the_stats_tables():
    fields = status_fields([("mine", "I")], metadata_ids=[1, 3])
    names = [name for name, _ in fields]
    assert names == ([name for name, _ in HEADER_FIELDS] + list(GROUPS)
                     + ["userStats", "metadataStats_1", "metadataStats_3"])
    spec = dict(fields)
    for group in GROUPS:
        assert spec[group] == ("S", None, list(STATS_TYPES[group]))
    assert spec["userStats"] == ("S", None, [("mine", "I")])
    assert spec["objectTimestamp"] == TIME_T
    assert spec["metadataStats_3"] == metadata_stats_spec()


def test_pvapy_structure_without_extras():
    fields = dict(status_fields(extras=False))
    for group, count in PVAPY_KEY_COUNT.items():
        assert fields[group][2] == list(STATS_TYPES[group][:count])
    assert "userStats" not in fields       # no processor stats types: no userStats


def test_metadata_stats_structure_is_pvapys():
    """INTEROP 3.6: producerId u32, channel string, receiverStats with six
    fields, queueStats with pvapy's four counters."""
    assert metadata_stats_spec() == ("S", None, [
        ("producerId", "I"), ("channel", "s"),
        ("receiverStats", ("S", None, [
            ("nReceived", "I"), ("receivedRate", "d"), ("nRejected", "I"),
            ("rejectedRate", "d"), ("nOverruns", "I"), ("overrunRate", "d")])),
        ("queueStats", ("S", None, [
            ("nReceived", "I"), ("nRejected", "I"), ("nDelivered", "I"), ("nQueued", "I")])),
    ])
    assert list(METADATA_STATS_TYPES) == ["receiverStats", "queueStats"]


def test_user_stats_fields_take_pvapy_constants_and_p4p_codes(caplog):
    fields = user_stats_fields({"a": pva.UINT, "b": "d", "c": pva.STRING, "bad": 99,
                                "worse": "Q"})
    assert fields == [("a", "I"), ("b", "d"), ("c", "s")]
    assert "'bad'" in caplog.text and "'worse'" in caplog.text


@pytest.mark.parametrize("code, value, expected", [
    ("I", 2**40, U32_MAX), ("I", -5, 0), ("I", 7.9, 7),
    ("b", 1000, 127), ("b", -1000, -128), ("H", 70000, 2**16 - 1),
    ("i", -2**40, -2**31), ("l", 2**70, 2**63 - 1), ("L", 2**70, 2**64 - 1),
    ("B", True, 1), ("d", 3, 3.0), ("f", "2.5", 2.5), ("?", 2, True), ("s", 12, "12"),
])
def test_fill_converts_and_clamps_to_the_field_type(code, value, expected):
    out = fill([("x", code)], {"x": value})
    assert out == {"x": expected} and type(out["x"]) is type(expected)
    Value(Type([("x", code)]), out)      # p4p takes it


def test_fill_leaves_out_what_is_missing_or_unconvertible():
    fields = [("n", "I"), ("rate", "d"), ("group", ("S", None, [("k", "I")])), ("absent", "I")]
    out = fill(fields, {"n": "many", "rate": 1.5, "group": {"k": -1, "extra": 5},
                        "unknown": 3})
    assert out == {"rate": 1.5, "group": {"k": 0}}
    assert fill(fields, {"group": "not a dict"}) == {}


def _stats(metadata_stats=None, user_stats=None):
    receiver, processor, publisher = ReceiverCounters(), ProcessorCounters(), PublisherCounters()
    receiver.n_received = 2**33          # past a u32: clamped on the record
    receiver.n_accepted = 4
    processor.n_processed = 4
    publisher.n_published = 3
    return build_stats(consumer_id=7, input_channel="det:image", receiver=receiver,
                       queue_length=1, queue_max=16, processor=processor, publisher=publisher,
                       connected=True, user_stats=user_stats, metadata_stats=metadata_stats,
                       now=processor.start_time + 2.0)


@pytest.mark.pva
def test_status_channel_value_and_publication(pva_env):
    metadata_stats = {"metadata-1": {
        "channel": "meta:x",
        "receiverStats": {"nReceived": 11, "receivedRate": 5.5, "nRejected": 0,
                          "rejectedRate": 0.0, "nOverruns": 8, "overrunRate": 4.0},
        "queueStats": {"nReceived": 3, "nRejected": 8, "nDelivered": 3, "nQueued": 0}}}
    server = LocalServer("test-status")
    try:
        channel = StatusChannel(server, "test:status", 7, "det:image",
                                user_types={"mine": pva.UINT, "ratio": pva.DOUBLE},
                                metadata_ids=[1, 2])
        assert channel.type.aspy() == status_type([("mine", "I"), ("ratio", "d")],
                                                  [1, 2]).aspy()
        stats = _stats(metadata_stats, {"mine": 2**40, "ratio": 0.5, "not declared": 1})
        value = channel.value_for(stats, now=1000.25)
        assert value["consumerId"] == 7 and value["inputChannel"] == "det:image"
        assert value["objectTime"] == 1000.25
        assert (value["objectTimestamp.secondsPastEpoch"],
                value["objectTimestamp.nanoseconds"]) == (1000, 250_000_000)
        assert value["receiverStats.nReceived"] == U32_MAX
        assert value["receiverStats.connected"] is True
        assert value["queueStats.nQueued"] == 1 and value["queueStats.maxLength"] == 16
        assert value["publisherStats.nPublished"] == 3
        assert value["processorStats.nProcessed"] == 4
        assert value["userStats.mine"] == U32_MAX and value["userStats.ratio"] == 0.5
        assert "not declared" not in value["userStats"]
        assert value["metadataStats_1.producerId"] == 1
        assert value["metadataStats_1.channel"] == "meta:x"
        assert value["metadataStats_1.receiverStats.nOverruns"] == 8
        assert value["metadataStats_1.receiverStats.overrunRate"] == 4.0
        assert value["metadataStats_1.queueStats.nRejected"] == 8
        # a channel without figures still says which producer it is
        assert value["metadataStats_2.producerId"] == 2
        assert value["metadataStats_2.receiverStats.nReceived"] == 0

        assert channel.object_id == 0
        channel.publish(stats)
        channel.publish(stats)
        with Context("pva", nt=False) as client:
            served = client.get("test:status", timeout=10)
        assert served["objectId"] == channel.object_id == 2
        assert served.getID() == "structure"
        assert served["receiverStats.nReceived"] == U32_MAX
        assert served["metadataStats_1.queueStats.nDelivered"] == 3
    finally:
        server.stop()
