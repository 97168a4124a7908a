"""The consumer: one processor on one input channel, receive -> process -> publish.

:class:`Consumer` wires the parts of the runtime (pvagpu.runtime) together
and runs their life cycle:

1. :class:`~pvagpu.pva.receiver.Receiver` monitors the input channel; on
   the PVA client's thread it counts each update, accounts missed frames
   (uniqueId gaps) and offers ``(objectId, value)`` (no copy) to
2. a delivery strategy (:mod:`pvagpu.runtime.delivery`): inline on the PVA
   thread (the default, as pvapy's -rqs -1), through a bounded queue to a
   processing thread (-rqs N), or in batches (-ao N), all ending in
3. the frame runner (:mod:`pvagpu.runtime.frames`), which calls
   ``processor.process(value)`` (or ``processBatch(values)``) and counts
   processed frames and errors; a frame that fails is counted and the
   next one is processed.
4. The processor publishes with ``updateOutputChannel(value)`` on the
   output channel that the consumer serves
   (:class:`~pvagpu.pva.publisher.Publisher`), or, with pvapy's output
   modes pva / rpc, sends to a remote record or service
   (:class:`~pvagpu.pva.remote_output.RemoteOutput`). With the input modes
   pvas / rpc the consumer serves its input channel instead of monitoring
   it (:class:`~pvagpu.pva.input_record.InputRecord`, a Receiver); with
   -im ca it monitors a Channel Access PV
   (:class:`~pvagpu.pva.ca_input.CaReceiver`).
5. The housekeeping thread (:mod:`pvagpu.runtime.housekeeping`) publishes
   the status channel, gives the statistics to the ``on_stats``
   subscribers every ``report_period`` s, ends the run after ``runtime``
   and runs the control channel's commands.

With worker processes (``n_workers``, :mod:`pvagpu.runtime.workers`) the
processor runs in them instead: a WorkerPool stands in for the processor,
the delivery hands each frame (still compressed) to the least-loaded
worker, and what the workers publish comes back to the output channel.
Each worker subscribes to the metadata channels (-mc) itself and makes its
own batches (-ao).

:meth:`Consumer.run` blocks until stopped (control ``stop``, runtime, or
:meth:`request_stop`, which is safe to call from a signal handler), then
stops cleanly: no more frames are received, the queued ones (queued
delivery) are processed for up to ``drain_timeout`` s, ``processor.stop()``
runs and the final statistics are published, given to the subscribers and
returned.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time

from . import codecs
from .errors import ConfigurationError
from .hpc import UserDataProcessor
from .pva.ca_input import CaReceiver
from .pva.control import CONTROL_STATS_TYPES, ControlChannel
from .pva.input_record import InputRecord, input_type_of
from .pva.publisher import LocalServer, Publisher
from .pva.monitor_request import request_text
from .pva.receiver import Receiver
from .pva.remote_output import RemoteOutput
from .pva.status import StatusChannel
from .runtime.config import ConsumerConfig
from .runtime.delivery import make_delivery
from .runtime.frames import FrameRunner
from .runtime.housekeeping import Housekeeping
from .runtime.loading import load_processor_class, make_processor
from .runtime.statistics import ConsumerStatistics
from .runtime.workers import WorkerPool, plan_workers

log = logging.getLogger(__name__)


class Consumer:
    """Runs a processor on the frames of one input channel.

    ``config``: a :class:`~pvagpu.runtime.config.ConsumerConfig`, or the
    input channel name with the config's fields as keyword arguments
    (``Consumer("det:image", processor, status_channel="_")``).
    ``processor``: an instance with pvapy's processor interface; None
    builds the one the config names (-pf/-pc, with
    :meth:`~ConsumerConfig.processor_config`), or, without one, lets frames
    pass through to the output channel (still counted). ``on_stats``:
    callables given the statistics dict at each report and at the end
    (:attr:`on_stats` takes more). Use as a context manager (start /
    shutdown), or call :meth:`run`."""

    #: the id's name in the statistics and the status and control records (pvapy's)
    ID_FIELD = "consumerId"

    def __init__(self, config, processor=None, *, on_stats=(), **options):
        if not isinstance(config, ConsumerConfig):
            config = ConsumerConfig(config, **options)
        elif options:
            config = dataclasses.replace(config, **options)
        self.config = config
        self.consumer_id = config.consumer_id
        self.input_channel = config.input_name
        self.output_channel = config.output_name
        self.status_channel_name = config.status_name
        self.control_channel_name = config.control_name
        #: the worker processes (--n-workers), which then stand in for the processor
        self.workers = None
        if processor is None:
            cls = load_processor_class(config.processor_file, config.processor_class)
            plan = plan_workers(config, cls)
            if plan.n_workers:
                processor = self.workers = WorkerPool(config, plan)
            else:
                processor = make_processor(cls or UserDataProcessor, config.processor_config())
        elif config.n_workers:
            raise ConfigurationError("worker processes load the processor from processor_file / "
                                     "processor_class: give those instead of an instance")
        self.processor = processor
        #: subscribers to the statistics: ``f(stats)``
        self.on_stats = list(on_stats)
        self.server = LocalServer(f"pvagpu-consumer-{self.consumer_id}")
        self.publisher = self._make_publisher(config)
        self.runner = FrameRunner(processor, self.publisher, self.consumer_id)
        if self.workers is not None:
            self.workers.runner, self.workers.publisher = self.runner, self.publisher
        self.delivery = self._make_delivery(config)
        self.receiver = self._make_receiver(config)
        processor_type = cls if self.workers is not None else type(processor)
        if getattr(processor_type, "AUTHENTICATED_OBJECT_IDS", False) and \
                hasattr(self.receiver, "account"):
            # missed frames from the ids the processor authenticated (the decryptors)
            self.receiver.track_ids = False
            (self.runner if self.workers is None else self.workers).account_ids(self.receiver)
        #: the metadata channels (-mc); with workers each worker subscribes to
        #: them itself, and this gives their statistics (runtime.workers.metadata)
        self.metadata = None
        if config.metadata_channels:
            from .pva.metadata import MetadataChannels
            self.metadata = (self.workers.metadata if self.workers is not None
                             else MetadataChannels.for_consumer(config))
        self.statistics = ConsumerStatistics(
            self.consumer_id, self.input_channel, processor=processor, receiver=self.receiver,
            delivery=self.delivery, runner=self.runner, publisher=self.publisher,
            metadata=self.metadata, workers=self.workers, id_field=self.ID_FIELD)
        self.housekeeping = Housekeeping(self, runtime=config.runtime,
                                         report_period=config.report_period,
                                         status_period=config.status_period)
        self.status = None
        self.control = None
        self.final_stats = None
        self._stop_requested = False
        self._state_lock = threading.Lock()
        self._started = False
        self._shut_down = False

    # -- the parts that a subclass (pvagpu.collector.Collector) replaces -------

    def _make_publisher(self, config):
        """The output channel: served (-om pvas), or sent to a remote record
        or service (-om pva / rpc, :mod:`pvagpu.pva.remote_output`); None without one."""
        if not self.output_channel:
            return None
        if config.output_mode == "pvas":
            return Publisher(self.server, self.output_channel)
        return RemoteOutput(self.output_channel, config.output_mode)

    def _make_delivery(self, config):
        return make_delivery(config, self.runner, self.workers)

    def _make_receiver(self, config):
        """The input side: a monitor of the input channel (-im pva), of a
        Channel Access PV (-im ca, :mod:`pvagpu.pva.ca_input`), or the
        input channel served for clients to send frames into (-im pvas / rpc,
        :mod:`pvagpu.pva.input_record`)."""
        if config.input_mode == "ca":
            return CaReceiver.for_consumer(config, self.delivery.offer)
        if config.input_mode != "pva":
            initial = input_type_of(self.processor) if config.input_mode == "pvas" else None
            return InputRecord(
                self.server, self.input_channel, mode=config.input_mode, initial=initial,
                oid_field=config.oid_field, oid_offset=config.object_id_offset,
                skip_initial_updates=config.skip_initial_updates,
                sequential_updates=config.sequential_updates, deliver=self.delivery.offer)
        return Receiver(
            self.input_channel, oid_field=config.oid_field, oid_offset=config.object_id_offset,
            skip_initial_updates=config.skip_initial_updates,
            server_queue_size=config.server_queue_size, deliver=self.delivery.offer,
            distributor=config.distributor, distributor_plugin=config.distributor_plugin,
            field_request=config.field_request, sequential_updates=config.sequential_updates)

    def _status_sections(self):
        """The status record's further sections (see StatusChannel):
        ``controlStats`` with a control channel, ``worker<N>Stats`` with workers."""
        control = [("controlStats", CONTROL_STATS_TYPES)] if self.control_channel_name else []
        if self.workers is None:
            return control
        return lambda user_fields: control + self.workers.status_sections(user_fields)

    @property
    def counters(self):
        """The frame counters (:class:`~pvagpu.stats.ProcessorCounters`)."""
        return self.runner.counters

    def stats(self) -> dict:
        """The statistics dictionary (pvapy's structure, see pvagpu.stats)."""
        return self.statistics.collect()

    # -- life cycle ---------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    @property
    def shutting_down(self) -> bool:
        return self._shut_down

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
        self.counters.start_time = time.time()
        self.delivery.start()
        self.housekeeping.start()
        try:
            self.receiver.start()
        except BaseException:
            self.shutdown()  # threads, channels and the processor are running: stop them
            raise
        request = request_text(self.receiver.request, self.receiver.distributor,
                               self.receiver.distributor_plugin)
        log.info("consumer %s: receiving %s (%s, request %r)", self.consumer_id,
                 self.input_channel, self.delivery.description, request)

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
        if self.workers is not None:
            p.start()   # the workers' processors report their statistics types
        if self.status_channel_name:
            self.status = StatusChannel(
                self.server, self.status_channel_name, self.consumer_id, self.input_channel,
                user_types=self.statistics.processor_stats_types(),
                metadata_ids=range(1, len(self.metadata) + 1) if self.metadata else (),
                sections=self._status_sections(), id_field=self.ID_FIELD)
        if self.control_channel_name:
            self.control = ControlChannel(self.server, self.control_channel_name,
                                          self.consumer_id, self.housekeeping.submit,
                                          access=self.housekeeping.access,
                                          id_field=self.ID_FIELD)
        if self.workers is not None:
            return
        # one-time decoder costs (numba compilation of the bslz4 check) are paid
        # here, not by the first frames on the network thread
        codecs.warm_up()
        p.start()
        if self.publisher is not None:
            self.runner.open_output_at_start()   # when its type does not need the input

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
        self.delivery.stop(self.config.drain_timeout)
        with self.runner.lock:  # after the frame or command in progress, if any
            try:
                self.processor.stop()
            except Exception as exc:
                log.error("consumer %s: processor.stop() failed: %s: %s", self.consumer_id,
                          type(exc).__name__, exc)
        self.counters.end_time = time.time()
        if self.metadata is not None:
            self.metadata.stop()
        self.housekeeping.stop()
        self.final_stats = self.stats()
        self.housekeeping.report(self.final_stats)
        if self.publisher is not None:
            self.publisher.close()
        self.server.stop()
        return self.final_stats
