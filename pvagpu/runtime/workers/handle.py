"""One worker process of a consumer, seen from the receiving process.

A :class:`WorkerHandle` owns, for each incarnation of its worker, a
:class:`~pvagpu.hpc.UserMpWorkerController` (the process and its command
queues), the input :class:`~pvagpu.mp.ShmQueue` (frames, still compressed,
through shared memory) and the results ShmQueue (outputs, outcomes), and
one collector thread for its whole life, which

* takes the worker's results in order: ``ready``, outputs (posted on the
  consumer's output channel), and ``done`` for each frame (counted);
* notices when the process died (polled while no result comes), reports
  it, counts the frames it had in flight as lost, by uniqueId (they are
  processor errors: received, never processed), and starts a new one, with
  fresh queues (a killed process may hold a queue's lock), after a delay
  that doubles while it keeps dying soon after starting.

The frames in flight are those dispatched and not yet answered; the
handle's :attr:`in_flight` (``seq -> uniqueId``) is guarded by the pool's
lock.
"""
from __future__ import annotations

import collections
import logging
import queue
import threading
import time

from ...errors import PvagpuError
from ...hpc import UserMpWorkerController
from ...mp import RingFullError, ShmQueue
from .child import (CODEC_ERROR, DONE, FLUSH_TAG, FRAME_ERROR, OPEN, OUTPUT, READY,
                    ConsumerWorker, WorkerSpec)
from .metadata import worker_sections
from .stats import LOST_IDS_SHOWN, WorkerCounters

log = logging.getLogger(__name__)

START_METHOD = "spawn"      # safe with p4p's threads and with CUDA
_POLL = 0.2                 # seconds between liveness checks while no result comes
_QUICK_DEATH = 10.0         # a worker that dies sooner after its start is restarted later
_MAX_RESTART_DELAY = 10.0


class WorkerDiedError(PvagpuError):
    """A frame was in flight in a worker process that died: it is lost."""


class WorkerShutdownError(PvagpuError):
    """A frame was still in flight when the consumer stopped its workers."""


class WorkerHandle:
    """Worker ``worker_id`` of ``pool`` (see the module docstring)."""

    def __init__(self, pool, spec: WorkerSpec, gpu, slots: int):
        self.pool = pool
        self.spec = spec
        self.worker_id = spec.worker_id
        self.gpu = gpu
        self.slots = slots
        self.counters = WorkerCounters()
        self.in_flight = {}
        self.lost_ids = collections.deque(maxlen=LOST_IDS_SHOWN)
        self.n_restarts = 0
        self.state = "stopped"
        self.pid = 0
        self.types = None
        self.error = None
        self.last_stats = {}
        self.ready = threading.Event()
        self.controller = self.inputs = self.results = None
        self._started_at = 0.0
        self._restart_delay = 0.5
        self._thread = None
        self._life = threading.Lock()   # ending a process and closing its queues
        self._last_ring = {}

    # -- life cycle (parent) ----------------------------------------------------------

    def launch(self) -> None:
        """Start a worker process with fresh queues (and the collector, once)."""
        self.inputs = ShmQueue(slots=self.slots, start_method=START_METHOD)
        self.results = ShmQueue(slots=self.slots, start_method=START_METHOD,
                                writer_elsewhere=True)
        self.controller = UserMpWorkerController(
            self.worker_id, ConsumerWorker(self.spec, self.results), self.inputs, gpu=self.gpu)
        self.ready.clear()
        self.error = None
        self.state = "starting"
        self._started_at = time.monotonic()
        self.controller.start()
        self.pid = self.controller.uwProcess.pid or 0
        if self._thread is None:
            self._thread = threading.Thread(target=self._collect, daemon=True,
                                            name=f"pvagpu-worker-{self.worker_id}")
            self._thread.start()

    @property
    def accepting(self) -> bool:
        return self.state in ("starting", "running")

    def hand_over(self, seq: int, oid, value, skipped: bool) -> bool:
        """Put a frame on this worker's input queue, without waiting (PVA
        thread); False when the worker cannot take it now (ring full, or
        the worker is being restarted or stopped)."""
        if not self._life.acquire(False):
            return False
        try:
            if not self.accepting:
                return False
            if not skipped:
                with self.pool.lock:
                    self.in_flight[seq] = oid
            try:
                self.inputs.put(value, False, tag=(seq, oid, skipped))
            except Exception as exc:   # RingFullError: every slot is in use
                if not isinstance(exc, RingFullError):
                    log.warning("worker %s: frame %s not handed over: %s: %s", self.worker_id,
                                oid, type(exc).__name__, exc)
                if not skipped:
                    with self.pool.lock:
                        self.in_flight.pop(seq, None)
                return False
            if not skipped:
                self.counters.n_dispatched += 1
            return True
        finally:
            self._life.release()

    def flush(self) -> None:
        """Ask the worker to run its partial batch (-ao): a marker after the
        frames on its queue (pickled, no slot)."""
        if self.spec.accumulate_objects <= 1:
            return
        with self._life:
            if not self.accepting:
                return
            try:
                self.inputs.put(None, False, tag=FLUSH_TAG)
            except Exception as exc:
                log.warning("worker %s: cannot ask for its partial batch: %s: %s",
                            self.worker_id, type(exc).__name__, exc)

    def stop(self, timeout: float) -> None:
        """Stop the worker (its processor's stop() runs and its last results
        are posted) and the collector; frames still in flight are lost."""
        with self._life:
            controller = self.controller
            if controller is not None and self.state in ("starting", "running"):
                self.state = "stopping"
                controller.WAIT_TIME = max(controller.WAIT_TIME, float(timeout))
                controller.stop()
            self.state = "stopping"
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.state = "stopped"

    # -- the collector thread ----------------------------------------------------------

    def _collect(self) -> None:
        while True:
            results = self.results
            try:
                item = results.get(True, _POLL)
            except queue.Empty:
                if self.controller.uwProcess.is_alive():
                    continue
                if not self._ended():
                    return
                continue
            except (EOFError, OSError, ValueError) as exc:   # the queue broke with the process
                log.debug("worker %s: results queue: %s", self.worker_id, exc)
                if not self._ended():
                    return
                continue
            self._handle(item.tag, item.obj)

    def _handle(self, tag, obj) -> None:
        kind = tag[0]
        if kind == DONE:
            self.pool.frame_done(self, tag[1], tag[2], tag[3] if len(tag) > 3 else None)
        elif kind == OUTPUT:
            self.pool.publish(obj)
        elif kind == OPEN:
            self.pool.open_output(obj)
        elif kind == READY:
            self._on_ready(obj)

    def _on_ready(self, info: dict) -> None:
        self.pid = int(info.get("pid") or self.pid)
        if info.get("error"):
            self.error = info["error"]
            log.error("consumer %s: worker %s (pid %s) could not start its processor: %s",
                      self.spec.consumer_id, self.worker_id, self.pid, self.error)
            self.state = "failed"
            self.controller.stop()
        else:
            self.types = info.get("types") or {}
            self.state = "running"
            if self.n_restarts:
                self.pool.replay_configuration(self)
        self.ready.set()

    def _drain(self) -> None:
        """Take the results a process left behind (it has ended)."""
        while True:
            try:
                item = self.results.get(False)
            except Exception:   # empty, or a queue that broke with the process
                return
            self._handle(item.tag, item.obj)

    def _ended(self) -> bool:
        """The process is gone: account for it; True when a new one was
        started (the collector goes on), False when the collector ends."""
        self._drain()
        process = self.controller.uwProcess
        with self._life:
            stopping = self.state in ("stopping", "failed") or self.pool.stopping
            if not stopping:
                self.state = "restarting"
            lost = self.pool.frames_lost(self, WorkerShutdownError if stopping else WorkerDiedError)
            self.controller.stop()   # joins the process, frees its input slots
            self.inputs.close()
            self.results.close()
        if stopping:
            if lost:
                log.warning("consumer %s: worker %s stopped with %d frames unprocessed "
                            "(uniqueIds %s), counted as errors", self.spec.consumer_id,
                            self.worker_id, len(lost), _ids_text(lost))
        else:
            log.error("consumer %s: worker %s (pid %s) died (%s); %d frames in flight lost "
                      "(uniqueIds %s); restarting it", self.spec.consumer_id, self.worker_id,
                      process.pid, _exit_text(process.exitcode), len(lost), _ids_text(lost))
        if stopping:
            self.ready.set()
            return False
        self.pid = 0
        self._wait_before_restart()
        if self.pool.stopping:
            self.state = "stopped"
            return False
        self.n_restarts += 1
        self.launch()
        return True

    def _wait_before_restart(self) -> None:
        if time.monotonic() - self._started_at < _QUICK_DEATH:
            self.pool.stop_event.wait(self._restart_delay)
            self._restart_delay = min(2 * self._restart_delay, _MAX_RESTART_DELAY)
        else:
            self._restart_delay = 0.5

    # -- statistics ------------------------------------------------------------------

    def refresh_stats(self) -> dict:
        """The worker's statistics (get_stats command), or the last ones."""
        if self.state == "running":
            self.last_stats = self.controller.getStats()
        return self.last_stats

    def section(self, receiving: float) -> dict:
        """This worker's ``worker<N>Stats`` (see :mod:`.stats`)."""
        c = self.counters.counts()
        ring = self._ring_stats()

        def rate(n):
            return n / receiving if receiving > 0 and n > 0 else 0.0

        return {
            "workerId": self.worker_id, "pid": self.pid,
            "gpu": "none" if self.gpu is None else str(self.gpu), "state": self.state,
            "nDispatched": c["n_dispatched"], "nProcessed": c["n_processed"],
            "processedRate": rate(c["n_processed"]), "nErrors": c["n_errors"],
            "errorRate": rate(c["n_errors"]), "nLost": c["n_lost"],
            "nInFlight": len(self.in_flight), "nRestarts": self.n_restarts,
            "lostIds": _ids_text(self.lost_ids), "ringSlots": ring.get("ringSlots", 0),
            "ringSlotsInUse": ring.get("ringSlotsInUse", 0), "nRingFull": ring.get("nRingFull", 0),
            "user": dict(self.last_stats.get("user", {})),
            **worker_sections(self.last_stats.get("metadata")),
        }

    def _ring_stats(self) -> dict:
        """The input ring's statistics (the last ones while it is being replaced)."""
        if self._life.acquire(False):
            try:
                if self.accepting:
                    self._last_ring = self.inputs.ring_stats()
            finally:
                self._life.release()
        return self._last_ring

    def reset_stats(self) -> None:
        self.counters.reset()
        self.lost_ids.clear()
        if self.state == "running":
            self.controller.resetStats()


def outcome_error(outcome: str, worker_id: int):
    """The exception a failed frame is counted as, by the worker's outcome."""
    from ...errors import CodecError, FrameError
    message = f"frame failed in worker {worker_id}"
    if outcome == FRAME_ERROR:
        return FrameError(message)
    if outcome == CODEC_ERROR:
        return CodecError(message)
    return RuntimeError(message)


def _ids_text(ids) -> str:
    return " ".join("?" if i is None else str(i) for i in ids)


def _exit_text(code) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        import signal
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
