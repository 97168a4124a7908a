"""UserMpDataProcessor: the base of processors run in a worker process (pvapy.hpc API)."""
from __future__ import annotations

import logging


class UserMpDataProcessor:
    """Base class for user code that processes objects taken from a
    multiprocessing queue by a :class:`~pvagpu.hpc.UserMpWorker`.

    Mirrors pvapy.hpc's ``UserMpDataProcessor``. ``logger``
    (logging.Logger) is set by the constructor; ``processorId`` is the
    constructor argument. An instance is pickled into the worker process
    (under the ``spawn`` and ``forkserver`` start methods), so its class must
    be importable there and its attributes picklable until ``start()``, which
    runs in the worker process, as do all the other methods.
    """

    def __init__(self, processorId=1):
        self.logger = logging.getLogger(f"pvagpu.{type(self).__name__}")
        self.processorId = processorId

    def start(self):
        """Called in the worker process before the first object."""

    def configure(self, configDict):
        """Called for a user-initiated configuration change.

        :param configDict: dict of configuration parameters
        """

    def process(self, mpqObject):
        """Called for every object taken from the input queue.

        :param mpqObject: the object (a NumPy array, a p4p Value, anything picklable)
        """
        self.logger.debug("Processor %s processing object %r", self.processorId, mpqObject)

    def stop(self):
        """Called in the worker process when processing stops."""

    def resetStats(self):
        """Called for a user-initiated statistics reset."""

    def getStats(self):
        """Processor statistics, a dict."""
        return {}
