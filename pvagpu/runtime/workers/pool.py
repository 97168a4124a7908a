"""WorkerPool: a consumer's worker processes, standing in for its processor.

With workers, the receiving process does only PVA receive and the hand-off:
each frame, still compressed as received, goes to the least-loaded worker
(fewest frames in flight; ties in turn) through that worker's shared-memory
ring, without blocking the PVA thread: when every ring is full the frame
is refused and the receiver counts an overrun. Each worker (one process,
see :mod:`.handle`) runs its own instance of the consumer's processor,
loaded from the -pf/-pc/-pa spec.

The pool has the processor's interface where the runtime calls it, so
statistics and the control channel's commands need nothing of their own:

* ``start``/``stop``: start every worker and wait until each processor
  started (a processor that cannot start is a ConfigurationError naming the
  worker); stop them, after their last results were posted;
* ``configure`` / ``resetStats`` reach every worker (``configure`` is
  replayed to a worker that is restarted); ``getStats`` asks every worker
  and gives the total (:func:`.stats.total_user_stats`), and
  :meth:`sections` each worker's ``worker<N>Stats``;
* ``getStatsPvaTypes``: the types the workers' processor reported;
* :attr:`metadata`: with -mc, each worker subscribes to the metadata
  channels itself; this stands in for the consumer's MetadataChannels
  (:mod:`.metadata`).

With -ao N each worker runs its frames in batches of up to N (:mod:`.batch`).
A frame's shared-memory slot is released when the worker takes the frame
off its queue (p4p copies a Value's arrays out of the slot), so frames
waiting for their batch to fill hold worker memory, not slots: the rings
keep their size, and up to N - 1 more frames per worker may be in flight
(:attr:`WorkerPool.capacity`). :meth:`WorkerPool.drain` has the workers run
their partial batches before it waits for the frames in flight.

Counting goes to the consumer's :class:`~pvagpu.runtime.frames.FrameRunner`
counters, as for frames processed in-process: first/last object at
dispatch, processed or an error (of the worker's kind) when the worker
answers, and each frame lost with a worker that died as an error. For a
decryptor, missed frames are counted from the ids the workers authenticated,
in arrival order (:mod:`.authenticated`).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path

from ...errors import ConfigurationError
from ...hpc.user_mp_worker_controller import UserMpWorkerController
from ...mp.protocol import CONFIGURE_COMMAND
from ...mp.ring import DEFAULT_SLOTS
from ...pva.metadata import MetadataChannels
from ...pva.receiver import SKIPPED
from ...stats import ErrorLog
from .authenticated import DispatchOrder
from .child import WorkerSpec
from .handle import WorkerHandle, outcome_error
from .metadata import WorkerMetadata, section_fields
from .stats import WORKER_STATS_TYPES, section_name, total_user_stats

log = logging.getLogger(__name__)

#: seconds the pool waits for the workers' processors to start
START_TIMEOUT = 120.0

_UNKNOWN = object()


class WorkerPool:
    """The workers of one consumer; see the module docstring.

    ``config``: the ConsumerConfig; ``plan``: its
    :class:`~.plan.WorkerPlan`; ``runner``: the consumer's FrameRunner (its
    counters); ``publisher``: the output channel (None without one)."""

    def __init__(self, config, plan, runner=None, publisher=None):
        self.config = config
        self.plan = plan
        self.runner = runner
        self.publisher = publisher
        self.stopping = False
        self.stop_event = threading.Event()
        self.lock = threading.Lock()        # in-flight frames and the counters
        self._publish_lock = threading.Lock()
        self._seq = 0
        self._turn = 0
        self._order = None          # a DispatchOrder (account_ids), for a decryptor
        self._configured = {}
        self._errors = ErrorLog(log)
        rqs = config.receiver_queue_size or 0
        slots = max(2, math.ceil(rqs / plan.n_workers)) if rqs > 0 else DEFAULT_SLOTS
        #: the metadata channels (-mc), checked here, subscribed to by each worker
        self.metadata = (WorkerMetadata(self, MetadataChannels.for_consumer(config))
                         if config.metadata_channels else None)
        metadata_specs = self.metadata.specs if self.metadata is not None else None
        batch = config.accumulate_objects if (config.accumulate_objects or 0) > 1 else 1
        processor_file = (str(Path(config.processor_file).resolve())
                          if config.processor_file else None)
        level = logging.getLogger().getEffectiveLevel()
        self.handles = []
        for k in range(plan.n_workers):
            gpu = plan.gpu_of(k)
            processor_config = config.processor_config()
            processor_config["workerId"] = k + 1
            if gpu is not None and processor_config.get("gpu") != "none":
                processor_config["gpu"] = "0"   # its one visible device
            spec = WorkerSpec(k + 1, config.consumer_id, processor_file, config.processor_class,
                              processor_config, config.input_name, config.output_name,
                              config.oid_field, level, metadata_channels=metadata_specs,
                              receiver_queue_size=config.receiver_queue_size or 0,
                              server_queue_size=config.server_queue_size or 0,
                              accumulate_objects=batch,
                              accumulation_timeout=config.accumulation_timeout)
            self.handles.append(WorkerHandle(self, spec, gpu, slots))

    @property
    def description(self) -> str:
        gpus = [h.gpu for h in self.handles if h.gpu is not None]
        on = f" on GPUs {','.join(map(str, gpus))}" if gpus else ""
        return f"{len(self.handles)} worker processes{on}"

    # -- the processor's interface -----------------------------------------------------

    def start(self):
        """Start every worker; ConfigurationError when a processor cannot start."""
        for handle in self.handles:
            handle.launch()
        deadline = time.monotonic() + START_TIMEOUT
        failed = []
        for handle in self.handles:
            if not handle.ready.wait(max(0.0, deadline - time.monotonic())):
                failed.append(f"worker {handle.worker_id}: its processor did not start within "
                              f"{START_TIMEOUT:g} s")
            elif handle.error:
                failed.append(f"worker {handle.worker_id}: {handle.error}")
        if failed:
            self.stop()
            raise ConfigurationError("; ".join(failed))
        log.info("consumer %s: %s started (pids %s)", self.config.consumer_id, self.description,
                 ", ".join(str(h.pid) for h in self.handles))

    def stop(self):
        """Stop the workers (their processors' stop() runs, last results posted)."""
        self.stopping = True
        self.stop_event.set()
        for handle in self.handles:
            handle.stop(self.config.drain_timeout)

    def configure(self, configDict):
        """Configure every worker's processor; the failures, by worker, raise."""
        self._configured.update(configDict or {})
        failures = []
        for handle in self.handles:
            if handle.state != "running":
                continue
            try:
                handle.controller._invokeCommandRequest(CONFIGURE_COMMAND,
                                                        {"configDict": dict(configDict)})
            except (RuntimeError, UserMpWorkerController.ProcessNotResponding) as exc:
                failures.append(f"worker {handle.worker_id}: {exc}")
        if failures:
            raise RuntimeError("; ".join(failures))

    def getStats(self) -> dict:
        return total_user_stats([h.refresh_stats().get("user", {}) for h in self.handles])

    def getStatsPvaTypes(self) -> dict:
        return next((h.types for h in self.handles if h.types is not None), {})

    def resetStats(self):
        with self.lock:
            for handle in self.handles:
                handle.reset_stats()

    def process(self, pvObject):
        raise RuntimeError("a consumer with workers processes frames in its worker processes")

    def account_ids(self, intake) -> None:
        """Account the ids the workers' processor authenticated (a
        decryptor's) with ``intake.account``, in the order the frames came
        (:mod:`.authenticated`); the consumer calls it instead of the
        FrameRunner's ``account_ids``."""
        self._order = DispatchOrder(intake)

    # -- frames out ----------------------------------------------------------------------

    def dispatch(self, oid, value) -> bool:
        """Hand a frame to the least-loaded worker (PVA thread); False when no
        worker had room for it (the receiver counts an overrun)."""
        skipped = oid is SKIPPED
        with self.lock:
            self._seq += 1
            seq = self._seq
            n = len(self.handles)
            self._turn = (self._turn + 1) % n
            order = sorted((h for h in self.handles if h.accepting),
                           key=lambda h: (len(h.in_flight), (h.worker_id - self._turn) % n))
            if not skipped:
                self.runner.received(oid, oid)
            elif self._order is not None:
                self._order.settle(seq)
        for handle in order:
            if handle.hand_over(seq, oid, value, skipped):
                return True
        if self._order is not None and not skipped:
            with self.lock:
                self._order.settle(seq)         # refused: no worker had room
        return skipped

    # -- results in (collector threads) ------------------------------------------------

    def frame_done(self, handle, seq: int, outcome, authenticated=None) -> None:
        with self.lock:
            oid = handle.in_flight.pop(seq, _UNKNOWN)
            if oid is _UNKNOWN:
                return   # not dispatched by this pool (cannot happen), or counted already
            if self._order is not None:
                self._order.settle(seq, authenticated if outcome is None else None)
            if outcome is None:
                self.runner.succeeded()
                handle.counters.n_processed += 1
            else:
                self.runner.failed(oid, outcome_error(outcome, handle.worker_id))
                handle.counters.n_errors += 1

    def frames_lost(self, handle, error_class) -> list:
        """Count the frames in flight in ``handle``'s ended process as errors;
        their uniqueIds."""
        with self.lock:
            lost = list(handle.in_flight.values())
            if self._order is not None:
                for seq in handle.in_flight:
                    self._order.settle(seq)
            handle.in_flight.clear()
            for oid in lost:
                self.runner.failed(oid, error_class(
                    f"frame {oid} lost with worker {handle.worker_id}"))
            handle.counters.n_lost += len(lost)
            handle.lost_ids.extend(lost)
        return lost

    def publish(self, value) -> None:
        if self.publisher is not None:
            with self._publish_lock:
                self.publisher.updateOutputChannel(value)

    def open_output(self, value) -> None:
        if self.publisher is not None and not self.publisher.is_open:
            with self._publish_lock:
                try:
                    self.publisher.open(value)
                except Exception as exc:
                    self.publisher.counters.n_errors += 1
                    self._errors("output", "consumer %s: cannot create output channel %s: %s: %s",
                                 self.config.consumer_id, self.publisher.channel,
                                 type(exc).__name__, exc)

    def replay_configuration(self, handle) -> None:
        """Give a restarted worker the configuration the others were given."""
        if self._configured:
            try:
                handle.controller._invokeCommandRequest(CONFIGURE_COMMAND,
                                                        {"configDict": dict(self._configured)})
            except Exception as exc:
                log.warning("consumer %s: worker %s: configuration not replayed: %s",
                            self.config.consumer_id, handle.worker_id, exc)

    # -- the delivery's view ------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return sum(len(h.in_flight) for h in self.handles)

    @property
    def capacity(self) -> int:
        """Frames that may be in flight: each worker's ring, and its batch
        but the frame that completes it."""
        return sum(h.slots + h.spec.accumulate_objects - 1 for h in self.handles)

    def drain(self, timeout: float) -> bool:
        """Have the workers run their partial batches, then wait up to
        ``timeout`` s until no frame is in flight."""
        deadline = time.monotonic() + max(0.0, timeout)
        for handle in self.handles:
            handle.flush()
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.in_flight

    # -- statistics ------------------------------------------------------------------------

    def sections(self) -> dict:
        """Each worker's ``worker<N>Stats`` (after :meth:`getStats` refreshed them)."""
        c = self.runner.counters
        receiving = max(0.0, c.last_object_time - c.first_object_time)
        return {section_name(h.worker_id): h.section(receiving) for h in self.handles}

    def status_sections(self, user_fields) -> list:
        """The status record's ``worker<N>Stats`` structures (p4p field specs)."""
        fields = list(WORKER_STATS_TYPES)
        if user_fields:
            fields.append(("user", ("S", None, list(user_fields))))
        if self.metadata is not None:
            fields += section_fields(len(self.metadata))
        return [(section_name(h.worker_id), fields) for h in self.handles]
