"""The housekeeping thread: timers, status publication and control commands.

One thread per consumer, next to the frame path, does everything that is
not a frame:

* publishes the status channel every ``status_period`` s, at each report
  and on ``get_stats``;
* every ``report_period`` s gives the statistics to the consumer's
  ``on_stats`` subscribers (the live report of the command line is one);
* ends the run after ``runtime`` s;
* runs the control channel's commands: configure and reset_stats hold the
  frame runner's lock, so they run between two frames (or batches) and
  never race with ``process()``; get_stats reports; stop stops.

It works on the parts of its :class:`~pvagpu.consumer.Consumer`
(receiver, delivery, statistics, processor, status and control channels).
It also gives the control channel its allow list (the config's
``control_allow``, read when the consumer is built, so a bad list fails
then) and says at start who may command the consumer.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time

from ..pva.access import ControlAccess
from ..pva.control import CONFIGURE, GET_STATS, RESET_STATS, STOP, SUCCESS
from ..stats import ErrorLog

log = logging.getLogger(__name__)

_STOP = object()       # end of the housekeeping thread


class Housekeeping:
    """Timers and commands of ``consumer`` (see the module docstring)."""

    def __init__(self, consumer, *, runtime: float = 0.0, report_period: float = 0.0,
                 status_period: float = 1.0):
        self.consumer = consumer
        self.runtime = float(runtime or 0)
        self.report_period = float(report_period or 0)
        self.status_period = float(status_period)
        self._commands = queue.SimpleQueue()
        self._status_lock = threading.Lock()
        self._thread = None
        self._errors = ErrorLog(log)
        config = getattr(consumer, "config", None)
        #: who may use the control channel (ConfigurationError if the list is bad)
        self.access = ControlAccess.parse(getattr(config, "control_allow", None))

    # -- life cycle -------------------------------------------------------------

    def start(self) -> None:
        control = self.consumer.control
        if control is not None:   # made with self.access (Consumer._start_channels)
            if self.access.open:
                log.warning("control channel %s: open to ANY client that can reach it "
                            "(stop, configure); --control-allow restricts it", control.name)
            else:
                log.info("control channel %s: commands accepted from %s only",
                         control.name, self.access.describe())
        self._thread = threading.Thread(target=self._loop, name="pvagpu-housekeeping",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread (after the command in progress, if any)."""
        if self._thread is not None:
            self._commands.put(_STOP)
            self._thread.join()
            self._thread = None

    def submit(self, command: str, args: str) -> None:
        """A control channel command (called on the PVA server's thread):
        run it on the housekeeping thread."""
        consumer = self.consumer
        if command in (CONFIGURE, RESET_STATS) and consumer.shutting_down:
            consumer.control.reply(f"Command {command} failed: the consumer is stopping")
            return
        self._commands.put((command, args))

    # -- statistics out -----------------------------------------------------------

    def publish_status(self, stats: dict | None = None) -> dict:
        """Post ``stats`` (collected now if None) on the status channel;
        with a control channel, its counts go in as ``controlStats``."""
        consumer = self.consumer
        stats = stats or consumer.stats()
        if getattr(consumer, "control", None) is not None:
            stats.setdefault("controlStats", consumer.control.counts())
        if consumer.status is not None:
            with self._status_lock:
                try:
                    consumer.status.publish(stats)
                except Exception as exc:
                    self._errors("status", "consumer %s: cannot publish status: %s: %s",
                                 consumer.consumer_id, type(exc).__name__, exc)
        return stats

    def report(self, stats: dict | None = None) -> None:
        """Publish the status and give the statistics to the subscribers."""
        stats = self.publish_status(stats)
        for subscriber in list(self.consumer.on_stats):
            try:
                subscriber(stats)
            except Exception as exc:
                self._errors("report", "consumer %s: report failed: %s",
                             self.consumer.consumer_id, exc)

    # -- the thread -----------------------------------------------------------------

    def _loop(self) -> None:
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
                self._run_command(command, args)
                if command == GET_STATS and self.status_period > 0:
                    next_status = now + self.status_period
            if now >= end:
                end = float("inf")
                log.info("consumer %s: runtime of %g s reached", self.consumer.consumer_id,
                         self.runtime)
                self.consumer.request_stop()
            if now >= next_report:
                next_report = now + self.report_period
                next_status = now + self.status_period if self.status_period > 0 else next_status
                self.report()
            elif now >= next_status:
                next_status = now + self.status_period
                self.publish_status()

    # -- the commands ---------------------------------------------------------------

    def _run_command(self, command: str, args: str) -> None:
        consumer = self.consumer
        if command in (CONFIGURE, RESET_STATS):
            with consumer.runner.lock:   # between two frames
                if command == CONFIGURE:
                    message = self._configure(args)
                else:
                    consumer.statistics.reset()
                    message = SUCCESS[RESET_STATS]
            consumer.control.reply(message)
        elif command == GET_STATS:
            self.report()
            consumer.control.reply(SUCCESS[GET_STATS])
        elif command == STOP:
            consumer.control.reply(SUCCESS[STOP])
            consumer.request_stop()

    def _configure(self, args: str) -> str:
        """The configure command: the framework's keys (as pvapy's), then
        the processor's ``configure``; the status message."""
        consumer = self.consumer
        try:
            config = json.loads(args) if args and args.strip() else {}
        except ValueError as exc:
            return f"Configuration failed: args are not valid JSON ({exc})"
        if not isinstance(config, dict):
            return f"Configuration failed: args must be a JSON object, got {type(config).__name__}"
        receiver = consumer.receiver
        try:
            if "receiverQueueSize" in config:  # only with a queue, as pvapy
                size = int(config["receiverQueueSize"])
                consumer.delivery.resize(size)
                if consumer.metadata is not None:
                    consumer.metadata.set_queue_size(size)
            if "skipInitialUpdates" in config:
                receiver.skip = max(0, int(config["skipInitialUpdates"]))
            if "objectIdOffset" in config:
                receiver.ids.offset = max(1, int(config["objectIdOffset"]))
            if "nSequentialUpdates" in config:
                receiver.ids.sequential = max(1, int(config["nSequentialUpdates"]))
            consumer.processor.configure(config)
        except Exception as exc:
            log.warning("consumer %s: configuration %s failed: %s", consumer.consumer_id, args,
                        exc)
            return f"Configuration failed: {exc}"
        return SUCCESS[CONFIGURE]
