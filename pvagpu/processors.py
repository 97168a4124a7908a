"""Small built-in processors for pvagpu-consumer (``-pc pvagpu.processors:Name``).

``FrameCounter`` decodes every frame (so bad frames are counted as errors),
counts frames and pixel bytes, and republishes the input unchanged.
"""
from __future__ import annotations

import time

from . import pva
from .hpc import AdImageProcessor


class FrameCounter(AdImageProcessor):
    """Decode, count and republish each frame.

    configDict: ``publish`` (bool, default true) republishes each input on
    the output channel.

    Stats: nFrames (uint32), nBytes (uint64, decoded image bytes), nx, ny
    (uint32, last frame), lastUniqueId (uint32), processingTime (double,
    seconds spent decoding)."""

    def __init__(self, configDict=None):
        configDict = dict(configDict or {})
        AdImageProcessor.__init__(self, configDict)
        self.publish = bool(configDict.get("publish", True))
        self.resetStats()

    def configure(self, configDict):
        if isinstance(configDict, dict) and "publish" in configDict:
            self.publish = bool(configDict["publish"])

    def resetStats(self):
        self.nFrames = 0
        self.nBytes = 0
        self.nx = self.ny = 0
        self.lastUniqueId = 0
        self.processingTime = 0.0

    def process(self, pvObject):
        t0 = time.perf_counter()
        imageId, image, nx, ny, _nz, _mode, _key = self.reshapeNtNdArray(pvObject)
        self.processingTime += time.perf_counter() - t0
        if image is not None:
            self.nFrames += 1
            self.nBytes += image.nbytes
            self.nx, self.ny = nx, ny
            self.lastUniqueId = imageId
        if self.publish:
            self.updateOutputChannel(pvObject)
        return pvObject

    def getStats(self):
        return {"nFrames": self.nFrames, "nBytes": self.nBytes, "nx": self.nx, "ny": self.ny,
                "lastUniqueId": self.lastUniqueId, "processingTime": self.processingTime}

    def getStatsPvaTypes(self):
        return {"nFrames": pva.UINT, "nBytes": pva.ULONG, "nx": pva.UINT, "ny": pva.UINT,
                "lastUniqueId": pva.UINT, "processingTime": pva.DOUBLE}
