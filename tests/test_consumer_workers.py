"""Worker processes inside one consumer (--n-workers, --gpus).

The plan (how many workers, which GPUs), the total userStats, and, on
loopback PVA with pvagpu-sim-server: every frame processed exactly once
across two workers, outputs published, per-worker and total statistics on
the status channel, configure and reset_stats reaching every worker, and a
worker killed with SIGKILL mid-stream reported, restarted and its frames in
flight counted as lost by uniqueId.

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

import pytest
from p4p.client.thread import Context

from conftest import wait_for
from pvagpu.cli.consumer import main as cli_main
from pvagpu.consumer import Consumer
from pvagpu.errors import ConfigurationError
from pvagpu.gpu import GpuAdImageProcessor
from pvagpu.runtime.config import ConsumerConfig
from pvagpu.runtime.workers import parse_gpu_list, plan_workers
from pvagpu.runtime.workers.stats import total_user_stats

RECORDER = textwrap.dedent("""
    import os, time
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


@pytest.mark.parametrize("fields, message", [
    ({"n_workers": 2, "accumulate_objects": 4}, "--accumulate-objects"),
    ({"n_workers": 2, "metadata_channels": "pva://x"}, "--metadata-channels"),
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
                     "-ao", "4"]) == 2
    assert "--accumulate-objects cannot be combined" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["-ic", "x", "--gpus", "0,x"])
    assert "device numbers" in capsys.readouterr().err
