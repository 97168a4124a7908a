"""Worker processes inside one consumer (--n-workers, --gpus).

The plan (how many workers, which GPUs), the total userStats, and, on
loopback PVA with pvagpu-sim-server: every frame processed exactly once
across two workers, outputs published, per-worker and total statistics on
the status channel, configure and reset_stats reaching every worker, and a
worker killed with SIGKILL mid-stream reported, restarted and its frames in
flight counted as lost by uniqueId. With an in-test p4p server: metadata
channels (-mc) in every worker, each frame paired with its own metadata
update whichever worker takes it; batches (-ao) per worker, the partial
ones run when the stream goes quiet and at stop. Through the CLI: CA
metadata from pvagpu-sim-server's IOC, with batches, in two workers.

Test processors are written to files and loaded with -pf (each worker
loads its own instance from the spec); they append every uniqueId they
process to a file of their own process, ``ids-<pid>.txt``.
"""
import json
import logging
import os
import signal
import textwrap
from pathlib import Path

import numpy as np
import pytest
from p4p.client.thread import Context
from p4p.nt import NTScalar
from p4p.server import Server
from p4p.server.thread import SharedPV

from conftest import need_installed, wait_for
from pvagpu import ntnda
from pvagpu.cli.consumer import main as cli_main
from pvagpu.consumer import Consumer
from pvagpu.errors import ConfigurationError
from pvagpu.gpu import GpuAdImageProcessor
from pvagpu.ntnda import TimeStamp
from pvagpu.pva.loopback import ca_loopback_env
from pvagpu.runtime.config import ConsumerConfig
from pvagpu.runtime.workers import parse_gpu_list, plan_workers
from pvagpu.runtime.workers.stats import total_user_stats

RECORDER = textwrap.dedent("""
    import os, queue, time
    from pvagpu import pva
    from pvagpu.hpc import AdImageProcessor

    class Recorder(AdImageProcessor):
        def __init__(self, configDict=None):
            super().__init__(configDict)
            c = dict(configDict or {})
            self.dir, self.delay = c["dir"], float(c.get("delay", 0))
            self.threshold = float(c.get("threshold", 0))
            self.nFrames = 0

        def start(self):
            self.ids = open(os.path.join(self.dir, f"ids-{os.getpid()}.txt"), "a", buffering=1)

        def configure(self, configDict):
            self.threshold = float(configDict.get("threshold", self.threshold))

        def process(self, pvObject):
            uid, image, *_ = self.reshapeNtNdArray(pvObject)   # decoded here, in the worker
            time.sleep(self.delay)
            self.ids.write(f"{uid}\\n")
            self.nFrames += 1
            self.updateOutputChannel(pvObject)

        def resetStats(self):
            self.nFrames = 0

        def getStats(self):
            return {"nFrames": self.nFrames, "threshold": self.threshold}

        def getStatsPvaTypes(self):
            return {"nFrames": pva.UINT, "threshold": pva.DOUBLE}

    from pvagpu.gpu import GpuAdImageProcessor

    class GpuRecorder(GpuAdImageProcessor):
        def start(self):
            super().start()
            self.ids = open(os.path.join(self.dir, f"ids-{os.getpid()}.txt"), "a", buffering=1)

        def __init__(self, configDict=None):
            super().__init__(configDict)
            self.dir = configDict["dir"]

        def processFrame(self, frame):
            self.ids.write(f"{frame.unique_id}\\n")
            return {"total": float(self.xp.sum(frame.image))}

        def getOutputFieldTypes(self):
            return {"total": "d"}

    def stamp(v):
        return v["timeStamp.secondsPastEpoch"] + 1e-9 * v["timeStamp.nanoseconds"]

    class MetadataPairer(AdImageProcessor):
        \"\"\"Pairs each frame with the metadata update of its time stamp (within
        'window' s before it), pvapy's pattern: older updates belong to frames
        another worker took and are dropped; a newer one waits for its frame.
        Appends 'uniqueId value' (None: no pair) to pairs-<pid>.txt.\"\"\"

        def __init__(self, configDict=None):
            super().__init__(configDict)
            self.dir, self.channel = configDict["dir"], configDict["channel"]
            self.window = float(configDict.get("window", 0))
            self.held = None

        def start(self):
            self.out = open(os.path.join(self.dir, f"pairs-{os.getpid()}.txt"), "a", buffering=1)

        def pair(self, t):
            while True:
                m, self.held = self.held, None
                if m is None:
                    try:
                        m = self.metadataQueueMap[self.channel].get(timeout=10)
                    except queue.Empty:
                        return None
                if stamp(m) > t:
                    self.held = m
                    return None
                if t - stamp(m) <= self.window:
                    return m["value"]

        def process(self, pvObject):
            self.out.write(f"{pvObject['uniqueId']} {self.pair(stamp(pvObject))}\\n")

    class BatchRecorder(AdImageProcessor):
        \"\"\"Appends the uniqueIds of each batch, one line per batch, to batches-<pid>.txt.\"\"\"

        def __init__(self, configDict=None):
            super().__init__(configDict)
            self.dir = configDict["dir"]

        def start(self):
            self.out = open(os.path.join(self.dir, f"batches-{os.getpid()}.txt"), "a",
                            buffering=1)

        def processBatch(self, values):
            ids = [str(self.reshapeNtNdArray(v)[0]) for v in values]   # decoded here
            self.out.write(" ".join(ids) + "\\n")
""")


# ---------------------------------------------------------------------------
# the plan and the totals (no processes)
# ---------------------------------------------------------------------------

class GpuProc(GpuAdImageProcessor):
    pass


class CpuProc:
    def process(self, value):
        pass


def plan(cls, gpus_visible=0, **fields):
    config = ConsumerConfig("x", **fields)
    return plan_workers(config, cls, gpu_count=lambda: gpus_visible)


def test_the_plan_of_workers_and_gpus():
    assert plan(CpuProc, 2) == plan(CpuProc, 0)
    assert plan(CpuProc, 2).n_workers == 0                       # today's behaviour
    assert plan(GpuProc, 0).n_workers == 0                       # no GPU visible
    assert plan(GpuProc, 2) == plan(GpuProc, 2, gpu="auto")
    assert plan(GpuProc, 2).gpus == (0, 1)                       # one per visible GPU
    assert plan(GpuProc, 2, gpu="1").n_workers == 0              # --gpu N: in-process
    assert plan(GpuProc, 2, gpu="none").n_workers == 0
    assert plan(CpuProc, 0, n_workers=3).gpus == ()              # unbound
    assert plan(CpuProc, 0, n_workers=3, gpu="2").gpus == (2, 2, 2)
    assert plan(GpuProc, 2, n_workers=3).gpus == (0, 1, 0)       # in turn
    assert plan(GpuProc, 4, gpus="1,3").gpus == (1, 3)           # --gpus: one per GPU
    assert plan(CpuProc, 0, n_workers=4, gpus=[1, 3]).gpus == (1, 3, 1, 3)
    assert plan(GpuProc, 2, n_workers=0).n_workers == 0


def test_metadata_channels_and_batches_combine_with_workers():
    assert plan(CpuProc, 0, n_workers=2, accumulate_objects=4,
                metadata_channels="pva://x,ca://y").n_workers == 2
    assert plan(GpuProc, 2, accumulate_objects=8, metadata_channels="pva://x").gpus == (0, 1)


@pytest.mark.parametrize("fields, message", [
    ({"n_workers": -1}, "--n-workers must be"),
    ({"gpus": "0", "gpu": "none"}, "give one of them"),
])
def test_plans_that_cannot_run_say_why(fields, message):
    with pytest.raises(ConfigurationError, match=message):
        plan(CpuProc, 1, **fields)
    with pytest.raises(ConfigurationError, match="needs a processor class"):
        plan(None, 0, n_workers=2)
    with pytest.raises(ConfigurationError, match="device numbers"):
        parse_gpu_list("0,gpu1")
    with pytest.raises(ConfigurationError, match="device numbers"):
        ConsumerConfig("x", gpus="a")
    assert parse_gpu_list(None) is None and parse_gpu_list("0, 2") == [0, 2]


def test_a_consumer_with_a_processor_instance_cannot_have_workers():
    with pytest.raises(ConfigurationError, match="instead of an instance"):
        Consumer("x", CpuProc(), n_workers=2)


def test_total_user_stats():
    total = total_user_stats([
        {"nFrames": 3, "fooRate": 1.5, "decodeTimeMs": 2.0, "maxLag": 4, "minGap": 2,
         "lastUniqueId": 7, "nx": 64, "gpuBackend": "numpy", "gpuDevice": "GPU 0", "busy": False},
        {"nFrames": 4, "fooRate": 2.5, "decodeTimeMs": 1.0, "maxLag": 9, "minGap": 1,
         "lastUniqueId": 8, "nx": 64, "gpuBackend": "numpy", "gpuDevice": "GPU 1", "busy": True},
    ])
    assert total == {"nFrames": 7, "fooRate": 4.0, "decodeTimeMs": 3.0, "maxLag": 9, "minGap": 1,
                     "lastUniqueId": 8, "nx": 64, "gpuBackend": "numpy",
                     "gpuDevice": "GPU 0, GPU 1", "busy": True}


# ---------------------------------------------------------------------------
# loopback PVA: pvagpu-sim-server -> a consumer with 2 workers
# ---------------------------------------------------------------------------

@pytest.fixture
def client(pva_env):
    ctx = Context("pva", nt=False)
    yield ctx
    ctx.close()


def start_sim(processes, name, n, fps):
    """pvagpu-sim-server: n frames (uniqueId 1..n) at fps, from 0.5 s after
    its first client (the consumer) connected."""
    return processes.start("pvagpu-sim-server", "-cn", name, "-nx", "32", "-ny", "24",
                           "-dt", "uint16", "-cs", "8", "-np", str(n), "-fps", str(fps), "-wfc",
                           "-std", "0.5", "-shd", "120", "-rp", "0")


def processed_ids(directory: Path) -> dict:
    """pid -> uniqueIds its processor recorded."""
    return {int(f.stem[4:]): [int(x) for x in f.read_text().split()]
            for f in directory.glob("ids-*.txt")}


def status_value(client, name):
    value = client.get(name, timeout=2, throw=False)
    return None if isinstance(value, Exception) else value


def accounted(consumer, n):
    def done():
        s = consumer.stats()
        p = s["processorStats"]
        return p["nProcessed"] + p["nErrors"] + s["receiverStats"]["nOverruns"] >= n
    wait_for(done, timeout=60, message=f"{n} frames accounted for")
    stats = consumer.stats()
    assert stats["receiverStats"]["nOverruns"] == 0
    return stats


def control(client, channel, command, args=None):
    client.put(channel, {"command": command} if args is None else
               {"command": command, "args": json.dumps(args)}, timeout=5)


@pytest.mark.pva
@pytest.mark.parametrize("cls, gpu", [("Recorder", None), ("GpuRecorder", "none")])
def test_two_workers_process_every_frame_exactly_once(cls, gpu, processes, client, tmp_path):
    n = 60
    (tmp_path / "rec.py").write_text(RECORDER)
    start_sim(processes, "wk:image", n, 100)
    config = ConsumerConfig("wk:image", processor_file=str(tmp_path / "rec.py"),
                            processor_class=cls, processor_args={"dir": str(tmp_path)},
                            n_workers=2, gpu=gpu, output_channel="wk:out",
                            status_channel="wk:status", control_channel="wk:control",
                            status_period=0.2)
    with Consumer(config) as consumer:
        pids = {h.pid for h in consumer.workers.handles}
        assert len(pids) == 2 and os.getpid() not in pids
        stats = accounted(consumer, n)
        ids = processed_ids(tmp_path)
        assert set(ids) == pids                        # both workers took frames
        every = sorted(i for per_pid in ids.values() for i in per_pid)
        assert every == list(range(1, n + 1))          # each frame once, none lost
        p = stats["processorStats"]
        assert (p["nProcessed"], p["nErrors"], p["nMissed"]) == (n, 0, 0)
        # outputs come back from the workers and go out on the consumer's channel
        wait_for(lambda: consumer.stats()["publisherStats"]["nPublished"] == n,
                 message="every output published")
        out = client.get("wk:out", timeout=5)
        assert ("total" in out) if cls == "GpuRecorder" else (out["uniqueId"] >= 1)
        # per-worker and total statistics on the status channel
        status = wait_for(lambda: (v := status_value(client, "wk:status")) is not None
                          and v["processorStats.nProcessed"] == n and v, message="status")
        workers = [status[f"worker{k}Stats"] for k in (1, 2)]
        assert sum(w["nProcessed"] for w in workers) == n
        assert {w["pid"] for w in workers} == pids and {w["state"] for w in workers} == {"running"}
        assert all(w["gpu"] == "none" and w["nLost"] == 0 and w["nDispatched"] > 0
                   for w in workers)
        if cls == "Recorder":
            assert status["userStats.nFrames"] == n
            assert sorted(w["user"]["nFrames"] for w in workers) == sorted(map(len, ids.values()))
            # configure and reset_stats reach every worker
            control(client, "wk:control", "configure", {"threshold": 7.5})
            wait_for(lambda: all(s["user"]["threshold"] == 7.5 for s in
                                 (consumer.stats()[f"worker{k}Stats"] for k in (1, 2))),
                     message="both workers configured")
            control(client, "wk:control", "reset_stats")
            wait_for(lambda: (s := consumer.stats())["userStats"]["nFrames"] == 0 and
                     all(s[f"worker{k}Stats"]["nProcessed"] == 0 and
                         s[f"worker{k}Stats"]["user"]["nFrames"] == 0 for k in (1, 2)),
                     message="both workers reset")
        else:
            assert status["userStats.gpuBackend"] == "numpy"
            assert all(w["user"]["gpuBackend"] == "numpy" for w in workers)
    assert all(h.state == "stopped" for h in consumer.workers.handles)


@pytest.mark.pva
def test_a_killed_worker_is_restarted_and_its_frames_counted_lost(processes, tmp_path, caplog):
    n = 60
    (tmp_path / "rec.py").write_text(RECORDER)
    start_sim(processes, "wk:kill", n, 40)
    config = ConsumerConfig("wk:kill", processor_file=str(tmp_path / "rec.py"),
                            processor_class="Recorder",
                            processor_args={"dir": str(tmp_path), "delay": 0.04}, n_workers=2,
                            receiver_queue_size=2 * n)   # rings for every frame: no overruns
    caplog.set_level(logging.ERROR, logger="pvagpu.runtime.workers")
    with Consumer(config) as consumer:
        victim = consumer.workers.handles[0]
        wait_for(lambda: victim.counters.n_processed >= 3 and len(victim.in_flight) >= 1,
                 timeout=30, message="worker 1 busy")
        old_pid = victim.pid
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: victim.n_restarts == 1 and victim.state == "running", timeout=30,
                 message="worker 1 restarted")
        stats = accounted(consumer, n)
    section = stats["worker1Stats"]
    lost = [int(i) for i in section["lostIds"].split()]
    assert lost and section["nLost"] == len(lost) and section["nRestarts"] == 1
    assert section["pid"] != old_pid and stats["worker2Stats"]["nLost"] == 0
    p = stats["processorStats"]
    assert p["nErrors"] == len(lost) and p["nProcessed"] == n - len(lost)
    ids = processed_ids(tmp_path)
    recorded = [i for per_pid in ids.values() for i in per_pid]
    # every frame was processed once, or lost with the killed worker (a lost frame
    # may have been recorded by it just before it died, never by another)
    assert set(recorded) | set(lost) == set(range(1, n + 1))
    survivors = [i for pid, per_pid in ids.items() if pid != old_pid for i in per_pid]
    assert len(survivors) == len(set(survivors)) and not set(survivors) & set(lost)
    assert len(ids) == 3                         # the restarted worker processed frames too
    assert any("died (killed by SIGKILL)" in r.getMessage() and "lost" in r.getMessage()
               for r in caplog.records)


@pytest.mark.pva
def test_cli_with_workers(processes, client, tmp_path):
    n = 30
    (tmp_path / "rec.py").write_text(RECORDER)
    start_sim(processes, "wk:cli", n, 50)
    proc = processes.start("pvagpu-consumer", "-ic", "wk:cli", "-sc", "wk:cli:status",
                           "-pf", str(tmp_path / "rec.py"), "-pc", "Recorder",
                           "-pa", json.dumps({"dir": str(tmp_path)}), "--n-workers", "2",
                           "-rp", "0.5", "-dc")
    status = wait_for(lambda: (v := status_value(client, "wk:cli:status")) is not None and
                      v["processorStats.nProcessed"] == n and v, timeout=60,
                      message="CLI processed every frame")
    assert status["worker1Stats.nProcessed"] + status["worker2Stats.nProcessed"] == n
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "worker1 " in out and "worker2 " in out, out          # per-worker report lines
    assert f"processed {n}, missed 0, errors 0" in out.strip().splitlines()[-1], out
    assert sorted(i for ids in processed_ids(tmp_path).values() for i in ids) == \
        list(range(1, n + 1))


def test_cli_flags_are_checked(capsys):
    assert cli_main(["-ic", "x", "-pc", "pvagpu.processors:FrameCounter", "--n-workers", "2",
                     "-mc", "pva://x,x"]) == 2
    assert "given twice" in capsys.readouterr().err    # checked before any worker starts
    with pytest.raises(SystemExit):
        cli_main(["-ic", "x", "--gpus", "0,x"])
    assert "device numbers" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# loopback PVA: an in-test p4p server -> 2 workers with -mc, with -ao
# ---------------------------------------------------------------------------

#: the time stamp of frame k and of its metadata update: T0 + k s
T0 = 1_700_000_000


class Feed:
    """An image channel and a metadata channel (NTScalar double) on a p4p
    server of the test; frame k and its metadata update are stamped T0 + k."""

    def __init__(self, image, metadata):
        self.image = SharedPV(initial=self.frame(0))
        self.metadata = SharedPV(nt=NTScalar("d"), initial=0.0)
        self.server = Server(providers=[{image: self.image, metadata: self.metadata}])

    @staticmethod
    def frame(k):
        img = np.full((8, 12), k % 256, dtype=np.uint16)
        return ntnda.value_from_image(img, k, codec="lz4", time_stamp=TimeStamp(T0 + k, 0))

    def post(self, consumer, k, metadata=None):
        """Post metadata update ``metadata`` (if any) and frame k, stamped T0 + k;
        wait until the consumer handed the frame to a worker and every worker
        took its frames off its ring."""
        if metadata is not None:
            self.metadata.post(metadata, timestamp=T0 + k)
        handles = consumer.workers.handles
        dispatched = sum(h.counters.n_dispatched for h in handles)
        self.image.post(self.frame(k))
        wait_for(lambda: sum(h.counters.n_dispatched for h in handles) > dispatched and
                 all(h.inputs.ring_stats()["ringSlotsInUse"] == 0 for h in handles),
                 message=f"frame {k} handed to a worker and taken off its ring")

    def stop(self):
        self.server.stop()


@pytest.fixture
def feed(pva_env):
    f = Feed("wkf:image", "wkf:md")
    yield f
    f.stop()


def worker_config(tmp_path, cls, **fields):
    (tmp_path / "rec.py").write_text(RECORDER)
    return ConsumerConfig("wkf:image", processor_file=str(tmp_path / "rec.py"),
                          processor_class=cls, n_workers=2, server_queue_size=64, **fields)


def lines_per_pid(directory: Path, prefix: str) -> dict:
    return {int(f.stem[len(prefix) + 1:]): f.read_text().splitlines()
            for f in directory.glob(f"{prefix}-*.txt")}


@pytest.mark.pva
def test_each_worker_pairs_frames_with_their_metadata(feed, client, tmp_path):
    n = 24
    config = worker_config(tmp_path, "MetadataPairer", metadata_channels=["pva://wkf:md"],
                           processor_args={"dir": str(tmp_path), "channel": "wkf:md"},
                           status_channel="wkf:status", status_period=0.2)
    with Consumer(config) as consumer:
        assert consumer.metadata is consumer.workers.metadata and len(consumer.metadata) == 1

        def md_received(stats):
            return [stats[f"worker{k}Stats"]["metadata1"]["nReceived"] for k in (1, 2)]

        # every worker subscribed (its first update is the channel's value at connect)
        wait_for(lambda: consumer.receiver.connected and min(md_received(consumer.stats())) >= 1,
                 timeout=30, message="the consumer and both workers' metadata connected")
        for k in range(1, n + 1):
            feed.post(consumer, k, metadata=1.5 * k)
        assert accounted(consumer, n)["processorStats"]["nErrors"] == 0
        # every worker saw every update: the one at connect and n more
        wait_for(lambda: md_received(consumer.stats()) == [n + 1, n + 1],
                 message="every metadata update in both workers")
        total = consumer.stats()["metadataStats"]["metadata-1"]
        assert total["channel"] == "wkf:md" and total["receiverStats"]["nReceived"] == 2 * (n + 1)
        assert total["receiverStats"]["nOverruns"] == 0
        status = wait_for(lambda: (v := status_value(client, "wkf:status")) is not None
                          and v["processorStats.nProcessed"] == n
                          and v["metadataStats_1.receiverStats.nReceived"] == 2 * (n + 1) and v,
                          message="status")
        assert status["metadataStats_1.channel"] == "wkf:md"
        assert status["metadataStats_1.receiverStats.nReceived"] == 2 * (n + 1)
        assert status["metadataStats_1.queueStats.nReceived"] == 2 * (n + 1)
        workers = [status[f"worker{k}Stats.metadata1"] for k in (1, 2)]
        assert [(w["channel"], w["nReceived"], w["nOverruns"]) for w in workers] == \
            [("wkf:md", n + 1, 0)] * 2
        # what the processors took off their queues, and what is left there
        assert sum(w["nDelivered"] + w["nQueued"] for w in workers) == 2 * (n + 1)
    pairs = lines_per_pid(tmp_path, "pairs")
    assert len(pairs) == 2                                   # both workers took frames
    paired = sorted(tuple(line.split()) for lines in pairs.values() for line in lines)
    # each frame once, with the metadata value posted for it
    assert paired == sorted((str(k), str(1.5 * k)) for k in range(1, n + 1))


@pytest.mark.pva
@pytest.mark.parametrize("flush", ["quiet", "stop"])
def test_each_worker_runs_its_frames_in_batches(flush, feed, tmp_path):
    n, size = 22, 4                         # 22 = 5 batches of 4 and a partial one, at least
    config = worker_config(tmp_path, "BatchRecorder", processor_args={"dir": str(tmp_path)},
                           accumulate_objects=size,
                           accumulation_timeout=0.3 if flush == "quiet" else 60,
                           receiver_queue_size=4)   # 2 slots per worker: fewer than a batch
    with Consumer(config) as consumer:
        handles = consumer.workers.handles
        assert [h.slots for h in handles] == [2, 2] and consumer.delivery.queue_max == 2 * 5
        wait_for(lambda: consumer.receiver.connected, timeout=20, message="connected")
        # frames waiting for their batch hold no slot: each post waits for empty rings
        for k in range(1, n + 1):
            feed.post(consumer, k)
        if flush == "quiet":                # partial batches run after 0.3 s without frames
            stats = accounted(consumer, n)
        else:                               # ... or, with a long timeout, at stop
            assert consumer.stats()["processorStats"]["nProcessed"] < n
    if flush == "stop":
        stats = consumer.final_stats
        assert stats["receiverStats"]["nOverruns"] == 0
    p = stats["processorStats"]
    assert (p["nProcessed"], p["nErrors"], p["nMissed"]) == (n, 0, 0)
    assert consumer.workers.in_flight == 0
    batches = [[int(i) for i in line.split()]
               for lines in lines_per_pid(tmp_path, "batches").values() for line in lines]
    assert sorted(i for b in batches for i in b) == list(range(1, n + 1))   # each frame once
    assert all(1 <= len(b) <= size for b in batches) and min(map(len, batches)) < size
    assert all(b == sorted(b) for b in batches)       # a worker's frames in arrival order
    assert len(lines_per_pid(tmp_path, "batches")) == 2


@pytest.mark.pva
def test_cli_workers_with_ca_metadata_and_batches(processes, client, tmp_path):
    """pvagpu-sim-server puts a CA metadata value just before each frame (its
    embedded IOC); each of 2 workers subscribes over CA itself and pairs it."""
    need_installed("softioc", "epics")
    processes.env.update(ca_loopback_env())   # the workers inherit the consumer's environment
    n = 20
    (tmp_path / "rec.py").write_text(RECORDER)
    processes.start("pvagpu-sim-server", "-cn", "wkc:image", "-nx", "16", "-ny", "8",
                    "-dt", "uint16", "-np", str(n), "-fps", "20", "-wfc", "-std", "1",
                    "-shd", "120", "-rp", "0", "-mpv", "wkc:x")
    proc = processes.start("pvagpu-consumer", "-ic", "wkc:image", "-sc", "wkc:status",
                           "-pf", str(tmp_path / "rec.py"), "-pc", "MetadataPairer",
                           "-pa", json.dumps({"dir": str(tmp_path), "channel": "wkc:x",
                                              "window": 0.02}),
                           "--n-workers", "2", "-mc", "wkc:x", "-ao", "3", "-at", "0.2")

    def per_worker(v):   # each worker: the value at connect, then one per frame
        return [v[f"worker{k}Stats.metadata1.nReceived"] for k in (1, 2)]

    status = wait_for(lambda: (v := status_value(client, "wkc:status")) is not None and
                      v["processorStats.nProcessed"] == n and min(per_worker(v)) > n and v,
                      timeout=60, message="every frame processed, every CA update in each worker")
    assert status["metadataStats_1.channel"] == "wkc:x"
    assert status["metadataStats_1.receiverStats.nReceived"] == sum(per_worker(status))
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    pairs = [line.split() for lines in lines_per_pid(tmp_path, "pairs").values()
             for line in lines]
    assert sorted(int(uid) for uid, _ in pairs) == list(range(1, n + 1)), out
    assert all(value != "None" for _, value in pairs), pairs   # each frame got its CA value
