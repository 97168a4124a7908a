"""pvagpu-collector: the ordering cache, the flags, and split -> process -> collect
pipelines on loopback (pvaPy pvapy/hpc/dataCollector.py, pvapy/cli/hpcCollector.py;
documentation/streamingFramework.md "Data Collector", "Splitting and Stitching
Images With Data Collector").

PVA tests run on loopback ports of their own (conftest), wait on conditions
and stop every server they start.
"""
import numpy as np
import pytest
from p4p.server import Server
from p4p.server.thread import SharedPV

from conftest import wait_for
from pvagpu import ntnda, pva, report
from pvagpu.cli import collector as cli
from pvagpu.collector import Collector, CollectorConfig, OrderingCache, collector_cache_size
from pvagpu.consumer import Consumer
from pvagpu.hpc import AdImageProcessor, UserDataProcessor
from pvagpu.utility import AdImageUtility

# -- the ordering cache -----------------------------------------------------------------


def ids_of(items):
    return [oid for oid, _ in items]


def test_cache_size_rule_is_pvapys():
    assert collector_cache_size(-1, 4) == 40        # 10 per producer
    assert collector_cache_size(2, 4) == 4          # at least the number of producers
    assert collector_cache_size(100, 4) == 100


def test_ids_go_out_in_order_once_every_producer_passed_them():
    cache = OrderingCache([1, 2], cache_size=100)
    for pid, oid in [(1, 1), (2, 2), (1, 3), (2, 4)]:
        assert cache.add(pid, oid, f"frame{oid}")
    assert ids_of(cache.take(0)) == [1, 2]          # 3 waits for producer 2's next
    cache.add(1, 5, "frame5")                        # 4: producer 2 may send more of it
    assert cache.take(0) == [(3, "frame3")]
    cache.add(2, 6, "frame6")
    assert cache.take(0) == [(4, "frame4")]
    cache.flush()                                    # the end of the stream
    assert ids_of(cache.take(0)) == [5, 6]
    assert cache.counts() == {"n_collected": 6, "n_rejected": 0, "n_missed": 0,
                              "n_overflows": 0, "n_refused": 0, "n_cached": 0}


def test_objects_of_one_id_go_out_together():
    cache = OrderingCache([1, 2], cache_size=100)
    for pid, oid, tile in [(1, 7, "a"), (2, 7, "b"), (1, 7, "c"), (1, 8, "a"), (2, 8, "b")]:
        cache.add(pid, oid, tile)
    assert cache.take(0) == [(7, "a"), (7, "b"), (7, "c")]


def test_full_cache_releases_early_and_counts_overflows_missed_and_rejected():
    """Producer 2 stalls: the cache of 4 overflows; its late object is rejected."""
    cache = OrderingCache([1, 2], cache_size=4)
    for oid in (1, 3, 5, 7):
        cache.add(1, oid, oid)
    assert cache.take(0) == []                       # waiting for producer 2
    cache.add(1, 9, 9)                               # 5 pending > 4: id 1 goes out
    cache.add(1, 11, 11)                             # and id 3
    assert ids_of(cache.take(0)) == [1, 3]
    cache.add(2, 2, 2)                               # too late: 3 is out already
    c = cache.counts()
    assert (c["n_overflows"], c["n_missed"], c["n_rejected"], c["n_cached"]) == (2, 1, 1, 4)
    cache.flush()
    assert ids_of(cache.take(0)) == [5, 7, 9, 11]
    assert cache.counts()["n_missed"] == 5           # 2, 4, 6, 8, 10 never arrived in time


def test_quiet_stream_is_flushed_after_the_timeout():
    cache = OrderingCache([1, 2], cache_size=100, flush=0.05)
    cache.add(1, 1, "x")
    assert cache.take(0) == []
    wait_for(lambda: cache.take(0.01) == [(1, "x")], timeout=5, message="flush")


def test_full_ready_queue_refuses_new_objects():
    cache = OrderingCache([1], cache_size=100, ready_max=2)
    assert cache.add(1, 1, "a") and cache.add(1, 2, "b") and cache.add(1, 3, "c")
    assert not cache.add(1, 4, "d")                  # 1, 2 released, not yet taken
    assert cache.counts()["n_refused"] == 1
    assert ids_of(cache.take(0)) == [1, 2]
    assert cache.add(1, 4, "d")


def test_restarted_source_starts_afresh_when_the_cache_is_empty():
    cache = OrderingCache([1], cache_size=100)
    for oid in (10, 11, 12):
        cache.add(1, oid, oid)
    cache.flush()
    cache.take(0)
    cache.add(1, 1, 1)                               # ids went back: a new stream
    cache.add(1, 2, 2)
    assert ids_of(cache.take(0)) == [1]
    assert cache.counts()["n_rejected"] == 0


# -- the command line ------------------------------------------------------------------------


def test_collector_flags_are_pvapys(capsys):
    args = cli.build_parser().parse_args([
        "--collector-id", "3", "--producer-id-list", "range(1,5)", "--input-channel",
        "process:*:output", "--output-channel", "collector:*:output", "--status-channel", "_",
        "--collector-cache-size", "100", "--server-queue-size", "10", "-rqs", "50",
        "--oid-offset", "1", "-ifs", "02d", "-siu", "0", "-pc", "pvapy.hpc.userDataProcessor."
        "UserDataProcessor", "-rp", "10", "-rs", "all", "-dc"])
    config = cli.config_from_args(args)
    assert config.producer_ids == [1, 2, 3, 4]
    assert config.producer_channels[4] == "process:04:output"
    assert (config.output_name, config.status_name) == ("collector:03:output",
                                                        "pvapy:collector:03:status")
    assert (config.collector_cache_size, config.ready_queue_size) == (100, 50)
    with pytest.raises(SystemExit):
        cli.main(["-v"])
    assert capsys.readouterr().out.startswith("pvagpu-collector ")
    for bad in ("1,1", "__import__('os')"):        # strict parser, never eval
        with pytest.raises(SystemExit) as exc:
            cli.build_parser().parse_args(["-ic", "x:*", "-pid", bad])
        assert exc.value.code == 2


@pytest.mark.pva
def test_collector_rqs_zero_warns_and_runs_bounded(pva_env, capfd):
    assert cli.main(["-ic", "none:*", "-rqs", "0", "-rt", "0.2", "-rp", "0"]) == 0
    out, err = capfd.readouterr()
    assert "without a bound" in err and "a queue of 256" in err
    assert "processed 0" in out


# -- split -> process -> collect on loopback -------------------------------------------------

IMAGE = np.arange(16 * 12, dtype=np.uint16).reshape(12, 16)


class HalfTileProcessor(AdImageProcessor):
    """Consumer N of 2 publishes the N-th half (left/right) of every frame,
    with its index in an extra field, as pvapy's split example does."""

    def process(self, pvObject):
        (frameId, image, nx, ny, nz, colorMode, fieldKey) = self.reshapeNtNdArray(pvObject)
        i = self.processorId - 1
        half = nx // 2
        tileCoordinates = pva.PvObject({'tileIndexX': pva.INT}, {'tileIndexX': i})
        tile = AdImageUtility.generateNtNdArray2D(
            frameId, np.ascontiguousarray(image[:, i * half:(i + 1) * half]),
            extraFieldsPvObject=tileCoordinates)
        self.updateOutputChannel(tile)
        return pvObject

    def getOutputPvObjectType(self, pvObject):
        return pva.NtNdArray({'tileIndexX': pva.INT})


class StitchRecorder(UserDataProcessor):
    """Collects tiles by frame id and stitches a frame when both halves are in."""

    def __init__(self, configDict={}):
        UserDataProcessor.__init__(self, configDict)
        self.order, self.frames, self.tiles = [], {}, {}

    def process(self, pvObject):
        oid = int(pvObject["uniqueId"])
        self.order.append(oid)
        tiles = self.tiles.setdefault(oid, {})
        tiles[int(pvObject["tileIndexX"])] = ntnda.frame_from_value(pvObject).image
        if len(tiles) == 2:
            self.frames[oid] = np.hstack([tiles[0], tiles[1]])
        return pvObject


@pytest.mark.pva
def test_split_two_consumers_collect_reassembles_every_frame_in_order(pva_env):
    source = SharedPV(initial=ntnda.value_from_image(IMAGE, 0))
    stitch = StitchRecorder()
    with Server(providers=[{"split:image": source}]):
        consumers = [Consumer("split:image", HalfTileProcessor(), consumer_id=cid,
                              output_channel="process:*:output") for cid in (1, 2)]
        try:
            for consumer in consumers:
                consumer.start()
            for consumer in consumers:   # output records exist from the first (skipped) update
                wait_for(lambda c=consumer: c.publisher.is_open, timeout=30,
                         message=f"consumer {consumer.consumer_id} output open")
            collector = Collector(CollectorConfig(
                "process:*:output", producer_ids="1,2", consumer_id=1, collector_flush=0.3,
                status_channel="collector:*:status", control_channel="collector:*:control"),
                stitch)
            with collector:
                wait_for(lambda: collector.receiver.connected, timeout=30,
                         message="collector connected to both producers")
                n = 40
                for uid in range(1, n + 1):
                    source.post(ntnda.value_from_image(IMAGE + uid, uid))
                wait_for(lambda: len(stitch.frames) == n, timeout=30,
                         message=f"{n} frames stitched")
                stats = collector.stats()
                control = collector.control.pv.current()
        finally:
            for consumer in consumers:
                consumer.shutdown()
    assert stitch.order == sorted(stitch.order)                  # in uniqueId order
    assert sorted(stitch.frames) == list(range(1, n + 1))
    for uid, image in stitch.frames.items():
        np.testing.assert_array_equal(image, IMAGE + uid)
    c = stats["collectorStats"]
    assert (c["nCollected"], c["nRejected"], c["nMissed"], c["nOverflows"]) == (2 * n, 0, 0, 0)
    assert stats["processorStats"]["nProcessed"] == 2 * n
    assert stats["producerStats_1"]["receiverStats"]["nReceived"] == n + 1   # + the snapshot
    assert stats["producerStats_2"]["channel"] == "process:2:output"
    value = collector.status.value_for(stats)
    assert value["collectorStats.nCollected"] == 2 * n
    # pvapy's collector names its id collectorId: statistics, status and control records
    assert stats["collectorId"] == 1 and "consumerId" not in stats
    assert value["collectorId"] == 1 and "consumerId" not in value
    assert control["collectorId"] == 1 and "consumerId" not in control
    assert report.values.header_words(stats)[0] == "collector 1"


class IdRecorder(UserDataProcessor):
    def __init__(self, configDict={}):
        UserDataProcessor.__init__(self, configDict)
        self.ids = []

    def process(self, pvObject):
        self.ids.append(int(pvObject["uniqueId"]))
        return pvObject


@pytest.mark.pva
@pytest.mark.peer
def test_distributor_split_two_consumers_collector_in_order(processes):
    """pvapy's documented pipeline: consumers share pvapy-ad-sim-server's frames
    through the distributor (-nc 2 -du 1), the collector puts them back in order."""
    sim = processes.start("pvapy-ad-sim-server", "-cn", "dist:image", "-nx", "16", "-ny", "8",
                          "-fps", "25", "-rt", "2", "-std", "5", "-shd", "0", "-dc")
    consumers = [Consumer("dist:image", None, consumer_id=cid, oid_offset=2,
                          distributor={"updates": 1}, output_channel="process:*:output")
                 for cid in (1, 2)]
    recorder = IdRecorder()
    collector = Collector(CollectorConfig("process:*:output", producer_ids=[1, 2],
                                          collector_flush=0.3), recorder)
    try:
        for consumer in consumers:
            consumer.start()
        for consumer in consumers:
            wait_for(lambda c=consumer: c.publisher.is_open, timeout=15,
                     message=f"consumer {consumer.consumer_id} output open")
        collector.start()
        wait_for(lambda: collector.receiver.connected, timeout=15, message="collector connected")
        sim.communicate(timeout=30)                  # every frame published
        wait_for(lambda: recorder.ids and collector.stats()["collectorStats"]["nCached"] == 0
                 and len(recorder.ids) == sum(
                     c.stats()["processorStats"]["nProcessed"] for c in consumers),
                 timeout=15, message="every frame collected")
        stats = collector.stats()
        shares = [c.stats()["processorStats"]["nProcessed"] for c in consumers]
    finally:
        collector.shutdown()
        for consumer in consumers:
            consumer.shutdown()
    ids = recorder.ids
    assert len(ids) >= 40 and all(shares)
    assert ids == list(range(ids[0], ids[0] + len(ids)))      # every frame, in order
    c = stats["collectorStats"]
    assert (c["nMissed"], c["nRejected"], c["nOverflows"]) == (0, 0, 0)
