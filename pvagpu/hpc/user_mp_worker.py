"""UserMpWorker: the worker process that runs a UserMpDataProcessor (pvapy.hpc API)."""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
from multiprocessing import reduction

from ..errors import ConfigurationError
from ..memory import tune_malloc
from ..mp import protocol
from ..mp.gpu_binding import bind_gpu
from ..mp.log import get_logger


def start_method_for(startMethod=None, inputDataQueue=None, gpu=None) -> str:
    """The start method of a worker: ``startMethod`` (a name or a context)
    if given, else that of a :class:`~pvagpu.mp.ShmQueue` input queue, else
    ``spawn`` for a GPU worker, else multiprocessing's default. A GPU
    worker cannot be forked (CUDA state does not survive a fork)."""
    if startMethod is None:
        startMethod = getattr(inputDataQueue, "start_method", None)
    if startMethod is None:
        startMethod = "spawn" if gpu is not None else mp.get_start_method()
    if hasattr(startMethod, "get_start_method"):
        startMethod = startMethod.get_start_method()
    if startMethod not in mp.get_all_start_methods():
        raise ConfigurationError(f"unknown start method {startMethod!r}; this platform has "
                                 f"{', '.join(mp.get_all_start_methods())}")
    if gpu is not None and startMethod == "fork":
        raise ConfigurationError("a GPU worker must be started with 'spawn' or 'forkserver' "
                                 "(CUDA cannot be used in a forked process); create its input "
                                 "queue with the same start method, e.g. "
                                 "ShmQueue(start_method='spawn')")
    return startMethod


class UserMpWorker(mp.Process):
    """Worker process: takes objects from ``inputDataQueue`` and gives them to
    ``userMpDataProcessor.process()``; a thread of the process answers the
    controller's commands (see :mod:`pvagpu.mp.protocol`).

    Mirrors pvapy.hpc's ``UserMpWorker``. pvagpu additions, after the seed's
    arguments: ``gpu`` binds the process to that device before the processor
    is loaded (:mod:`pvagpu.mp.gpu_binding`); ``startMethod`` ('fork',
    'spawn', 'forkserver' or a context; default :func:`start_method_for`).
    Differences from pvapy: the processor's ``start()`` runs in the worker
    process, like every other processor method (pvapy calls it in the parent);
    the worker process tunes malloc for frame-sized buffers
    (:func:`pvagpu.memory.tune_malloc`; ``PVAGPU_MALLOPT=0`` turns it off);
    ``getStats()`` adds ``nWorkerProcessed``, ``nWorkerErrors`` and
    ``nWorkerDiscarded`` (objects left on the queue at stop) to the
    processor's statistics (the processor's keys win).

    The methods below other than ``start()`` run in the worker process.
    """

    def __init__(self, workerId, userMpDataProcessor, commandRequestQueue, commandResponseQueue,
                 inputDataQueue, logLevel=None, logFile=None, *, gpu=None, startMethod=None):
        mp.Process.__init__(self, name=f"UserMpWorker-{workerId}")
        self.workerId = workerId
        self.userMpDataProcessor = userMpDataProcessor
        self.commandRequestQueue = commandRequestQueue
        self.commandResponseQueue = commandResponseQueue
        self.inputDataQueue = inputDataQueue
        self.logLevel = logLevel
        self.logFile = logFile
        self.logger = get_logger(f"{type(self).__name__}.{workerId}", logLevel, logFile)
        self.gpu = gpu
        self._start_method = start_method_for(startMethod, inputDataQueue, gpu)
        self._parentCudaVisible = None
        self.isStopped = True
        self._resetCounters()

    @staticmethod
    def _Popen(process_obj):
        return mp.get_context(process_obj._start_method).Process._Popen(process_obj)

    def __getstate__(self):
        # The processor travels as bytes, loaded in run() after the GPU is bound,
        # so that no user code runs in the worker before the device is chosen.
        state = dict(self.__dict__)
        state["userMpDataProcessor"] = None
        state["_processorPickle"] = bytes(reduction.ForkingPickler.dumps(self.userMpDataProcessor))
        return state

    def _resetCounters(self):
        self.nProcessed = self.nErrors = self.nDiscarded = 0

    def start(self):
        """Start the worker process (in the parent)."""
        if self.isStopped:
            self.isStopped = False   # before the fork or pickle: the child's initial state
            self._parentCudaVisible = os.environ.get("CUDA_VISIBLE_DEVICES")
            try:
                mp.Process.start(self)
            except BaseException:
                self.isStopped = True
                raise

    # -- in the worker process ---------------------------------------------------

    def configure(self, configDict):
        """Pass a configuration change to the processor.

        :param configDict: dict of configuration parameters
        """
        self.userMpDataProcessor.configure(configDict)

    def process(self, mpqObject):
        """Process one object taken from the input queue."""
        return self.userMpDataProcessor.process(mpqObject)

    def stop(self):
        """Stop processing: the processor's ``stop()``; the objects still on the
        input queue are taken off and counted as discarded. Returns the statistics."""
        if not self.isStopped:
            self.logger.debug("Stopping worker %s, PID %s", self.workerId, os.getpid())
            self.isStopped = True
            self._stopRequested.set()
            if not self._loopDone.wait(protocol.WAIT_TIME / 2):
                self.logger.warning("Worker %s: processing still busy at stop", self.workerId)
            self.userMpDataProcessor.stop()
            self._discardInput()
        return self.getStats()

    def _discardInput(self):
        while True:
            try:
                self.inputDataQueue.get(False)
            except queue.Empty:
                return
            except Exception as ex:  # a closed or broken queue: nothing more to take
                self.logger.warning("Worker %s: cannot empty the input queue: %s",
                                    self.workerId, ex)
                return
            self.nDiscarded += 1

    def resetStats(self):
        """Reset the processor's statistics and the worker's counters."""
        self._resetCounters()
        self.userMpDataProcessor.resetStats()

    def getStats(self):
        """The processor's statistics and the worker's counters, a dict."""
        stats = {"nWorkerProcessed": self.nProcessed, "nWorkerErrors": self.nErrors,
                 "nWorkerDiscarded": self.nDiscarded}
        stats.update(self.userMpDataProcessor.getStats() or {})
        return stats

    def run(self):
        """The worker process: bind the GPU, load and start the processor,
        serve commands in a thread and process input until stopped."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent stops us
        if self.gpu is not None:
            bind_gpu(self.gpu, self._parentCudaVisible)
        tune_malloc()   # frame-sized buffers from the heap: this process exists for frames
        self.logger = get_logger(f"{type(self).__name__}.{self.workerId}",
                                 self.logLevel, self.logFile)
        pickled = self.__dict__.pop("_processorPickle", None)
        if pickled is not None:   # spawn, forkserver: see __getstate__
            self.userMpDataProcessor = reduction.ForkingPickler.loads(pickled)
        self.logger.debug("Worker %s starting, PID %s", self.workerId, os.getpid())
        self._stopRequested = threading.Event()
        self._loopDone = threading.Event()
        try:
            self.userMpDataProcessor.start()
        except Exception:
            self.logger.exception("Worker %s: processor start() failed", self.workerId)
        commands = threading.Thread(target=self._serveCommands, daemon=True,
                                    name=f"UserMpWorker-{self.workerId}-commands")
        commands.start()
        try:
            self._processInput()
        finally:
            self._loopDone.set()
            commands.join()
            self.logger.debug("Worker %s is exiting", self.workerId)

    def _processInput(self):
        parent = mp.parent_process()
        while not self._stopRequested.is_set():
            try:
                item = self.inputDataQueue.get(True, protocol.COMMAND_EXEC_DELAY)
            except queue.Empty:
                if parent is not None and not parent.is_alive():
                    self.logger.warning("Worker %s: parent process is gone", self.workerId)
                    return
                continue
            except (EOFError, OSError) as ex:
                self.logger.error("Worker %s: input queue closed: %s", self.workerId, ex)
                return
            except Exception as ex:   # an object that could not be taken off the queue
                self.nErrors += 1
                self.logger.error("Worker %s: bad input object: %s", self.workerId, ex)
                continue
            try:
                self.process(item)
                self.nProcessed += 1
            except Exception as ex:
                self.nErrors += 1
                self.logger.error("Worker %s: processing error: %s", self.workerId, ex)
            finally:
                item = None   # a frame's shared-memory slot is released with its last reference

    def _serveCommands(self):
        while True:
            try:
                request = self.commandRequestQueue.get(True, protocol.COMMAND_EXEC_DELAY)
            except queue.Empty:
                if self._loopDone.is_set():
                    return
                continue
            except (EOFError, OSError):
                return
            response = self._execute(request)
            try:
                self.commandResponseQueue.put(response, True, protocol.WAIT_TIME)
            except Exception as ex:
                self.logger.error("Worker %s: cannot send response: %s", self.workerId, ex)
            if request.get("command") == protocol.STOP_COMMAND:
                return

    def _execute(self, request: dict) -> dict:
        command = request.get("command")
        response = {"requestId": request.get("requestId")}
        try:
            if command == protocol.STOP_COMMAND:
                value = self.stop()
            elif command == protocol.CONFIGURE_COMMAND:
                value = self.configure(request.get("configDict"))
            elif command == protocol.RESET_STATS_COMMAND:
                value = self.resetStats()
            elif command == protocol.GET_STATS_COMMAND:
                value = self.getStats()
            else:
                raise ValueError(f"unknown command {command!r}")
        except Exception as ex:
            self.logger.error("Worker %s: %s failed: %s", self.workerId, command, ex)
            response.update(returnCode=protocol.ERROR_RETURN_CODE, error=f"{type(ex).__name__}: {ex}")
            return response
        response["returnCode"] = protocol.SUCCESS_RETURN_CODE
        if value is not None:
            response["returnValue"] = value
        return response
