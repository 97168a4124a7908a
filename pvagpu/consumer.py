"""The consumer runtime: receive -> queue -> process -> publish.

One :class:`Consumer` runs one processor on one input channel:

1. :class:`~pvagpu.pva.receiver.Receiver` monitors the input channel. On
   the PVA client's thread it counts each update, accounts missed frames
   (uniqueId gaps) and hands the received ``Value`` (no copy) on.
2. :meth:`Consumer._on_frame` calls ``processor.process(value)``. By
   default it runs right there, on the PVA thread (as pvapy's -rqs -1):
   no hand-off between threads, the monitor queue (-sqs) holds the frames
   that arrive meanwhile. With ``receiver_queue_size`` > 0 (or
   ``accumulate_objects`` > 1) the frames go through a bounded queue to a
   processing thread instead (an overrun is counted when it is full), and
   ``processor.processBatch(values)`` gets batches. A frame whose
   processing raises (bad dimensions, an unknown codec, a corrupt payload,
   a processor bug) is counted as an error with a rate-limited log line,
   and the next frame is processed.
3. The processor publishes with ``updateOutputChannel(value)`` on the
   output channel that the consumer serves
   (:class:`~pvagpu.pva.publisher.Publisher`).
4. A housekeeping thread publishes the status channel (every
   ``status_period`` s, at each report and on ``get_stats``), updates the
   live report every ``report_period`` s and ends the run after ``runtime``.
   Control-channel commands that touch the processor or the counters
   (configure, reset_stats) run there too, holding the frame lock that
   each frame (or batch) is processed under, so they never race with
   ``process()``.

:meth:`Consumer.run` blocks until stopped (control ``stop``, runtime, or
:meth:`request_stop`, which is safe to call from a signal handler), then
stops cleanly: no more frames are received, the queued ones (queued
delivery) are processed for up to ``drain_timeout`` s, ``processor.stop()``
runs and the final statistics are published and returned.

The per-frame path takes one uncontended lock and does no logging, no dict
building and no copy: counters are attribute increments, rates are computed
when reported.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import queue
import re
import sys
import threading
import time
from pathlib import Path

from . import codecs
from .errors import BatchFramesError, ConfigurationError
from .hpc import UserDataProcessor
from .pva.control import (CONFIGURE, GET_STATS, RESET_STATS, STOP, SUCCESS, ControlChannel)
from .pva.publisher import LocalServer, Publisher
from .pva.receiver import DEFAULT_QUEUE_SIZE, SKIPPED, Receiver, distributor_options
from .pva.status import StatusChannel
from .report import Reporter
from .stats import ErrorLog, ProcessorCounters, build_stats

log = logging.getLogger(__name__)

#: pvapy's OperationMode numbers, given to processors in their configDict.
INPUT_MODE_PVA = 0
OUTPUT_MODE_PVAS = 1

_STOP = object()       # end of the frame queue / of the housekeeping thread


# ---------------------------------------------------------------------------
# Names, processor classes and their configuration
# ---------------------------------------------------------------------------

#: most consumers that --consumer-id-list may name (one process each)
MAX_CONSUMERS = 1024

#: largest consumer id (consumerId is a uint32 on the status channel)
MAX_CONSUMER_ID = 2**32 - 1


def format_id(consumer_id: int, id_format_spec: str | None = None) -> str:
    """The consumer id as it goes into channel names: formatted with
    ``id_format_spec`` (pvapy's -ifs, a Python format spec such as ``03d``:
    ``f'{id:{spec}}'`` as pvapy's SystemController.formatIdString), plain
    without one. A spec that cannot format the id raises
    :class:`ConfigurationError`."""
    if not id_format_spec:
        return str(consumer_id)
    try:
        text = format(int(consumer_id), id_format_spec)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ConfigurationError(
            f"id format spec {id_format_spec!r} cannot format consumer id {consumer_id}: {exc}; "
            f"give a format spec for integers, e.g. 03d") from None
    if not text.strip():
        raise ConfigurationError(f"id format spec {id_format_spec!r} formats consumer id "
                                 f"{consumer_id} as {text!r}")
    return text


def channel_name(spec: str | None, kind: str, consumer_id: int,
                 id_format_spec: str | None = None) -> str | None:
    """A channel name from a flag value, as pvapy forms it: ``_`` ->
    ``pvapy:consumer:<id>:<kind>``, ``*`` -> the consumer id; the id
    formatted with ``id_format_spec`` (:func:`format_id`)."""
    if not spec:
        return None
    cid = format_id(consumer_id, id_format_spec)
    if spec == "_":
        return f"pvapy:consumer:{cid}:{kind}"
    return spec.replace("*", cid)


_INT = r"\s*([+-]?[0-9]{1,18})\s*"
_RANGE = re.compile(rf"range\({_INT}(?:,{_INT}(?:,{_INT})?)?\)", re.ASCII)
_ID = re.compile(r"[0-9]{1,18}", re.ASCII)


def parse_id_list(spec) -> list:
    """``--consumer-id-list``: the consumer ids, in the order given.

    pvapy evaluates the text as Python (``[spec]``, or ``range(...)`` as
    is); this reads the same two forms and nothing else: a comma-separated
    list of ids, ``"1,3,7"`` (or ``"[1,3,7]"``), or ``"range(first,
    last+1[,step])"`` with integer arguments (``range(n)`` also works, as
    in Python). Ids must be >= 0 (the status channel's consumerId is
    uint32) and distinct (each consumer serves channels of its own).
    Anything else raises :class:`ConfigurationError`."""
    shown = repr(spec if isinstance(spec, (list, tuple, range)) else str(spec))
    if isinstance(spec, (list, tuple, range)):
        ids = [int(i) for i in spec]
    else:
        text = str(spec).strip()
        match = _RANGE.fullmatch(text)
        if match:
            args = [int(a) for a in match.groups() if a is not None]
            if len(args) == 3 and args[2] == 0:
                raise ConfigurationError(f"consumer id list {shown}: the range step is 0")
            ids = range(*args)
            if len(ids) > MAX_CONSUMERS:
                raise ConfigurationError(f"consumer id list {shown} names {len(ids)} consumers; "
                                         f"at most {MAX_CONSUMERS} are allowed")
            ids = list(ids)
        elif text.startswith("range"):
            raise ConfigurationError(
                f"consumer id list {shown}: expected range(first,last+1[,step]) with integer "
                f"arguments, e.g. range(1,5) for the ids 1, 2, 3, 4")
        else:
            body = text[1:-1] if text.startswith("[") and text.endswith("]") else text
            items = [item.strip() for item in body.split(",")]
            if not all(_ID.fullmatch(item) for item in items):
                raise ConfigurationError(
                    f"consumer id list {shown}: expected comma-separated ids (integers >= 0) "
                    f"such as 1,3,7, or range(first,last+1[,step]) such as range(1,5)")
            ids = [int(item) for item in items]
    if not ids:
        raise ConfigurationError(f"consumer id list {shown}: names no consumer")
    if len(ids) > MAX_CONSUMERS:
        raise ConfigurationError(f"consumer id list {shown} names {len(ids)} consumers; "
                                 f"at most {MAX_CONSUMERS} are allowed")
    out_of_range = [i for i in ids if not 0 <= i <= MAX_CONSUMER_ID]
    if out_of_range:
        raise ConfigurationError(f"consumer id list {shown}: ids must be 0..{MAX_CONSUMER_ID} "
                                 f"(uint32), got {out_of_range[0]}")
    seen = set()
    for i in ids:
        if i in seen:
            raise ConfigurationError(f"consumer id list {shown}: id {i} is given twice "
                                     f"(each consumer needs an id of its own)")
        seen.add(i)
    return ids


def load_processor_class(processor_file: str | None = None, processor_class: str | None = None):
    """The processor class named by ``--processor-file`` / ``--processor-class``.

    ``processor_file`` + a class name loads the class from that Python file;
    without a file, ``processor_class`` is ``package.module:Class`` or
    ``package.module.Class``. Neither gives None (frames pass through).
    Any failure raises :class:`ConfigurationError` saying what is wrong."""
    if not processor_class:
        if processor_file:
            raise ConfigurationError("--processor-file needs --processor-class to name the class")
        return None
    if processor_file:
        path = Path(processor_file)
        if not path.is_file():
            raise ConfigurationError(f"processor file {str(path)!r} does not exist")
        module_name = f"pvagpu_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ConfigurationError(f"processor file {str(path)!r} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise ConfigurationError(f"cannot load processor file {str(path)!r}: "
                                     f"{type(exc).__name__}: {exc}") from exc
        class_name, where = processor_class, f"processor file {str(path)!r}"
    else:
        if ":" in processor_class:
            module_path, _, class_name = processor_class.partition(":")
        else:
            module_path, _, class_name = processor_class.rpartition(".")
        if not module_path or not class_name:
            raise ConfigurationError(
                f"processor class {processor_class!r}: give module:Class or module.Class, "
                f"or a class name with --processor-file")
        try:
            module = importlib.import_module(module_path)
        except Exception as exc:
            raise ConfigurationError(
                f"cannot import module {module_path!r} for processor class "
                f"{processor_class!r}: {type(exc).__name__}: {exc}") from exc
        where = f"module {module_path!r}"
    cls = getattr(module, class_name, None)
    if cls is None or not isinstance(cls, type):
        classes = sorted(n for n, v in vars(module).items()
                         if isinstance(v, type) and not n.startswith("_"))
        raise ConfigurationError(f"{where} has no class {class_name!r}"
                                 + (f"; its classes: {', '.join(classes)}" if classes else ""))
    if not callable(getattr(cls, "process", None)):
        raise ConfigurationError(f"{class_name} in {where} has no process() method")
    return cls


def parse_processor_args(text) -> dict:
    """``--processor-args``: a JSON object (never evaluated as Python)."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return dict(text)
    try:
        args = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"processor args are not valid JSON ({exc}): {text!r}") from None
    if not isinstance(args, dict):
        raise ConfigurationError(
            f"processor args must be a JSON object, got {type(args).__name__}: {text!r}")
    return args


def make_processor(cls, config: dict):
    """An instance of ``cls`` built with ``config`` (pvapy's configDict)."""
    if cls is None:
        return None
    try:
        return cls(config)
    except Exception as exc:
        raise ConfigurationError(f"processor {cls.__name__}({config!r}) failed: "
                                 f"{type(exc).__name__}: {exc}") from exc


def distributor_oid_offset(oid_offset: int = 0, *, n_consumers: int = 1,
                           distributor_updates: int | None = None,
                           n_distributor_sets: int = 1) -> int:
    """The id step between two frames meant for one consumer (INTEROP 3.4).

    ``oid_offset`` > 0 is used as given. Else, with the distributor handing
    out ``distributor_updates`` (U) updates per turn, a consumer's turn comes
    back after the other consumers' turns: (n_consumers-1)*U+1 with one
    client set, (n_distributor_sets-1)*U+1 with several sets (one turn per
    set). Without the distributor every frame is this consumer's: 1.

    With U > 1 the id steps by 1 inside a turn and by the offset between
    turns (:func:`sequential_updates` gives U to the missed-frame count)."""
    if oid_offset and oid_offset > 0:
        return int(oid_offset)
    if not distributor_updates or distributor_updates < 1:
        return 1
    turns = n_distributor_sets if n_distributor_sets > 1 else n_consumers
    return (max(1, turns) - 1) * int(distributor_updates) + 1


def sequential_updates(distributor: dict | None) -> int:
    """pvapy's nSequentialUpdates: the distributor's updates per turn (U), else 1."""
    updates = (distributor or {}).get("updates")
    return int(updates) if updates is not None and int(updates) > 1 else 1


def _overrides_batch(processor) -> bool:
    method = getattr(type(processor), "processBatch", None)
    return method is not None and method is not getattr(UserDataProcessor, "processBatch", None)


# ---------------------------------------------------------------------------
# The consumer
# ---------------------------------------------------------------------------

class Consumer:
    """Runs ``processor`` on the frames of ``input_channel``.

    ``processor`` is an instance with pvapy's processor interface (None:
    frames pass through to the output channel, still counted). Channel
    arguments take ``_`` and ``*`` as pvapy's flags do. Use as a context
    manager (start / shutdown), or call :meth:`run`.

    ``distributor``: the server-side distributor's options (keys group,
    set, trigger, updates; INTEROP 3.8) for the plugin named
    ``distributor_plugin``; the consumer then gets its share of the frames.
    Give ``oid_offset`` to match (:func:`distributor_oid_offset`).

    ``id_format_spec``: Python format spec for the consumer id where it goes
    into channel names (pvapy's -ifs, :func:`format_id`). ``field_request``:
    the fields to ask the server for (pvapy's -fr, e.g. ``"value,uniqueId"``;
    the object id field is added; ignored with the distributor; see
    :func:`pvagpu.pva.receiver.parse_field_request`)."""

    def __init__(self, input_channel: str, processor=None, *, consumer_id: int = 1,
                 output_channel: str | None = None, status_channel: str | None = None,
                 control_channel: str | None = None, oid_field: str = "uniqueId",
                 oid_offset: int = 0, skip_initial_updates: int = 1,
                 server_queue_size: int = 0, receiver_queue_size: int = 0,
                 accumulate_objects: int = 0, accumulation_timeout: float = 1.0,
                 metadata_channels=None, runtime: float = 0.0, report_period: float = 0.0,
                 report_stats=None, disable_curses: bool = True, reporter=None,
                 status_period: float = 1.0, drain_timeout: float = 5.0,
                 distributor: dict | None = None, distributor_plugin: str = "pydistributor",
                 id_format_spec: str | None = None, field_request: str | None = None):
        self.consumer_id = int(consumer_id)
        self.id_format_spec = id_format_spec or None

        def name(spec, kind):
            return channel_name(spec, kind, self.consumer_id, self.id_format_spec)
        self.input_channel = name(input_channel, "input")
        self.output_channel = name(output_channel, "output")
        self.status_channel_name = name(status_channel, "status")
        self.control_channel_name = name(control_channel, "control")
        self.processor = processor if processor is not None else UserDataProcessor(
            {"processorId": self.consumer_id})
        self.runtime = float(runtime or 0)
        self.report_period = float(report_period or 0)
        self.status_period = float(status_period)
        self.drain_timeout = float(drain_timeout)
        self.accumulate_objects = int(accumulate_objects or 0)
        self.accumulation_timeout = float(accumulation_timeout)
        #: frames processed on the PVA thread (True) or through a queue
        self.direct = not (receiver_queue_size and receiver_queue_size > 0) \
            and self.accumulate_objects <= 1
        self.receiver = Receiver(self.input_channel, oid_field=oid_field,
                                 oid_offset=oid_offset if oid_offset and oid_offset > 0 else 1,
                                 skip_initial_updates=skip_initial_updates,
                                 server_queue_size=server_queue_size,
                                 queue_size=receiver_queue_size,
                                 deliver=self._on_frame if self.direct else None,
                                 distributor=distributor,
                                 distributor_plugin=distributor_plugin,
                                 field_request=field_request,
                                 sequential_updates=sequential_updates(distributor))
        self.counters = ProcessorCounters()
        self.metadata = None
        if metadata_channels:
            from .pva.metadata import MetadataChannels
            self.metadata = MetadataChannels(
                metadata_channels, queue_size=max(0, receiver_queue_size or 0),
                server_queue_size=server_queue_size)
        self.reporter = reporter
        if reporter is None and self.report_period > 0:
            self.reporter = Reporter(report_stats, disable_curses=disable_curses)
        self.server = LocalServer(f"pvagpu-consumer-{self.consumer_id}")
        self.publisher = (Publisher(self.server, self.output_channel)
                          if self.output_channel else None)
        self.status = None
        self.control = None
        self.final_stats = None
        self._errors = ErrorLog(log)
        self._stop_requested = False
        self._abort = False
        self._output_pending = self.publisher is not None  # opened on the first object
        self._frame_lock = threading.Lock()  # held while a frame or a command is processed
        self._commands = queue.SimpleQueue()  # commands for the housekeeping thread
        self._status_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._started = False
        self._shut_down = False
        self._processing = None
        self._housekeeping = None
        self._start_time = 0.0

    # -- life cycle ---------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def request_stop(self) -> None:
        """Ask the consumer to stop (thread- and signal-handler-safe)."""
        self._stop_requested = True

    def start(self) -> None:
        """Serve the channels, start the processor and begin receiving."""
        with self._state_lock:
            if self._started:
                return
            self._started = True
        try:
            self._start_channels_and_processor()
        except BaseException:
            # nothing runs yet: close what was opened, leave the consumer stopped
            if self.metadata is not None:
                self.metadata.stop()
            self.server.stop()
            with self._state_lock:
                self._shut_down = True
            raise
        self._start_time = time.time()
        self.counters.start_time = self._start_time
        if not self.direct:
            target = (self._process_batches if self.accumulate_objects > 1
                      else self._process_frames)
            self._processing = threading.Thread(target=target, name="pvagpu-process",
                                                daemon=True)
            self._processing.start()
        self._housekeeping = threading.Thread(target=self._housekeep, name="pvagpu-housekeeping",
                                              daemon=True)
        self._housekeeping.start()
        try:
            self.receiver.start()
        except BaseException:
            self.shutdown()  # threads, channels and the processor are running: stop them
            raise
        request = self.receiver.request
        if not isinstance(request, str):  # a distributor request Value: as pvapy writes it
            request = (f"field(_[{self.receiver.distributor_plugin}="
                       f"{distributor_options(self.receiver.distributor)}])")
        log.info("consumer %s: receiving %s (%s, request %r)", self.consumer_id,
                 self.input_channel, "processing on the PVA thread" if self.direct else
                 f"queue {self.receiver.max_queued}", request)

    def _start_channels_and_processor(self) -> None:
        p = self.processor
        p.processorId = self.consumer_id
        p.objectIdField = self.receiver.oid_field
        if self.metadata is not None:
            self.metadata.start()
            p.metadataQueueMap = self.metadata.queue_map
        p.pvaServer = self.server
        p.dataPublisher = self.publisher
        p.outputChannel = self.output_channel
        p.inputChannel = self.input_channel
        if self.status_channel_name:
            self.status = StatusChannel(
                self.server, self.status_channel_name, self.consumer_id, self.input_channel,
                user_types=self._call_processor("getStatsPvaTypes", {}),
                metadata_ids=range(1, len(self.metadata) + 1) if self.metadata else ())
        if self.control_channel_name:
            self.control = ControlChannel(self.server, self.control_channel_name,
                                          self.consumer_id, self._on_command)
        # one-time decoder costs (numba compilation of the bslz4 check) are paid
        # here, not by the first frames on the network thread
        codecs.warm_up()
        p.start()

    def run(self) -> dict:
        """Start, run until stopped, shut down; returns the final statistics."""
        self.start()  # raises (with nothing left running) if the start fails
        try:
            while not self._stop_requested:
                time.sleep(0.05)
        finally:
            stats = self.shutdown()
        return stats

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until a stop is requested; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop_requested:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def shutdown(self) -> dict:
        """Stop cleanly; returns the final statistics (idempotent)."""
        with self._state_lock:
            if self._shut_down or not self._started:
                return self.final_stats
            self._shut_down = True
        self._stop_requested = True
        self.receiver.stop()
        if self._processing is not None:
            self.receiver.queue.put(_STOP)
            self._processing.join(self.drain_timeout)
            if self._processing.is_alive():
                log.warning("consumer %s: still processing after %.1f s; %d queued frames "
                            "left unprocessed", self.consumer_id, self.drain_timeout,
                            self.receiver.queue_length)
                self._abort = True
                self._processing.join()
        with self._frame_lock:  # after the frame or command in progress, if any
            try:
                self.processor.stop()
            except Exception as exc:
                log.error("consumer %s: processor.stop() failed: %s: %s", self.consumer_id,
                          type(exc).__name__, exc)
        self.counters.end_time = time.time()
        if self.metadata is not None:
            self.metadata.stop()
        self._commands.put(_STOP)
        self._housekeeping.join()
        self.final_stats = self.stats()
        self._publish_status(self.final_stats)
        if self.reporter is not None:
            self.reporter.update(self.final_stats)
            close = getattr(self.reporter, "close", None)
            if close is not None:
                close()
        if self.publisher is not None:
            self.publisher.close()
        self.server.stop()
        return self.final_stats

    # -- statistics -----------------------------------------------------------

    def _call_processor(self, name: str, default):
        try:
            return getattr(self.processor, name)() or default
        except Exception as exc:
            self._errors(f"processor.{name}", "consumer %s: processor.%s() failed: %s: %s",
                         self.consumer_id, name, type(exc).__name__, exc)
            return default

    def stats(self) -> dict:
        """The statistics dictionary (pvapy's structure, see pvagpu.stats)."""
        c = self.counters
        receiving = max(0.0, c.last_object_time - c.first_object_time)
        return build_stats(
            consumer_id=self.consumer_id, input_channel=self.input_channel,
            receiver=self.receiver.counters, queue_length=self.receiver.queue_length,
            queue_max=0 if self.direct else self.receiver.max_queued, processor=c,
            publisher=self.publisher.counters if self.publisher is not None else None,
            connected=self.receiver.connected,
            user_stats=self._call_processor("getStats", {}),
            metadata_stats=self.metadata.stats(receiving or None) if self.metadata else None)

    def _publish_status(self, stats: dict | None = None) -> dict:
        stats = stats or self.stats()
        if self.status is not None:
            with self._status_lock:
                try:
                    self.status.publish(stats)
                except Exception as exc:
                    self._errors("status", "consumer %s: cannot publish status: %s: %s",
                                 self.consumer_id, type(exc).__name__, exc)
        return stats

    def _report(self) -> None:
        stats = self._publish_status()
        if self.reporter is not None:
            try:
                self.reporter.update(stats)
            except Exception as exc:
                self._errors("report", "consumer %s: report failed: %s", self.consumer_id, exc)

    # -- the processing thread ----------------------------------------------------

    def _open_output(self, first) -> None:
        """Create the output record from the first input (pvapy's
        getOutputPvObjectType); a failure is counted, the stream goes on."""
        pub = self.publisher
        if pub is None or pub.is_open:
            return
        try:
            out = self.processor.getOutputPvObjectType(first)
            if out is not None:
                pub.open(out)
        except Exception as exc:
            pub.counters.n_errors += 1
            self._errors("output", "consumer %s: cannot create output channel %s: %s: %s",
                         self.consumer_id, self.output_channel, type(exc).__name__, exc)

    def _frame_failed(self, oid, exc: Exception) -> None:
        self.counters.count_error(exc)
        self._errors(type(exc).__name__, "consumer %s: frame %s not processed: %s: %s",
                     self.consumer_id, oid, type(exc).__name__, exc)

    def _on_frame(self, oid, value) -> None:
        """One frame: the hot path (on the PVA thread, or the processing
        thread with queued delivery)."""
        with self._frame_lock:
            if self._output_pending:  # on the first object, as pvapy
                self._output_pending = False
                self._open_output(value)
            if oid is SKIPPED:
                return
            c = self.counters
            t = time.time()
            if c.first_object_time == 0.0:
                c.first_object_time, c.first_object_id = t, oid
            c.last_object_time, c.last_object_id = t, oid
            try:
                self.processor.process(value)
                c.n_processed += 1
            except Exception as exc:
                self._frame_failed(oid, exc)

    def _process_frames(self) -> None:
        """Queued delivery: one frame at a time from the receiver's queue."""
        get = self.receiver.queue.get
        on_frame = self._on_frame
        while not self._abort:
            try:
                item = get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _STOP:
                return
            on_frame(*item)

    def _process_batches(self) -> None:
        """Up to ``accumulate_objects`` frames at a time, or what arrived
        within ``accumulation_timeout`` s of the first one."""
        get = self.receiver.queue.get
        c = self.counters
        n_batch, timeout = self.accumulate_objects, self.accumulation_timeout
        batch_method = getattr(self.processor, "processBatch", None) \
            if _overrides_batch(self.processor) else None
        done = False
        while not done and not self._abort:
            try:
                item = get(timeout=0.1)
            except queue.Empty:
                continue
            batch = []
            deadline = time.monotonic() + timeout
            while True:
                if item is _STOP:
                    done = True
                    break
                oid, value = item
                if self._output_pending:
                    with self._frame_lock:
                        self._output_pending = False
                        self._open_output(value)
                if oid is not SKIPPED:
                    batch.append(item)
                    if len(batch) >= n_batch:
                        break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = get(timeout=remaining)
                except queue.Empty:
                    break
            if not batch:
                continue
            with self._frame_lock:
                t = time.time()
                if c.first_object_time == 0.0:
                    c.first_object_time, c.first_object_id = t, batch[0][0]
                c.last_object_time, c.last_object_id = t, batch[-1][0]
                if batch_method is not None:
                    try:
                        batch_method([value for _, value in batch])
                        c.n_processed += len(batch)
                    except BatchFramesError as exc:   # some frames failed, the rest done
                        c.n_processed += exc.n_processed
                        for oid, err in exc.failures:
                            self._frame_failed(oid, err)
                    except Exception as exc:
                        for _ in batch:
                            c.count_error(exc)
                        self._errors(type(exc).__name__, "consumer %s: batch of %d frames "
                                     "(%s..%s) not processed: %s: %s", self.consumer_id,
                                     len(batch), batch[0][0], batch[-1][0], type(exc).__name__,
                                     exc)
                else:
                    process = self.processor.process
                    for oid, value in batch:
                        try:
                            process(value)
                            c.n_processed += 1
                        except Exception as exc:
                            self._frame_failed(oid, exc)

    def _run_command(self, command: str, args: str) -> None:
        """configure / reset_stats, between two frames (housekeeping thread)."""
        with self._frame_lock:
            message = self._configure(args) if command == CONFIGURE else self._reset_stats()
        if self.control is not None:
            self.control.reply(message)

    def _configure(self, args: str) -> str:
        try:
            config = json.loads(args) if args and args.strip() else {}
        except ValueError as exc:
            return f"Configuration failed: args are not valid JSON ({exc})"
        if not isinstance(config, dict):
            return f"Configuration failed: args must be a JSON object, got {type(config).__name__}"
        try:
            if "receiverQueueSize" in config:  # only with a queue, as pvapy
                size = int(config["receiverQueueSize"])
                if not self.direct:
                    self.receiver.max_queued = size if size > 0 else DEFAULT_QUEUE_SIZE
                if self.metadata is not None:
                    self.metadata.set_queue_size(size)
            if "skipInitialUpdates" in config:
                self.receiver.skip = max(0, int(config["skipInitialUpdates"]))
            if "objectIdOffset" in config:
                self.receiver.ids.offset = max(1, int(config["objectIdOffset"]))
            if "nSequentialUpdates" in config:
                self.receiver.ids.sequential = max(1, int(config["nSequentialUpdates"]))
            self.processor.configure(config)
        except Exception as exc:
            log.warning("consumer %s: configuration %s failed: %s", self.consumer_id, args, exc)
            return f"Configuration failed: {exc}"
        return SUCCESS[CONFIGURE]

    def _reset_stats(self) -> str:
        self.receiver.reset_stats()
        self.counters.reset()
        if self.publisher is not None:
            self.publisher.reset_stats()
        if self.metadata is not None:
            self.metadata.reset_stats()
        try:
            self.processor.resetStats()
        except Exception as exc:
            log.warning("consumer %s: processor.resetStats() failed: %s", self.consumer_id, exc)
        return SUCCESS[RESET_STATS]

    # -- commands and timers ------------------------------------------------------

    def _on_command(self, command: str, args: str) -> None:
        """From the control channel (PVA server thread): hand the command on
        to the housekeeping thread."""
        if command in (CONFIGURE, RESET_STATS):
            if self._shut_down:
                self.control.reply(f"Command {command} failed: the consumer is stopping")
                return
        self._commands.put((command, args))

    def _housekeep(self) -> None:
        """Status publication, reports, runtime limit and the control
        commands (configure, reset_stats, get_stats, stop)."""
        start = time.monotonic()
        next_status = start + self.status_period if self.status_period > 0 else float("inf")
        next_report = start + self.report_period if self.report_period > 0 else float("inf")
        end = start + self.runtime if self.runtime > 0 else float("inf")
        while True:
            now = time.monotonic()
            timeout = max(0.0, min(next_status, next_report, end, now + 0.1) - now)
            try:
                item = self._commands.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            now = time.monotonic()
            if item is not None:
                command, args = item
                if command in (CONFIGURE, RESET_STATS):
                    self._run_command(command, args)
                elif command == GET_STATS:
                    self._report()
                    if self.status_period > 0:
                        next_status = now + self.status_period
                    self.control.reply(SUCCESS[GET_STATS])
                elif command == STOP:
                    self.control.reply(SUCCESS[STOP])
                    self.request_stop()
            if now >= end:
                end = float("inf")
                log.info("consumer %s: runtime of %g s reached", self.consumer_id, self.runtime)
                self.request_stop()
            if now >= next_report:
                next_report = now + self.report_period
                next_status = now + self.status_period if self.status_period > 0 else next_status
                self._report()
            elif now >= next_status:
                next_status = now + self.status_period
                self._publish_status()
