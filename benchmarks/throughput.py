"""Highest lossless frame rate: pvagpu-consumer against pvapy-hpc-consumer.

Both consumers are fed by the same server program, pvapy-ad-sim-server, in
the same run, on a private loopback PVA network. For each frame size
(512x512 uint8, 1024x1024 uint8, 2048x2048 uint16 by default) and each
consumer, a search looks for the highest frame rate that the consumer takes
with no frame lost over a ``--duration`` s run (20 s by default):

- each step starts a fresh sim server at the target rate and a fresh
  consumer process (no processor: frames are received, counted and passed
  through, the same work for both), with the same server queue (-sqs) and
  pvapy's default receive path for pvapy (-rqs -1);
- a step passes when the consumer processed every frame the server
  published (the server's own count), with nMissed == 0 and no overruns,
  and the server really reached >= 97 % of the target rate (otherwise the
  server, not the consumer, was the limit and the step fails as such);
- the rate doubles from ``--start`` until a step fails, then the bracket
  is bisected ``--bisect`` times; the two consumers' searches are
  interleaved step by step, so that a change in the machine's load hits
  both alike.

CPU time per frame is the consumer process's user + system time from just
before the first frame to just after the last (read from /proc), divided
by the frames it processed; it is recorded for every step, with the user
and system parts and the minor page faults per frame.

Prints a table (max fps of each consumer, ratio, CPU us per frame) and the
machine line, and writes benchmarks/results/throughput.json.

    python benchmarks/throughput.py                    # faithful: 20 s steps (< 30 min)
    python benchmarks/throughput.py --quick            # 5 s steps, fewer bisections
    python benchmarks/throughput.py --sizes 512        # one size
    python benchmarks/throughput.py --step pvagpu 512 2000   # one step, for profiling
    python benchmarks/throughput.py --numpy-backend    # GpuAdImageProcessor on NumPy vs plain path
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _machine  # noqa: E402
import numpy as np  # noqa: E402

from pvagpu import ntnda  # noqa: E402
from pvagpu.gpu import GpuAdImageProcessor  # noqa: E402
from pvagpu.hpc import AdImageProcessor  # noqa: E402
from pvagpu.pva.loopback import process_env  # noqa: E402

RESULTS = HERE / "results" / "throughput.json"
CHANNEL = "bench:image"
CONSUMERS = ("pvapy", "pvagpu")
#: size key -> (nx, ny, dtype, start rate of the search)
SIZES = {
    "512": (512, 512, "uint8", 1000),
    "1024": (1024, 1024, "uint8", 250),
    "2048": (2048, 2048, "uint16", 25),
}
START_DELAY = 4.0       # s the sim server serves its (empty) channel before frame 1
DRAIN = 1.5             # s after the server's last frame before the CPU time is read
SERVER_REACHED = 0.97   # the server must publish at >= this fraction of the target
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the NumPy backend against the plain processor path (issue 5) ------------

class _PlainStats(AdImageProcessor):
    """Per-frame statistics the pvapy way: reshapeNtNdArray, then NumPy."""
    def __init__(self, configDict=None):
        super().__init__(configDict)
        self.result = None

    def process(self, pvObject):
        image = self.reshapeNtNdArray(pvObject)[1]
        self.result = (float(image.mean()), float(image.max()), int((image > 8).sum()))
        return pvObject


class _BackendStats(GpuAdImageProcessor):
    """The same statistics through GpuAdImageProcessor.processFrame with self.xp."""
    def __init__(self, configDict=None):
        super().__init__(configDict)
        self.result = None

    def processFrame(self, frame):
        image, xp = frame.image, self.xp
        self.result = (float(image.mean()), float(xp.max(image)), int((image > 8).sum()))
        return None


def numpy_backend_overhead(sizes, codecs_, n_frames: int, repeat: int) -> list:
    """Seconds per frame of :class:`_PlainStats` and :class:`_BackendStats`
    (backend 'none') on the same Poisson frames, in process, interleaved,
    best of ``repeat``; the backend's cost relative to the plain path."""
    rows = []
    for size in sizes:
        nx, ny, dtype, _ = SIZES[size]
        rng = np.random.default_rng(1)
        for codec in codecs_:
            values = [ntnda.value_from_image(rng.poisson(4, (ny, nx)).astype(dtype), i + 1,
                                             codec=codec) for i in range(n_frames)]
            plain, backend = _PlainStats(), _BackendStats({"gpu": "none"})
            backend.start()
            best = {"plain": float("inf"), "numpy backend": float("inf")}
            for _ in range(repeat):
                for name, proc in (("plain", plain), ("numpy backend", backend)):
                    t0 = time.perf_counter()
                    for value in values:
                        proc.process(value)
                    best[name] = min(best[name], (time.perf_counter() - t0) / n_frames)
            backend.stop()
            assert plain.result == backend.result, (plain.result, backend.result)
            rows.append({"nx": nx, "ny": ny, "dtype": dtype, "codec": codec or "none",
                         "plain_ms": best["plain"] * 1e3,
                         "numpy_backend_ms": best["numpy backend"] * 1e3,
                         "overhead_pct": 100 * (best["numpy backend"] / best["plain"] - 1)})
            r = rows[-1]
            print(f"{nx}x{ny} {dtype:>6} {r['codec']:>6}: plain {r['plain_ms']:8.3f} ms/frame, "
                  f"NumPy backend {r['numpy_backend_ms']:8.3f} ms/frame, "
                  f"overhead {r['overhead_pct']:+5.1f} %", flush=True)
    return rows


def cpu_usage(pid: int) -> tuple:
    """(user s, system s, minor page faults) of a running process, all its
    threads, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK, int(fields[7])


# --- one step -------------------------------------------------------------------

def server_command(nx, ny, dtype, fps, duration, n_frames) -> list:
    return ["pvapy-ad-sim-server", "-cn", CHANNEL, "-nx", str(nx), "-ny", str(ny),
            "-dt", dtype, "-nf", str(n_frames), "-cs", str(n_frames), "-fps", f"{fps:g}",
            "-rt", f"{duration:g}", "-std", f"{START_DELAY:g}", "-shd", "0", "-dc",
            "-rp", "1000000000"]


def consumer_command(kind: str, runtime: float, server_queue: int) -> list:
    common = ["-ic", CHANNEL, "-rt", f"{runtime:g}", "-dc"]
    if server_queue > 0:
        common += ["-sqs", str(server_queue)]
    if kind == "pvapy":
        return ["pvapy-hpc-consumer", *common]
    return ["pvagpu-consumer", *common]


def _last_int(pattern: str, text: str):
    found = re.findall(pattern, text)
    return int(found[-1]) if found else None


def consumer_counts(kind: str, out: str) -> dict:
    """processed / missed / overruns from a consumer's final output."""
    if kind == "pvapy":   # the final statistics dict
        return {"received": _last_int(r"'nReceived': (\d+)", out),
                "processed": _last_int(r"'nProcessed': (\d+)", out),
                "missed": _last_int(r"'nMissed': (\d+)", out),
                "overruns": _last_int(r"'nOverruns': (\d+)", out)}
    return {"received": _last_int(r"received (\d+)", out),       # the summary line
            "processed": _last_int(r"processed (\d+)", out),
            "missed": _last_int(r"missed (\d+)", out),
            "overruns": _last_int(r"overruns (\d+)", out)}


def run_step(kind: str, size: str, fps: float, duration: float, server_queue: int,
             n_frames: int) -> dict:
    nx, ny, dtype, _ = SIZES[size]
    env = process_env()
    server = subprocess.Popen(server_command(nx, ny, dtype, fps, duration, n_frames), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    consumer = None
    t0 = time.monotonic()
    try:
        time.sleep(0.3)  # the server's channel exists first (no search back-off)
        consumer = subprocess.Popen(
            consumer_command(kind, START_DELAY + duration + DRAIN + 3.0, server_queue),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(max(0.0, START_DELAY - 0.25 - (time.monotonic() - t0)))
        usage0 = cpu_usage(consumer.pid)
        server_out, _ = server.communicate(timeout=START_DELAY + duration + 120)
        time.sleep(DRAIN)
        usage1 = cpu_usage(consumer.pid) if consumer.poll() is None else None
        out, _ = consumer.communicate(timeout=60)
    finally:
        for proc in (consumer, server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.communicate(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
    published = _last_int(r"Published frames:\s*(\d+)", server_out)
    found = re.findall(r"Published frames:\s*\d+ @ ([0-9.]+) fps", server_out)
    published_fps = float(found[-1]) if found else 0.0
    counts = consumer_counts(kind, out)
    processed = counts["processed"] or 0
    if usage1 is not None:
        user, system, faults = (b - a for a, b in zip(usage0, usage1))
        cpu = user + system
    else:
        user = system = faults = cpu = None
    reasons = []
    if published is None or counts["processed"] is None:
        reasons.append("no result")
    else:
        if published_fps < SERVER_REACHED * fps:
            reasons.append(f"server reached only {published_fps:.0f} fps")
        if counts["missed"]:
            reasons.append(f"missed {counts['missed']}")
        if counts["overruns"]:
            reasons.append(f"overruns {counts['overruns']}")
        if processed != published:
            reasons.append(f"processed {processed} of {published}")
    return {"consumer": kind, "size": size, "fps": fps, "published": published,
            "published_fps": published_fps, **counts, "cpu_s": cpu,
            "cpu_us_per_frame": cpu / processed * 1e6 if cpu is not None and processed else None,
            "user_s": user, "system_s": system,
            "minor_faults_per_frame": faults / processed if faults is not None and processed
            else None,
            "passed": not reasons, "why": "; ".join(reasons),
            "output_tail": None if not reasons else out[-1500:]}


# --- the search -------------------------------------------------------------------

def search(kind: str, size: str, start: float, bisect: int):
    """A generator: yields the next rate to try, receives whether it passed;
    returns (via StopIteration) the highest passed rate."""
    good, bad, fps = 0.0, None, float(start)
    while bad is None:
        if (yield fps):
            good, fps = fps, fps * 2
        else:
            bad = fps
    for _ in range(bisect):
        fps = round((good + bad) / 2, 1)
        if (yield fps):
            good = fps
        else:
            bad = fps
    return good


def measure_size(size: str, args) -> dict:
    searches = {k: search(k, size, args.start or SIZES[size][3], args.bisect)
                for k in args.consumers}
    pending = {k: next(s) for k, s in searches.items()}
    steps = {k: [] for k in args.consumers}
    best = {}
    while pending:
        for kind in list(pending):
            fps = pending[kind]
            r = run_step(kind, size, fps, args.duration, args.server_queue, args.n_frames)
            steps[kind].append(r)
            cpu = f"{r['cpu_us_per_frame']:6.0f}" if r["cpu_us_per_frame"] else "     ?"
            print(f"  {size:>4} {kind:6s} @ {fps:7.1f} fps: processed {r['processed']} of "
                  f"{r['published']} (server {r['published_fps']:.0f} fps), missed {r['missed']},"
                  f" CPU {cpu} us/frame -> {'pass' if r['passed'] else 'FAIL: ' + r['why']}",
                  flush=True)
            try:
                pending[kind] = searches[kind].send(r["passed"])
            except StopIteration as stop:
                best[kind] = stop.value
                del pending[kind]
    nx, ny, dtype, _ = SIZES[size]
    row = {"size": size, "nx": nx, "ny": ny, "dtype": dtype}
    for kind in args.consumers:
        at_max = [s for s in steps[kind] if s["passed"] and s["fps"] == best[kind]]
        row[kind] = {"max_fps": best[kind],
                     "cpu_us_per_frame": at_max[0]["cpu_us_per_frame"] if at_max else None,
                     "steps": steps[kind]}
    if set(CONSUMERS) <= set(args.consumers):
        row["ratio"] = row["pvagpu"]["max_fps"] / row["pvapy"]["max_fps"] \
            if row["pvapy"]["max_fps"] else None
        # CPU per frame of both at the highest rate that both passed
        common = sorted({s["fps"] for s in steps["pvapy"] if s["passed"]}
                        & {s["fps"] for s in steps["pvagpu"] if s["passed"]})
        if common:
            row["common_fps"] = common[-1]
            for kind in CONSUMERS:
                row[kind]["cpu_us_per_frame_common"] = next(
                    s["cpu_us_per_frame"] for s in steps[kind] if s["passed"]
                    and s["fps"] == common[-1])
    return row


def _fmt(x, spec):
    return format(x, spec) if isinstance(x, (int, float)) else "-"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="512,1024,2048",
                        help=f"frame sizes, from {', '.join(SIZES)} (default all)")
    parser.add_argument("--consumers", default=",".join(CONSUMERS),
                        help="consumers to measure (default pvapy,pvagpu)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds of frames per step (default 20, 5 with --quick)")
    parser.add_argument("--bisect", type=int, default=None,
                        help="bisection steps after the first failure (default 3, 2 with --quick)")
    parser.add_argument("--start", type=float, default=None,
                        help="first rate of each search (default per size)")
    parser.add_argument("--quick", action="store_true", help="5 s steps, 2 bisections")
    parser.add_argument("--server-queue", type=int, default=100,
                        help="-sqs given to both consumers (default 100)")
    parser.add_argument("--n-frames", type=int, default=20,
                        help="distinct frames the sim server cycles through (default 20)")
    parser.add_argument("--output", default=str(RESULTS), help="JSON result file")
    parser.add_argument("--numpy-backend", action="store_true",
                        help="only measure GpuAdImageProcessor on the NumPy backend against the "
                             "plain AdImageProcessor path, in process (writes "
                             "results/numpy_backend.json)")
    parser.add_argument("--step", nargs=3, metavar=("CONSUMER", "SIZE", "FPS"),
                        help="run one step and print its result (for profiling)")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 5.0 if args.quick else 20.0
    if args.bisect is None:
        args.bisect = 2 if args.quick else 3
    args.consumers = [c.strip() for c in args.consumers.split(",") if c.strip()]

    if args.numpy_backend:
        machine = _machine.describe()
        print(_machine.line(machine), flush=True)
        sizes = [x.strip() for x in args.sizes.split(",") if x.strip()]
        rows = numpy_backend_overhead(sizes, ["", "bslz4"], n_frames=20 if args.quick else 50,
                                      repeat=3 if args.quick else 7)
        out = RESULTS.with_name("numpy_backend.json")
        out.write_text(json.dumps({"benchmark": "numpy_backend",
                                   "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                   "machine": machine, "rows": rows}, indent=2) + "\n")
        print(_machine.line(machine))
        print(f"wrote {out}")
        return 0

    if args.step:
        kind, size, fps = args.step
        r = run_step(kind, size, float(fps), args.duration, args.server_queue, args.n_frames)
        print(json.dumps(r, indent=1))
        return 0 if r["passed"] else 1

    machine = _machine.describe()
    print(_machine.line(machine), flush=True)
    t0 = time.monotonic()
    rows = [measure_size(size.strip(), args) for size in args.sizes.split(",") if size.strip()]
    elapsed = time.monotonic() - t0

    print()
    print(f"highest rate with no frame lost over {args.duration:g} s "
          f"(pvapy-ad-sim-server, -sqs {args.server_queue}, no processor)")
    print(f"{'frame':>18} {'pvapy fps':>10} {'pvagpu fps':>11} {'ratio':>6}"
          f" {'pvapy us/f':>11} {'pvagpu us/f':>12}   at common fps")
    for row in rows:
        label = f"{row['nx']}x{row['ny']} {row['dtype']}"
        pa, pg = row.get("pvapy", {}), row.get("pvagpu", {})
        print(f"{label:>18} {_fmt(pa.get('max_fps'), '10.0f')} {_fmt(pg.get('max_fps'), '11.0f')}"
              f" {_fmt(row.get('ratio'), '6.2f')}"
              f" {_fmt(pa.get('cpu_us_per_frame_common'), '11.0f')}"
              f" {_fmt(pg.get('cpu_us_per_frame_common'), '12.0f')}"
              f"   {_fmt(row.get('common_fps'), '.0f')}")
    print(_machine.line(machine))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "throughput", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "duration_s": args.duration, "bisect": args.bisect, "server_queue": args.server_queue,
        "n_frames": args.n_frames, "elapsed_s": elapsed, "machine": machine,
        "rows": rows}, indent=2) + "\n")
    print(f"wrote {out} ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
