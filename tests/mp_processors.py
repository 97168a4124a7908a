"""UserMpDataProcessor subclasses for tests/test_user_mp.py.

They live in their own module because a spawned worker imports the
processor's class by module name (tests/ is on sys.path under pytest).
Each reports what it saw on a ``results`` queue given by the test.
"""
import os
import re
import threading

import numpy as np
from p4p import Value

from pvagpu.hpc import UserMpDataProcessor


def describe(obj):
    """What a test compares: arrays by dtype, shape and bytes; p4p Values
    by Type and full text (types of variants and unions included), with
    structures and unions with the ID ``"structure"`` written as anonymous
    ones (p4p's ``aspy()`` names an anonymous one so: a Value rebuilt from
    its type description carries that ID, the one fact of a Type the
    hand-off does not keep)."""
    if isinstance(obj, np.ndarray):
        return ("array", obj.dtype.str, obj.shape, obj.tobytes())
    if isinstance(obj, Value):
        return ("value", obj.type().aspy(), _named_anonymous(obj.tostr()))
    return ("object", obj)


def _named_anonymous(text: str) -> str:
    return re.sub(r'\b(union|struct(?:\[\])?) "structure" ', r"\1 ", text)


class RecordingProcessor(UserMpDataProcessor):
    """Sends a description of every object and of each call to ``results``."""

    def __init__(self, results, processorId=1):
        super().__init__(processorId)
        self.results = results
        self.nObjects = 0
        self.config = {}

    def start(self):
        self.results.put(("start", os.getpid()))

    def configure(self, configDict):
        self.config.update(configDict)
        if configDict.get("fail"):
            raise ValueError("configuration refused")

    def process(self, mpqObject):
        if isinstance(mpqObject, str) and mpqObject == "raise":
            raise RuntimeError("bad object")
        self.nObjects += 1
        self.results.put(describe(mpqObject))

    def stop(self):
        self.results.put(("stop", self.nObjects))

    def resetStats(self):
        self.nObjects = 0

    def getStats(self):
        # {'statsDelay': s} makes the worker slow (or hung) to answer commands
        threading.Event().wait(self.config.get("statsDelay", 0))
        return {"nObjects": self.nObjects, "config": dict(self.config)}


class HoldingProcessor(RecordingProcessor):
    """Keeps every array it gets (a view of a shared-memory slot) until
    configured with ``{'drop': True}``; reports each array's first element."""

    def __init__(self, results, processorId=1):
        super().__init__(results, processorId)
        self.held = []

    def configure(self, configDict):
        if configDict.get("drop"):
            self.results.put(("held", [int(a.reshape(-1)[0]) for a in self.held]))
            self.held = []

    def process(self, mpqObject):
        self.held.append(mpqObject[1:])   # a view: keeps the whole slot
        self.results.put(("got", int(mpqObject.reshape(-1)[0])))


class GpuProbeProcessor(RecordingProcessor):
    """Reports CUDA_VISIBLE_DEVICES when it is unpickled in the worker and at start()."""

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.visibleAtLoad = os.environ.get("CUDA_VISIBLE_DEVICES")

    def start(self):
        self.results.put(("gpu", getattr(self, "visibleAtLoad", "not unpickled"),
                          os.environ.get("CUDA_VISIBLE_DEVICES")))
