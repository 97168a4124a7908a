"""UserMpWorkerController: starts a UserMpWorker and talks to it (pvapy.hpc API)."""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
import time

from ..mp import protocol
from ..mp.log import get_logger
from .user_mp_worker import UserMpWorker, start_method_for


class UserMpWorkerController:
    """Controller of one :class:`UserMpWorker` process.

    Mirrors pvapy.hpc's ``UserMpWorkerController``: it creates the command
    queues and the worker, and turns ``configure``, ``getStats``,
    ``resetStats`` and ``stop`` into requests to the worker (protocol in
    :mod:`pvagpu.mp.protocol`), waiting ``WAIT_TIME`` seconds for each
    response; no response raises :class:`ProcessNotResponding` from
    ``_invokeCommandRequest`` (the public methods log it and go on, as in
    pvapy). Beyond pvapy: ``configure`` works; a response to an earlier,
    timed-out request is skipped instead of failing every later command;
    requests from several threads are serialised; a dead worker is reported
    at once. ``stop`` ends the process (terminate, then kill, if it does not
    exit) and frees the shared-memory slots it still held.

    ``inputDataQueue`` is a :class:`pvagpu.mp.ShmQueue` (frames through
    shared memory; its ring statistics, ``ring*`` and ``nRing*``, are added to
    ``getStats()``) or a ``multiprocessing.Queue`` of the worker's start
    method. ``gpu`` and ``startMethod`` are pvagpu additions, passed to
    :class:`UserMpWorker`.
    """

    CONTROLLER_TYPE = "user"
    WAIT_TIME = protocol.WAIT_TIME
    MIN_STATUS_UPDATE_PERIOD = protocol.MIN_STATUS_UPDATE_PERIOD
    COMMAND_EXEC_DELAY = protocol.COMMAND_EXEC_DELAY
    SUCCESS_RETURN_CODE = protocol.SUCCESS_RETURN_CODE
    ERROR_RETURN_CODE = protocol.ERROR_RETURN_CODE
    GET_STATS_COMMAND = protocol.GET_STATS_COMMAND
    RESET_STATS_COMMAND = protocol.RESET_STATS_COMMAND
    CONFIGURE_COMMAND = protocol.CONFIGURE_COMMAND
    STOP_COMMAND = protocol.STOP_COMMAND

    class ProcessNotResponding(Exception):
        """The worker process did not answer a command within ``WAIT_TIME``."""

        def __init__(self, args):
            Exception.__init__(self, args)

    def __init__(self, workerId, userMpDataProcessor, inputDataQueue, logLevel=None,
                 logFile=None, *, gpu=None, startMethod=None):
        self.logLevel = logLevel
        self.logFile = logFile
        self.logger = get_logger(f"{type(self).__name__}.{workerId}", logLevel, logFile)
        self.workerId = workerId
        self.inputDataQueue = inputDataQueue
        method = start_method_for(startMethod, inputDataQueue, gpu)
        ctx = mp.get_context(method)
        self.commandRequestQueue = ctx.Queue()
        self.commandResponseQueue = ctx.Queue()
        self.requestId = 0
        self._commandLock = threading.Lock()
        self.uwProcess = UserMpWorker(workerId, userMpDataProcessor, self.commandRequestQueue,
                                      self.commandResponseQueue, inputDataQueue, logLevel,
                                      logFile, gpu=gpu, startMethod=method)
        self.pid = os.getpid()
        self.statsDict = {}
        self.isStopped = True

    @classmethod
    def _renameDictKeys(cls, d, keyPrefix):
        if keyPrefix:
            return {f"{keyPrefix}{key}": value for key, value in d.items()}
        return d

    def _invokeCommandRequest(self, command, args={}):
        """Send ``command`` (with the items of ``args``) and return the
        response's ``returnValue``. ProcessNotResponding when no response came
        in ``WAIT_TIME`` s or the process is gone; RuntimeError for an error
        response."""
        with self._commandLock:
            if not self.uwProcess.is_alive():
                raise self.ProcessNotResponding(
                    f"worker {self.workerId} is not running (exit code {self.uwProcess.exitcode})")
            requestId = self.requestId
            self.requestId += 1
            request = {"requestId": requestId, "command": command}
            if isinstance(args, dict):
                request.update(args)
            deadline = time.monotonic() + self.WAIT_TIME
            try:
                self.commandRequestQueue.put(request, True, self.WAIT_TIME)
                response = self._responseTo(requestId, deadline)
            except queue.Full:
                response = None
            if response is None:
                raise self.ProcessNotResponding(
                    f"no response from worker {self.workerId} to {command!r} "
                    f"within {self.WAIT_TIME} s")
        if response.get("returnCode", self.ERROR_RETURN_CODE) != self.SUCCESS_RETURN_CODE:
            raise RuntimeError(f"error response from worker {self.workerId} to {command!r}: "
                               f"{response.get('error', '')}")
        return response.get("returnValue")

    def _responseTo(self, requestId, deadline):
        """The response to ``requestId``, skipping late responses to earlier
        requests; None at ``deadline``."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                response = self.commandResponseQueue.get(True, left)
            except queue.Empty:
                return None
            answered = response.get("requestId")
            if answered == requestId:
                return response
            self.logger.warning("Worker %s: skipping a late response to request %s",
                                self.workerId, answered)

    def start(self):
        """Start the worker process."""
        self.logger.debug("Starting worker %s", self.workerId)
        # the child starts with SIGINT ignored: Ctrl-C reaches the parent, which stops it
        in_main = threading.current_thread() is threading.main_thread()
        original = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:
            self.uwProcess.start()
        finally:
            if in_main:
                signal.signal(signal.SIGINT, original)
        self.isStopped = False

    def configure(self, configDict):
        """Pass ``configDict`` to the processor's ``configure()`` in the worker."""
        try:
            if not self.isStopped:
                self._invokeCommandRequest(self.CONFIGURE_COMMAND, {"configDict": configDict})
        except Exception as ex:
            self.logger.error("Cannot configure worker %s: %s", self.workerId, ex)

    def stop(self, statsKeyPrefix=None):
        """Stop the worker and its process; the last statistics, keys
        prefixed with ``statsKeyPrefix`` if given."""
        if self.isStopped:
            return self._renameDictKeys(self._withRingStats(self.statsDict), statsKeyPrefix)
        self.isStopped = True
        try:
            stats = self._invokeCommandRequest(self.STOP_COMMAND)
            if isinstance(stats, dict):
                self.statsDict = stats
        except Exception as ex:
            self.logger.warning("Cannot stop worker %s cleanly: %s", self.workerId, ex)
        self._endProcess()
        return self._renameDictKeys(self._withRingStats(self.statsDict), statsKeyPrefix)

    def _endProcess(self):
        process = self.uwProcess
        for end in (None, process.terminate, process.kill):
            if end is not None:
                end()
            process.join(self.WAIT_TIME)
            if not process.is_alive():
                break
        ring = getattr(self.inputDataQueue, "ring", None)
        if ring is not None and process.pid is not None and ring.is_owner:
            ring.reclaim(process.pid)
        self.logger.debug("Worker %s is done (exit code %s)", self.workerId, process.exitcode)

    def resetStats(self):
        """Reset the worker's and the shared-memory ring's statistics."""
        reset_ring = getattr(self.inputDataQueue, "reset_ring_stats", None)
        if reset_ring is not None:
            reset_ring()
        try:
            if not self.isStopped:
                self._invokeCommandRequest(self.RESET_STATS_COMMAND)
        except Exception as ex:
            self.logger.error("Cannot reset stats for worker %s: %s", self.workerId, ex)

    def getStats(self, statsKeyPrefix=None):
        """The worker's statistics (the last ones received if it does not
        answer) with the ring's, keys prefixed with ``statsKeyPrefix`` if given."""
        try:
            if not self.isStopped:
                stats = self._invokeCommandRequest(self.GET_STATS_COMMAND)
                if isinstance(stats, dict):
                    self.statsDict = stats
                else:
                    self.logger.warning("Worker %s sent invalid stats: %r", self.workerId, stats)
        except Exception as ex:
            self.logger.warning("Cannot get stats for worker %s: %s", self.workerId, ex)
        return self._renameDictKeys(self._withRingStats(self.statsDict), statsKeyPrefix)

    def _withRingStats(self, stats: dict) -> dict:
        ring_stats = getattr(self.inputDataQueue, "ring_stats", None)
        return {**stats, **ring_stats()} if ring_stats is not None else dict(stats)

    def reportStats(self, statsDict=None):
        """Log ``statsDict`` (default: :meth:`getStats`) at info level."""
        statsDict = self.getStats() if statsDict is None else statsDict
        self.logger.info("Worker %s statistics: %s", self.workerId, statsDict)

