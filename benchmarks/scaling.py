"""Scaling out to worker processes (issue 14).

(a) hand-off: the per-frame cost of handing a frame to a worker process,
    pvagpu's shared-memory ring (``pvagpu.mp.ShmQueue`` into
    ``pvagpu.hpc.UserMpWorkerController``) against pvapy's pickled
    ``multiprocessing.Queue`` into pvapy's own ``UserMpWorkerController``,
    with one memcpy of the frame as the floor. Frames are 512x512 and
    2048x2048 uint16, handed as a NumPy array and as an NTNDArray (a p4p
    Value for pvagpu, a pvapy NtNdArray PvObject for pvapy, each the
    object that framework receives). The cost is end to end: from the first
    put of a batch until the worker has taken the batch's last frame off
    the queue (the worker's processor only counts), divided by the batch;
    the best of ``--rounds`` batches after one warm-up batch (their median
    is in the JSON too; other work on the machine only ever adds time).
    Both run in the same run, with the ``fork`` start method (pvapy's only
    working one).
    The memcpy floor is a batch of copies of the frame into 8 buffers in
    turn (the ring has 8 slots), timed just before each pvagpu batch.

(b) workers: frames/s of a consumer with 1 and 2 worker processes
    (``--n-workers``) on a CPU-heavy processor (:class:`HeavyProcessor`:
    decode, then full sorts of the frame as float64, about 60 ms per frame
    here) at 1024x1024 uint16. NTNDArray Values are offered to the
    consumer's delivery as the receiver would (no PVA: the PVA receive
    costs the same with any number of workers, and a sim server would take
    a core of its own), as fast as the workers' rings take them; frames/s =
    frames answered / time, after a warm-up. The same processor in-process
    (no workers) is the baseline. The load average before and after each
    run is recorded: on a shared machine other work takes cores.

Prints the machine line and a table with the ratios, and writes
benchmarks/results/scaling.json (a part run alone keeps the other's results).

    python benchmarks/scaling.py            # (a) 512 and 2048, and (b)
    python benchmarks/scaling.py --quick    # smaller batches, fewer frames
    python benchmarks/scaling.py --parts b  # (b) only
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np  # noqa: E402

import _machine  # noqa: E402
from pvagpu import ntnda  # noqa: E402
from pvagpu.hpc import UserMpDataProcessor, UserMpWorkerController  # noqa: E402
from pvagpu.mp import ShmQueue  # noqa: E402

RESULTS = HERE / "results" / "scaling.json"
CTX = mp.get_context("fork")
#: size -> frames per batch (full run, --quick)
SIZES = {512: (200, 50), 2048: (20, 8)}
KINDS = ("ndarray", "NTNDArray")
SLOTS = 8   # shared-memory slots of pvagpu's ring
GOALS = {"vs_pvapy_at_2048": 20.0, "vs_memcpy": 3.0}


# --- the workers: processors that only count, and say when a batch is in -----

class _Counter:
    def __init__(self, done, batch):
        self.done, self.batch, self.n = done, batch, 0

    def count(self):
        self.n += 1
        if self.n % self.batch == 0:
            self.done.put(self.n)


class PvagpuCounter(UserMpDataProcessor):
    def __init__(self, done, batch):
        super().__init__()
        self.counter = _Counter(done, batch)

    def process(self, mpqObject):
        self.counter.count()


def _pvapy_counter(done, batch):
    from pvapy.hpc.userMpDataProcessor import UserMpDataProcessor as PvapyProcessor

    class PvapyCounter(PvapyProcessor):
        def __init__(self):
            super().__init__()
            self.counter = _Counter(done, batch)

        def process(self, mpqObject):
            self.counter.count()

    return PvapyCounter()


# --- frames ------------------------------------------------------------------------

def make_frame(size: int, kind: str, framework: str):
    image = np.random.default_rng(size).integers(0, 4096, (size, size), dtype=np.uint16)
    if kind == "ndarray":
        return image
    if framework == "pvagpu":
        return ntnda.value_from_image(image, 1)
    from pvapy.utility.adImageUtility import AdImageUtility
    return AdImageUtility.generateNtNdArray2D(1, image)


# --- measurements ------------------------------------------------------------------

class MemcpyFloor:
    """One copy of the frame per put, into ``SLOTS`` buffers in turn as into
    the ring's slots (so at 512x512 the destination is not in cache either)."""

    def __init__(self, image: np.ndarray):
        self.image = image
        self.destinations = [np.ones_like(image) for _ in range(SLOTS)]

    def batch_ms(self, batch: int) -> float:
        t0 = time.perf_counter()
        for i in range(batch):
            np.copyto(self.destinations[i % SLOTS], self.image)
        return 1e3 * (time.perf_counter() - t0) / batch


def _summary(times: list) -> dict:
    return {"ms": min(times), "ms_median": statistics.median(times), "ms_rounds": times}


def _batches(put, done, frame, batch: int, rounds: int, floor=None):
    """ms per frame of each batch after a warm-up batch, and (with ``floor``)
    of a memcpy batch run just before each, so both see the same machine."""
    per_frame, floors = [], []
    for i in range(rounds + 1):
        copy_ms = floor.batch_ms(batch) if floor is not None else None
        t0 = time.perf_counter()
        for _ in range(batch):
            put(frame)
        done.get(timeout=600)
        if i:
            per_frame.append(1e3 * (time.perf_counter() - t0) / batch)
            floors.append(copy_ms)
    return per_frame, floors


def handoff_pvagpu(frame, floor: MemcpyFloor, batch: int, rounds: int) -> tuple:
    """(pvagpu's hand-off, the memcpy floor measured alongside)."""
    done = CTX.Queue()
    frames = ShmQueue(slots=SLOTS, start_method="fork")
    controller = UserMpWorkerController("bench", PvagpuCounter(done, batch), frames)
    controller.start()
    try:
        times, floors = _batches(frames.put, done, frame, batch, rounds, floor)
        ring = frames.ring_stats()
    finally:
        controller.stop()
        frames.close()
    return (dict(_summary(times), ring_waits=ring["nRingWaits"], ring_full=ring["nRingFull"]),
            _summary(floors))


def handoff_pvapy(frame, batch: int, rounds: int) -> dict:
    """pvapy's UserMpWorkerController with a pickled multiprocessing.Queue;
    if it cannot run, a bare pickled Queue into a process (what it does)."""
    done = CTX.Queue()
    frames = CTX.Queue()
    try:
        from pvapy.hpc.userMpWorkerController import UserMpWorkerController as PvapyController
        controller = PvapyController("bench", _pvapy_counter(done, batch), frames)
        controller.start()
        how = "pvapy UserMpWorkerController"
    except Exception as exc:  # pvapy missing or broken: measure the same hand-off bare
        controller, how = None, f"bare multiprocessing.Queue ({type(exc).__name__}: {exc})"
        worker = CTX.Process(target=_bare_worker, args=(frames, done, batch), daemon=True)
        worker.start()
    try:
        times, _ = _batches(frames.put, done, frame, batch, rounds)
    finally:
        if controller is not None:
            controller.stop()
        else:
            frames.put(None)
            worker.join(10)
    return dict(_summary(times), how=how)


def _bare_worker(frames, done, batch):
    counter = _Counter(done, batch)
    while frames.get() is not None:
        counter.count()


# --- (b) workers ---------------------------------------------------------------------

from pvagpu.hpc import AdImageProcessor  # noqa: E402

WORKER_SIZE = 1024
WORKER_GOAL = 1.8


class HeavyProcessor(AdImageProcessor):
    """CPU-bound work on every frame: decode, then ``repeats`` full sorts of
    the image as float64 (one core; NumPy's sort is single-threaded)."""

    def __init__(self, configDict=None):
        super().__init__(configDict)
        self.repeats = int((configDict or {}).get("repeats", 2))

    def process(self, pvObject):
        _uid, image, *_ = self.reshapeNtNdArray(pvObject)
        for _ in range(self.repeats):
            np.sort(image.astype(np.float64), axis=None)


def _answered(consumer) -> int:
    c = consumer.counters
    return c.n_processed + c.n_errors


def _offer_all(consumer, first: int, count: int, in_flight: int) -> None:
    """Offer frames ``first..first+count-1`` (keeping at most ``in_flight``
    unanswered; a refused frame is offered again) and wait for every answer."""
    offer = consumer.delivery.offer
    value = _offer_all.value
    target = _answered(consumer) + count
    oid = first
    while oid < first + count:
        if oid - first - (_answered(consumer) - (target - count)) >= in_flight:
            time.sleep(0.002)       # polls cost CPU the workers need: not too often
            continue
        value["uniqueId"] = oid
        if offer(oid, value) is False:
            time.sleep(0.0005)
            continue
        oid += 1
    while _answered(consumer) < target:
        time.sleep(0.002)


def workers_rate(n_workers: int, frames: int, warmup: int, rounds: int) -> dict:
    """frames/s of a consumer with ``n_workers`` workers (0: in-process): the
    best of ``rounds`` runs of ``frames`` frames, from the first offer to the
    last answer, after ``warmup`` frames."""
    from pvagpu.consumer import Consumer
    from pvagpu.memory import tune_malloc
    from pvagpu.runtime.config import ConsumerConfig
    tune_malloc()   # as pvagpu-consumer and its workers do
    image = np.random.default_rng(1).integers(0, 4096, (WORKER_SIZE, WORKER_SIZE),
                                              dtype=np.uint16)
    _offer_all.value = ntnda.value_from_image(image, 1)
    config = ConsumerConfig("bench:none", processor_file=str(Path(__file__).resolve()),
                            processor_class="HeavyProcessor", n_workers=n_workers,
                            status_period=0)
    in_flight = 2 * n_workers + 1 if n_workers else 1
    load_before = os.getloadavg()
    times = []
    with Consumer(config) as consumer:
        _offer_all(consumer, 1, warmup, in_flight)
        for r in range(rounds):
            t0 = time.perf_counter()
            _offer_all(consumer, warmup + 1 + r * frames, frames, in_flight)
            times.append(time.perf_counter() - t0)
        errors = consumer.counters.n_errors
        per_worker = [h.counters.n_processed for h in consumer.workers.handles] \
            if consumer.workers else []
    best = min(times)
    return {"workers": n_workers, "frames": frames, "seconds": best, "fps": frames / best,
            "fps_rounds": [frames / t for t in times], "errors": errors,
            "per_worker": per_worker, "load_before": load_before, "load_after": os.getloadavg()}


def run_workers(quick: bool) -> dict:
    frames, warmup, rounds = (12, 2, 2) if quick else (80, 4, 3)
    rows = []
    for n in (0, 1, 2):
        row = workers_rate(n, frames, warmup, rounds)
        rows.append(row)
        label = "in-process" if n == 0 else f"{n} worker{'s' if n > 1 else ''}"
        print(f"{label:>12} {row['fps']:9.2f} frames/s  ({row['frames']} frames, load "
              f"{row['load_before'][0]:.2f} -> {row['load_after'][0]:.2f})", flush=True)
    speedup = rows[2]["fps"] / rows[1]["fps"]
    print(f"2 workers / 1 worker: {speedup:.2f}x (goal >= {WORKER_GOAL}x where 2 cores are free; "
          f"this machine: {os.cpu_count()} cores, shared)")
    return {"size": f"{WORKER_SIZE}x{WORKER_SIZE}", "dtype": "uint16",
            "processor": "HeavyProcessor (decode + 2 float64 sorts)", "rows": rows,
            "two_over_one": speedup, "goal": f">= {WORKER_GOAL}x with 2 workers where 2 cores "
                                              f"are free"}


# --- the run -----------------------------------------------------------------------

def run_handoff(quick: bool, rounds: int) -> list:
    rows = []
    for size, (batch, quick_batch) in SIZES.items():
        batch = quick_batch if quick else batch
        floor = MemcpyFloor(make_frame(size, "ndarray", "pvagpu"))
        for kind in KINDS:
            ours, copy = handoff_pvagpu(make_frame(size, kind, "pvagpu"), floor, batch, rounds)
            theirs = handoff_pvapy(make_frame(size, kind, "pvapy"), batch, rounds)
            row = {"size": f"{size}x{size}", "dtype": "uint16", "kind": kind, "batch": batch,
                   "memcpy": copy, "pvagpu": ours, "pvapy": theirs,
                   "pvapy_over_pvagpu": theirs["ms"] / ours["ms"],
                   "pvagpu_over_memcpy": ours["ms"] / copy["ms"]}
            rows.append(row)
            print(f"{row['size']:>9} {kind:>9} {copy['ms']:9.3f} {ours['ms']:10.3f} "
                  f"{theirs['ms']:10.3f} {row['pvapy_over_pvagpu']:9.1f}x "
                  f"{row['pvagpu_over_memcpy']:9.2f}x", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches, fewer frames")
    parser.add_argument("--rounds", type=int, default=5, help="timed batches per case in (a)")
    parser.add_argument("--parts", default="ab", help="which parts to run: a, b or ab")
    args = parser.parse_args(argv)

    import p4p
    try:
        from pvapy import __version__ as pvapy_version
    except ImportError:
        pvapy_version = "not installed"
    info = _machine.describe(p4p=str(getattr(p4p, "version", "?")), pvapy=pvapy_version)
    print(_machine.line(info))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.update({"benchmark": "scaling", "machine": info})
    if "a" in args.parts:
        print("(a) hand-off of one frame to a worker process, ms per frame (end to end)")
        print(f"{'frame':>9} {'kind':>9} {'memcpy':>9} {'pvagpu shm':>10} {'pvapy':>10} "
              f"{'pvapy/us':>10} {'us/memcpy':>10}")
        rows = run_handoff(args.quick, args.rounds)
        at_2048 = [r for r in rows if r["size"] == "2048x2048"]
        goals = {
            "pvapy_over_pvagpu_at_2048": {r["kind"]: round(r["pvapy_over_pvagpu"], 1)
                                          for r in at_2048},
            "pvagpu_over_memcpy_at_2048": {r["kind"]: round(r["pvagpu_over_memcpy"], 2)
                                           for r in at_2048},
            "goal": f">= {GOALS['vs_pvapy_at_2048']:.0f}x cheaper than pvapy at 2048x2048, "
                    f"within {GOALS['vs_memcpy']:.0f}x of one memcpy",
        }
        print(f"summary at 2048x2048: pvapy/pvagpu {goals['pvapy_over_pvagpu_at_2048']}, "
              f"pvagpu/memcpy {goals['pvagpu_over_memcpy_at_2048']} (goal: {goals['goal']})")
        results.update(handoff=rows, handoff_goals=goals)
    if "b" in args.parts:
        print(f"(b) frames/s of a consumer with workers, CPU-heavy processor, "
              f"{WORKER_SIZE}x{WORKER_SIZE} uint16")
        results["workers"] = run_workers(args.quick)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
