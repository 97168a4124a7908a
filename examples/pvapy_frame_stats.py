"""A processor written for pvapy.hpc: per-frame statistics of area-detector
images and the total exposure time, published on the status channel.

Run with pvapy:  pvapy-hpc-consumer -ic pvapy:image -pf examples/pvapy_frame_stats.py \
                     -pc FrameStatsProcessor -pa '{"threshold": 10}' -rp 5 -dc
Its pvagpu port, examples/frame_stats.py, differs only in imports and one accessor.
"""
import time

import numpy as np
import pvaccess as pva
from pvapy.hpc.adImageProcessor import AdImageProcessor


class FrameStatsProcessor(AdImageProcessor):

    def __init__(self, configDict={}):
        AdImageProcessor.__init__(self, configDict)
        self.threshold = float(configDict.get('threshold', 0))
        self.resetStats()

    def configure(self, configDict):
        if 'threshold' in configDict:
            self.threshold = float(configDict['threshold'])

    def resetStats(self):
        self.nFrames = 0
        self.nPixelsAbove = 0
        self.exposureTime = 0.0
        self.lastMean = 0.0
        self.lastMax = 0.0
        self.processingTime = 0.0

    def process(self, pvObject):
        t0 = time.time()
        (imageId, image, nx, ny, nz, colorMode, fieldKey) = self.reshapeNtNdArray(pvObject)
        if image is None:
            return pvObject
        for attribute in pvObject['attribute']:
            if attribute['name'] == 'AcquireTime':
                self.exposureTime += attribute['value'][0]['value']
        self.nFrames += 1
        self.nPixelsAbove += int(np.count_nonzero(image > self.threshold))
        self.lastMean = float(image.mean())
        self.lastMax = float(image.max())
        self.processingTime += time.time() - t0
        self.updateOutputChannel(pvObject)
        return pvObject

    def getStats(self):
        return {
            'nFrames': self.nFrames,
            'nPixelsAbove': self.nPixelsAbove,
            'exposureTime': self.exposureTime,
            'lastMean': self.lastMean,
            'lastMax': self.lastMax,
            'processingTime': self.processingTime,
        }

    def getStatsPvaTypes(self):
        return {
            'nFrames': pva.UINT,
            'nPixelsAbove': pva.ULONG,
            'exposureTime': pva.DOUBLE,
            'lastMean': pva.DOUBLE,
            'lastMax': pva.DOUBLE,
            'processingTime': pva.DOUBLE,
        }
