"""Scaling part (c): one distributor stream shared by 1 and by 2 consumers.

The recipe of pvagpu-launch, measured: a source without a distributor
plugin (a p4p server in this process, posting pre-built NTNDArray frames
at a steady rate), pvapy-mirror-server serving it again with its
distributor, and N pvagpu-consumer processes in one distributor group
(-du 1, command lines from pvagpu.launch.plan), each running
``BusyProcessor``: a CPU-heavy processor that spends ``--cost`` ms of CPU
on every frame (a sum over the image repeated until that much thread CPU
time has passed), so that one consumer cannot keep up with the offered
rate and the distributor has to share the load.

For N = 1 and N = 2, the same stream (``--frames`` frames at ``--fps``,
``--size`` uint16) is offered once the consumers are connected; the run
reports the frames processed per second (from the first to the last
processed frame, over all consumers), the frames lost (published minus
processed; the consumers count them as missed), and the consumers' CPU
time per processed frame (user + system, from /proc). The ratio of the
frames/s with 2 consumers to 1 is the scaling; with fewer than 2 cores
free besides the source and the mirror it cannot reach 2.

Prints a table and the machine line, writes
benchmarks/results/scaling_consumers.json.

    python benchmarks/scaling_consumers.py                 # 1200 frames at 250 fps, 8 ms each
    python benchmarks/scaling_consumers.py --quick         # 400 frames
    python benchmarks/scaling_consumers.py --cost 4 --fps 300
"""
from __future__ import annotations

import time

import numpy as np

from pvagpu.hpc import AdImageProcessor


class BusyProcessor(AdImageProcessor):
    """Spends ``costMs`` ms of CPU time on each frame (configDict, default 8)."""

    def __init__(self, configDict=None):
        configDict = dict(configDict or {})
        AdImageProcessor.__init__(self, configDict)
        self.cost = float(configDict.get("costMs", 8.0)) / 1e3

    def process(self, pvObject):
        _, image, *_ = self.reshapeNtNdArray(pvObject)
        end = time.thread_time() + self.cost
        while time.thread_time() < end:
            np.sum(image)
        return pvObject


def main(argv=None) -> int:  # noqa: C901 - the benchmark's steps, in order
    import argparse
    import json
    import os
    import sys
    import tempfile
    from pathlib import Path

    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    import _machine
    from throughput import cpu_usage
    from p4p.server import Server
    from p4p.server.thread import SharedPV

    from pvagpu import ntnda
    from pvagpu.launch.plan import consumer_specs, mirror_spec
    from pvagpu.launch.settings import LaunchSettings
    from pvagpu.launch.status_watch import StatusWatcher
    from pvagpu.launch.supervisor import Supervisor
    from pvagpu.pva.loopback import loopback_env, process_env

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=1200, help="frames per run (default 1200)")
    p.add_argument("--fps", type=float, default=250.0, help="offered rate (default 250)")
    p.add_argument("--size", type=int, default=256, help="frame side, uint16 (default 256)")
    p.add_argument("--cost", type=float, default=8.0, help="CPU ms per frame (default 8)")
    p.add_argument("--consumers", default="1,2", help="consumer counts (default 1,2)")
    p.add_argument("--quick", action="store_true", help="400 frames")
    p.add_argument("--out", default=str(here / "results" / "scaling_consumers.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.frames = 400

    rng = np.random.default_rng(1)
    images = [rng.integers(0, 1000, (args.size, args.size), dtype=np.uint16) for _ in range(16)]

    def run(n_consumers: int) -> dict:
        env = loopback_env()
        os.environ.update(env)                      # this process's p4p server and client
        values = [ntnda.value_from_image(img, 0) for img in images]
        pv = SharedPV(initial=ntnda.value_from_image(images[0], 0))
        server = Server(providers=[{"bench:src": pv}])
        settings = LaunchSettings(mirror="bench:src", input_channel="bench:mirror",
                                  gpus="none", consumers=n_consumers, name="bench",
                                  processor_file=str(Path(__file__).resolve()),
                                  processor_class="BusyProcessor",
                                  processor_args={"costMs": args.cost},
                                  consumer_args=["-sqs", "100"])
        specs = [mirror_spec(settings)] + consumer_specs(settings, [])
        supervisor = Supervisor(tempfile.mkdtemp(prefix="pvagpu-bench-"), process_env(env))
        children = [supervisor.start(spec) for spec in specs]
        consumers = children[1:]
        watcher = StatusWatcher([c.spec.status_channel for c in consumers]).start()
        try:
            deadline = time.monotonic() + 60
            while not all(s.stats and s.stats["receiverStats"]["connected"]
                          for s in watcher.snapshot()):
                if time.monotonic() > deadline:
                    raise RuntimeError("consumers did not connect in 60 s")
                time.sleep(0.1)
            cpu0 = [sum(cpu_usage(c.pid)[:2]) for c in consumers]
            period = 1.0 / args.fps
            t0 = time.perf_counter()
            for k in range(1, args.frames + 1):
                delay = t0 + (k - 1) * period - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                value = values[k % len(values)]
                value["uniqueId"] = k
                pv.post(value)
            sent_s = time.perf_counter() - t0

            def settled():
                states = watcher.snapshot()
                return sum(s.stats["processorStats"]["nProcessed"] for s in states), states

            last, stable_since = -1, time.monotonic()
            while time.monotonic() - stable_since < 3:       # until the counts stop moving
                done, states = settled()
                if done != last:
                    last, stable_since = done, time.monotonic()
                if done >= args.frames:
                    break
                time.sleep(0.2)
            cpu = sum(sum(cpu_usage(c.pid)[:2]) for c in consumers) - sum(cpu0)
            done, states = settled()
            first = min(s.stats["processorStats"]["firstObjectTime"] for s in states)
            last_t = max(s.stats["processorStats"]["lastObjectTime"] for s in states)
            per = [s.stats["processorStats"]["nProcessed"] for s in states]
            missed = sum(s.stats["processorStats"]["nMissed"] for s in states)
        finally:
            watcher.close()
            supervisor.stop(5)
            pv.close()
            server.stop()
        span = last_t - first
        return {"consumers": n_consumers, "offered_fps": args.fps,
                "achieved_offer_fps": (args.frames - 1) / sent_s if sent_s > 0 else 0.0,
                "published": args.frames, "processed": done, "per_consumer": per,
                "lost": args.frames - done, "missed_counted": missed,
                "processed_fps": (done - 1) / span if span > 0 and done > 1 else 0.0,
                "cpu_ms_per_frame": 1e3 * cpu / done if done else None}

    machine = _machine.describe()
    print(_machine.line(machine), flush=True)
    print(f"stream: {args.frames} frames {args.size}x{args.size} uint16 at {args.fps:g} fps "
          f"-> pvapy-mirror-server (distributor, -du 1) -> N consumers, {args.cost:g} ms "
          f"CPU per frame", flush=True)
    results = []
    for n in (int(x) for x in args.consumers.split(",")):
        r = run(n)
        results.append(r)
        print(f"  {n} consumer(s): {r['processed_fps']:.1f} frames/s processed, "
              f"{r['processed']}/{r['published']} frames ({r['lost']} lost, {r['missed_counted']} "
              f"counted missed), per consumer {r['per_consumer']}, "
              f"{r['cpu_ms_per_frame']:.2f} ms CPU per frame", flush=True)
    if len(results) >= 2 and results[0]["processed_fps"] > 0:
        ratio = results[1]["processed_fps"] / results[0]["processed_fps"]
        print(f"scaling: {ratio:.2f}x frames/s with {results[1]['consumers']} consumers "
              f"against {results[0]['consumers']}")
    else:
        ratio = None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "settings": vars(args), "runs": results,
                               "scaling": ratio}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main())
