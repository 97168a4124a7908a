"""The consumer's processor inside a worker process.

:class:`ConsumerWorker` is the UserMpDataProcessor that a
:class:`~pvagpu.hpc.UserMpWorker` runs for a consumer with workers. It is
built in the receiving process from a :class:`WorkerSpec` (plain data: the
processor's file, class and configDict, never the processor itself) and,
in the worker process, it

* loads the processor class from that spec (pvagpu.runtime.loading) and
  starts an instance of its own, then says ``ready`` (with the processor's
  statistics types) or why it could not;
* runs every frame through a :class:`~pvagpu.runtime.frames.FrameRunner`
  (frames arrive still compressed, tagged ``(seq, uniqueId, skipped)``, and
  are decoded here) and answers each with ``done`` and its outcome;
* sends what the processor publishes (``updateOutputChannel``) back to the
  receiving process, which posts it on the consumer's output channel.

Messages go back through one :class:`~pvagpu.mp.ShmQueue` per worker, in
order, as ``Tagged((kind, ...), obj)``: Values through shared memory, the
rest pickled (they are small). Commands (configure, get_stats, reset_stats,
stop) come through the UserMpWorker's command queues and run between two
frames.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

from p4p import Type, Value

from ... import codecs
from ...hpc import UserDataProcessor, UserMpDataProcessor
from ...pva.receiver import SKIPPED
from ...stats import PublisherCounters
from ..frames import FrameRunner
from ..loading import load_processor_class, make_processor
from ..statistics import processor_stats, processor_stats_types, reset_processor_stats

READY, OPEN, OUTPUT, DONE = "ready", "open", "output", "done"
#: outcomes of a frame, as ``done`` gives them (None: processed)
FRAME_ERROR, CODEC_ERROR, OTHER_ERROR = "frame", "codec", "error"
#: seconds a worker waits for room to send a result before counting it lost
RESULT_TIMEOUT = 30.0

log = logging.getLogger(__name__)


@dataclass
class WorkerSpec:
    """What a worker needs to build the consumer's processor (picklable)."""
    worker_id: int
    consumer_id: int
    processor_file: Optional[str]
    processor_class: str
    config: dict = field(default_factory=dict)
    input_channel: Optional[str] = None
    output_channel: Optional[str] = None
    oid_field: str = "uniqueId"
    log_level: int = logging.WARNING


class ResultPublisher:
    """The processor's ``dataPublisher`` in a worker: what it publishes goes
    back to the receiving process (the interface FrameRunner uses of
    :class:`~pvagpu.pva.publisher.Publisher`)."""

    def __init__(self, results, channel: str):
        self.results = results
        self.channel = channel
        self.counters = PublisherCounters()   # n_errors: results that could not be sent
        self.is_open = False

    def open(self, first) -> None:
        if isinstance(first, Type):
            first = Value(first, {})
        self.is_open = True
        self._send(OPEN, first)

    def updateOutputChannel(self, value) -> None:
        self._send(OUTPUT, value)

    def _send(self, kind: str, value) -> None:
        try:
            self.results.put(value, True, RESULT_TIMEOUT, tag=(kind,))
        except Exception as exc:   # a full ring for RESULT_TIMEOUT s, or an unsendable object
            self.counters.n_errors += 1
            log.warning("cannot send a %s to the receiving process: %s: %s", kind,
                        type(exc).__name__, exc)


class ConsumerWorker(UserMpDataProcessor):
    """Runs the consumer's processor in a worker process (see the module docstring)."""

    def __init__(self, spec: WorkerSpec, results):
        super().__init__(spec.worker_id)
        self.spec = spec
        self.results = results
        self.processor = None
        self.runner = None
        self.publisher = None

    # -- in the worker process -------------------------------------------------

    def start(self):
        spec = self.spec
        self.results.become_writer()
        logging.basicConfig(level=spec.log_level, format=(
            f"%(asctime)s %(levelname)s %(name)s [worker {spec.worker_id}]: %(message)s"))
        try:
            cls = load_processor_class(spec.processor_file, spec.processor_class)
            processor = make_processor(cls or UserDataProcessor, spec.config)
            processor.processorId = spec.consumer_id
            processor.objectIdField = spec.oid_field
            processor.inputChannel = spec.input_channel
            processor.outputChannel = spec.output_channel
            processor.metadataQueueMap = {}
            if spec.output_channel:
                self.publisher = ResultPublisher(self.results, spec.output_channel)
                processor.dataPublisher = self.publisher
            codecs.warm_up()   # decoding happens here
            processor.start()
            types = processor_stats_types(processor) or {}
        except Exception as exc:
            self._send(READY, {"pid": os.getpid(), "error": f"{type(exc).__name__}: {exc}"})
            return
        self.processor = processor
        self.runner = FrameRunner(processor, self.publisher, spec.consumer_id)
        self._send(READY, {"pid": os.getpid(), "types": dict(types)})

    def process(self, mpqObject):
        seq, oid, skipped = mpqObject.tag
        if self.runner is None:   # the processor did not start: the parent stops us
            if not skipped:
                self._send(DONE, None, seq, OTHER_ERROR)
            return
        c = self.runner.counters
        before = (c.n_errors, c.n_frame_errors, c.n_codec_errors)
        self.runner.run(SKIPPED if skipped else oid, mpqObject.obj)
        if skipped:
            return
        if c.n_errors == before[0]:
            outcome = None
        elif c.n_frame_errors != before[1]:
            outcome = FRAME_ERROR
        elif c.n_codec_errors != before[2]:
            outcome = CODEC_ERROR
        else:
            outcome = OTHER_ERROR
        self._send(DONE, None, seq, outcome)

    def configure(self, configDict):
        if self.runner is not None:
            with self.runner.lock:   # between two frames
                self.processor.configure(configDict)

    def resetStats(self):
        if self.runner is not None:
            with self.runner.lock:
                self.runner.counters.reset()
                if self.publisher is not None:
                    self.publisher.counters.reset()
                reset_processor_stats(self.processor)

    def getStats(self):
        if self.runner is None:
            return {}
        with self.runner.lock:
            user = processor_stats(self.processor) or {}
        stats = {"user": dict(user)}
        if self.publisher is not None:
            stats["nResultErrors"] = self.publisher.counters.counts()["n_errors"]
        return stats

    def stop(self):
        if self.runner is not None:
            with self.runner.lock:
                self.processor.stop()   # a GPU processor publishes its last results here

    def _send(self, kind: str, obj, *tag) -> None:
        try:
            self.results.put(obj, True, RESULT_TIMEOUT, tag=(kind,) + tag)
        except Exception as exc:
            log.error("worker %s: cannot send %s to the receiving process: %s: %s",
                      self.spec.worker_id, kind, type(exc).__name__, exc)
