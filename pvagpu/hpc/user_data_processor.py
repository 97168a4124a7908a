"""UserDataProcessor: the base of every processor (pvapy.hpc API)."""
from __future__ import annotations

import logging


class UserDataProcessor:
    """Base class for user processors run by the streaming framework.

    Mirrors pvapy.hpc's ``UserDataProcessor``; objects are p4p ``Value``s
    where pvapy has ``PvObject``s. The framework sets these attributes after
    construction and before ``start()``:

    - ``logger`` (logging.Logger)
    - ``processorId`` (int)
    - ``inputChannel``, ``outputChannel`` (str)
    - ``objectIdField`` (str): name of the object id field, ``uniqueId``
    - ``pvaServer``: the consumer's PVA server
    - ``dataPublisher``: what ``updateOutputChannel`` publishes through
    - ``metadataQueueMap`` (dict): channel name -> queue of metadata updates
    """

    def __init__(self, configDict=None):
        configDict = dict(configDict or {})
        self.logger = logging.getLogger(f"pvagpu.{type(self).__name__}")
        self.processorId = configDict.get("processorId", 1)
        self.inputChannel = configDict.get("inputChannel")
        self.outputChannel = configDict.get("outputChannel")
        self.objectIdField = configDict.get("objectIdField", "uniqueId")
        self.pvaServer = None
        self.dataPublisher = None
        self.metadataQueueMap = {}

    def start(self):
        """Called once when processing starts."""

    def configure(self, configDict):
        """Called for a user-initiated configuration change (``configure``
        command on the control channel)."""

    def process(self, pvObject):
        """Called for every input object; the default publishes it unchanged."""
        self.updateOutputChannel(pvObject)
        return pvObject

    def stop(self):
        """Called once when processing stops."""

    def resetStats(self):
        """Called for a user-initiated statistics reset."""

    def getStats(self):
        """Processor statistics, a dict published on the status channel."""
        return {}

    def getStatsPvaTypes(self):
        """PVA types of the ``getStats()`` keys, e.g. ``{'nFrames': pva.UINT}``
        (constants from :mod:`pvagpu.pva`, or p4p type codes such as ``'I'``)."""
        return {}

    def getInputPvObjectType(self):
        """Structure of the input record when the consumer hosts it; None."""
        return None

    def getOutputPvObjectType(self, pvObject):
        """Structure of the output object, given the first input object.
        The default is the input's own structure."""
        return pvObject

    def updateOutputChannel(self, pvObject):
        """Publish ``pvObject`` on the output channel (if there is one)."""
        if self.dataPublisher is not None:
            self.dataPublisher.updateOutputChannel(pvObject)
