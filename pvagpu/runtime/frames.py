"""The frame runner: runs the processor on frames and counts what happened.

Every delivery strategy (pvagpu.runtime.delivery) hands its frames to one
:class:`FrameRunner`, so processed frames, errors (frame errors, codec
errors, the frames a :class:`~pvagpu.errors.BatchFramesError` names) and
the first/last object ids and times are counted here and nowhere else.
(Missed frames are counted on receipt, by the receiver's IdTracker, or
here for authenticated object ids, see below.)

A frame whose processing raises (bad dimensions, an unknown codec, a
corrupt payload, a processor bug) is counted as an error with a
rate-limited log line, and the next frame is processed.

Each frame (or batch) is processed holding :attr:`FrameRunner.lock`;
commands that touch the processor or the counters (configure,
reset_stats) hold it too, so they never race with ``process()``. The
per-frame path takes that one uncontended lock and does no logging, no
dict building and no copy: counters are attribute increments.

The output channel: when the processor's output type does not depend on
the input (``getOutputPvObjectType(None)`` gives a type: GPU processors,
the encryptors, a processor that declares its output structure), the
record is served from the start (:meth:`FrameRunner.open_output_at_start`),
so a downstream consumer started before the first frame finds it and gets
the first frames. Otherwise (the call raises or gives None: the default,
which republishes the input's structure, and the decryptors, whose output
is the original object) it is created from the first object received, a
skipped one included (pvapy's ``getOutputPvObjectType``): serving a guessed
type and re-opening the record when the first object differs would be a
disconnect for its clients.

Authenticated object ids: with :meth:`FrameRunner.account_ids`, after each
successful ``process()`` the processor's ``lastAuthenticatedId`` goes to the
receiver's missed-frame accounting (pvagpu.pva.frame_intake), and batches
are processed frame by frame (so each frame's id is accounted).
"""
from __future__ import annotations

import logging
import threading
import time

from ..errors import BatchFramesError
from ..hpc import UserDataProcessor
from ..pva.frame_intake import SKIPPED
from ..stats import ErrorLog, ProcessorCounters

log = logging.getLogger(__name__)


def batch_method(processor):
    """The processor's own ``processBatch``, or None when it has none of its
    own (then the frames of a batch go to ``process`` one by one)."""
    method = getattr(type(processor), "processBatch", None)
    if method is None or method is getattr(UserDataProcessor, "processBatch", None):
        return None
    return getattr(processor, "processBatch")


class FrameRunner:
    """Runs ``processor`` on frames, counting into :attr:`counters`.

    ``publisher``: the output channel (None without one), opened from the
    first object. ``consumer_id`` names the consumer in log lines."""

    def __init__(self, processor, publisher=None, consumer_id: int = 1):
        self.processor = processor
        self.publisher = publisher
        self.consumer_id = consumer_id
        self.counters = ProcessorCounters()
        #: held while a frame, a batch or a command is processed
        self.lock = threading.Lock()
        self._output_pending = publisher is not None
        self._process_batch = batch_method(processor)
        self._errors = ErrorLog(log)
        self._ids = None            # the intake that accounts authenticated ids

    def account_ids(self, intake) -> None:
        """Account the processor's ``lastAuthenticatedId`` after each
        successful ``process()`` with ``intake.account(oid)`` (a
        :class:`~pvagpu.pva.frame_intake.FrameIntake` whose ``track_ids``
        is off); batches are then processed frame by frame."""
        self._ids = intake
        self._process_batch = None

    # -- one frame ----------------------------------------------------------

    def run(self, oid, value):
        """Process one frame (the hot path: on the PVA thread, or the
        processing thread with queued delivery); the exception its
        processing raised (counted already), or None."""
        with self.lock:
            if self._output_pending:
                self._open_output(value)
            if oid is SKIPPED:
                return None
            self.received(oid, oid)
            return self._process(oid, value)

    # -- a batch -------------------------------------------------------------

    def offer_output(self, value) -> None:
        """Open the output channel from ``value`` if it is not open yet
        (batched delivery, for each object as it arrives)."""
        if self._output_pending:
            with self.lock:
                if self._output_pending:
                    self._open_output(value)

    def run_batch(self, batch: list) -> dict:
        """Process ``[(oid, value), ...]`` (no skipped ones): with the
        processor's ``processBatch`` if it has one, else frame by frame.
        Returns ``{oid: exception}`` of the frames that failed (empty: all
        processed), for a caller that answers frame by frame (a worker)."""
        failed = {}
        with self.lock:
            self.received(batch[0][0], batch[-1][0])
            if self._process_batch is None:
                for oid, value in batch:
                    exc = self._process(oid, value)
                    if exc is not None:
                        failed[oid] = exc
                return failed
            c = self.counters
            try:
                self._process_batch([value for _, value in batch])
                c.n_processed += len(batch)
            except BatchFramesError as exc:   # some frames failed, the rest done
                c.n_processed += exc.n_processed
                for oid, err in exc.failures:
                    self.failed(oid, err)
                    failed[oid] = err
            except Exception as exc:
                for oid, _ in batch:
                    c.count_error(exc)
                    failed[oid] = exc
                self._errors(type(exc).__name__, "consumer %s: batch of %d frames (%s..%s) "
                             "not processed: %s: %s", self.consumer_id, len(batch), batch[0][0],
                             batch[-1][0], type(exc).__name__, exc)
        return failed

    # -- counting -------------------------------------------------------------

    def received(self, first_oid, last_oid) -> None:
        """Count frames first_oid..last_oid as received for processing (the
        first/last object ids and times)."""
        c = self.counters
        t = time.time()
        if c.first_object_time == 0.0:
            c.first_object_time, c.first_object_id = t, first_oid
        c.last_object_time, c.last_object_id = t, last_oid

    def _process(self, oid, value):
        """Process one frame; the exception it raised, or None."""
        try:
            self.processor.process(value)
        except Exception as exc:
            self.failed(oid, exc)
            return exc
        self.succeeded()
        if self._ids is not None:
            self._ids.account(self.processor.lastAuthenticatedId)
        return None

    def succeeded(self) -> None:
        """Count one frame processed."""
        self.counters.n_processed += 1

    def failed(self, oid, exc: Exception) -> None:
        """Count one frame whose processing raised ``exc``, and log it (rate-limited)."""
        self.counters.count_error(exc)
        self._errors(type(exc).__name__, "consumer %s: frame %s not processed: %s: %s",
                     self.consumer_id, oid, type(exc).__name__, exc)

    def open_output_at_start(self) -> bool:
        """Serve the output record now if the processor's output type does
        not need the input (``getOutputPvObjectType(None)`` gives one);
        True when it did. Else it is opened from the first object."""
        with self.lock:
            if not self._output_pending or self.publisher.is_open:
                return False
            try:
                out = self.processor.getOutputPvObjectType(None)
            except Exception:   # noqa: BLE001 - it needs the input: from the first object
                return False
            if out is None:
                return False
            try:
                self.publisher.open(out)
            except Exception as exc:   # counted; tried again with the first object
                self._output_failed(exc)
                return False
            self._output_pending = False
            return True

    def _output_failed(self, exc: Exception) -> None:
        self.publisher.counters.n_errors += 1
        self._errors("output", "consumer %s: cannot create output channel %s: %s: %s",
                     self.consumer_id, self.publisher.channel, type(exc).__name__, exc)

    def _open_output(self, first) -> None:
        """Create the output record from the first input (pvapy's
        getOutputPvObjectType); a failure is counted, the stream goes on."""
        self._output_pending = False
        pub = self.publisher
        if pub.is_open:
            return
        try:
            out = self.processor.getOutputPvObjectType(first)
            if out is not None:
                pub.open(out)
        except Exception as exc:
            self._output_failed(exc)
