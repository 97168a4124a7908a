"""The consumer's processor inside a worker process.

:class:`ConsumerWorker` is the UserMpDataProcessor that a
:class:`~pvagpu.hpc.UserMpWorker` runs for a consumer with workers. It is
built in the receiving process from a :class:`WorkerSpec` (plain data: the
processor's file, class and configDict, never the processor itself) and,
in the worker process, it

* loads the processor class from that spec (pvagpu.runtime.loading) and
  starts an instance of its own, then says ``ready`` (with the processor's
  statistics types) or why it could not;
* subscribes to the consumer's metadata channels (-mc) before it says
  ``ready``, and gives their queues to its processor as
  ``metadataQueueMap`` (see :mod:`.metadata`); closes them when it stops;
* runs every frame through a :class:`~pvagpu.runtime.frames.FrameRunner`
  (frames arrive still compressed, tagged ``(seq, uniqueId, skipped)``, and
  are decoded here) and answers each with ``done`` and its outcome; with
  -ao N, in batches of up to N (:mod:`.batch`; a :data:`FLUSH_TAG` marker
  on the input queue runs the partial batch);
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
from ...errors import CodecError, FrameError
from ...hpc import UserDataProcessor, UserMpDataProcessor
from ...pva.receiver import SKIPPED
from ...stats import PublisherCounters
from ..frames import FrameRunner
from ..loading import load_processor_class, make_processor
from ..statistics import processor_stats, processor_stats_types, reset_processor_stats
from .batch import FrameBatcher

READY, OPEN, OUTPUT, DONE = "ready", "open", "output", "done"
#: the tag of the marker that asks a worker to run its partial batch now
FLUSH_TAG = ("flush",)
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
    #: the consumer's metadata channels and queue sizes, under ConsumerConfig's
    #: names (MetadataChannels.for_consumer reads them)
    metadata_channels: Optional[list] = None
    receiver_queue_size: int = 0
    server_queue_size: int = 0
    #: -ao / -at: frames per processBatch call (<= 1: one at a time), and the
    #: seconds after a batch's first frame when a partial batch runs
    accumulate_objects: int = 0
    accumulation_timeout: float = 1.0


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
        self.metadata = None
        self.batcher = None

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
            processor.metadataQueueMap = self._subscribe()
            if spec.output_channel:
                self.publisher = ResultPublisher(self.results, spec.output_channel)
                processor.dataPublisher = self.publisher
            codecs.warm_up()   # decoding happens here
            processor.start()
            types = processor_stats_types(processor) or {}
        except Exception as exc:
            self._unsubscribe()
            self._send(READY, {"pid": os.getpid(), "error": f"{type(exc).__name__}: {exc}"})
            return
        self.processor = processor
        self.runner = FrameRunner(processor, self.publisher, spec.consumer_id)
        #: a decryptor's frames are answered with the id it authenticated
        self.authenticated = bool(getattr(type(processor), "AUTHENTICATED_OBJECT_IDS", False))
        if (spec.accumulate_objects or 0) > 1:
            self.batcher = FrameBatcher(spec.accumulate_objects, spec.accumulation_timeout,
                                        self._run_batch)
        self._send(READY, {"pid": os.getpid(), "types": dict(types)})

    def _subscribe(self) -> dict:
        """Subscribe to the consumer's metadata channels; the processor's
        ``metadataQueueMap`` (empty without any)."""
        if not self.spec.metadata_channels:
            return {}
        from ...pva.metadata import MetadataChannels
        self.metadata = MetadataChannels.for_consumer(self.spec).start()
        return self.metadata.queue_map

    def _unsubscribe(self) -> None:
        metadata, self.metadata = self.metadata, None
        if metadata is not None:
            metadata.stop()

    def process(self, mpqObject):
        if mpqObject.tag == FLUSH_TAG:
            if self.batcher is not None:
                self.batcher.flush()
            return
        seq, oid, skipped = mpqObject.tag
        if self.runner is None:   # the processor did not start: the parent stops us
            if not skipped:
                self._send(DONE, None, seq, OTHER_ERROR)
            return
        if self.batcher is not None:
            self.runner.offer_output(mpqObject.obj)   # the output record, from the first frame
            if not skipped:
                self.batcher.add((seq, oid, mpqObject.obj))
            return
        self._run_one(seq, oid, mpqObject.obj, skipped)

    def _run_one(self, seq, oid, value, skipped=False) -> None:
        """Run one frame and answer it (with the id the processor
        authenticated, for a decryptor)."""
        exc = self.runner.run(SKIPPED if skipped else oid, value)
        if skipped:
            return
        outcome = outcome_of(exc)
        if self.authenticated:
            self._send(DONE, None, seq, outcome,
                       None if outcome else getattr(self.processor, "lastAuthenticatedId", None))
        else:
            self._send(DONE, None, seq, outcome)

    def _run_batch(self, batch: list) -> None:
        """Run ``[(seq, oid, value), ...]`` and answer each frame (a
        decryptor's one by one, as without workers, so that each answer
        carries the id it authenticated)."""
        if self.authenticated:
            for seq, oid, value in batch:
                self._run_one(seq, oid, value)
            return
        failed = self.runner.run_batch([(oid, value) for _, oid, value in batch])
        for seq, oid, _ in batch:
            self._send(DONE, None, seq, outcome_of(failed.get(oid)))

    def configure(self, configDict):
        if self.runner is not None:
            if self.metadata is not None and "receiverQueueSize" in configDict:
                # the consumer's rule (runtime.housekeeping): it sizes the metadata queues
                self.metadata.set_queue_size(int(configDict["receiverQueueSize"]))
            with self.runner.lock:   # between two frames
                self.processor.configure(configDict)

    def resetStats(self):
        if self.runner is not None:
            with self.runner.lock:
                self.runner.counters.reset()
                if self.publisher is not None:
                    self.publisher.counters.reset()
                if self.metadata is not None:
                    self.metadata.reset_stats()
                reset_processor_stats(self.processor)

    def getStats(self):
        if self.runner is None:
            return {}
        with self.runner.lock:
            user = processor_stats(self.processor) or {}
        stats = {"user": dict(user)}
        if self.publisher is not None:
            stats["nResultErrors"] = self.publisher.counters.counts()["n_errors"]
        if self.metadata is not None:
            stats["metadata"] = self.metadata.stats()
        return stats

    def stop(self):
        if self.batcher is not None:
            self.batcher.close()   # the partial batch runs, its frames are answered
        if self.runner is not None:
            with self.runner.lock:
                self.processor.stop()   # a GPU processor publishes its last results here
        self._unsubscribe()

    def _send(self, kind: str, obj, *tag) -> None:
        try:
            self.results.put(obj, True, RESULT_TIMEOUT, tag=(kind,) + tag)
        except Exception as exc:
            log.error("worker %s: cannot send %s to the receiving process: %s: %s",
                      self.spec.worker_id, kind, type(exc).__name__, exc)


def outcome_of(exc) -> Optional[str]:
    """A frame's outcome as ``done`` gives it, from the exception its
    processing raised (None: processed); the kinds the consumer's
    counters tell apart (pvagpu.stats.ProcessorCounters.count_error)."""
    if exc is None:
        return None
    if isinstance(exc, FrameError):
        return FRAME_ERROR
    if isinstance(exc, CodecError):
        return CODEC_ERROR
    return OTHER_ERROR
