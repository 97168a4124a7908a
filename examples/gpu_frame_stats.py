"""Per-frame statistics on the GPU (or on the CPU with the same code).

Run: pvagpu-consumer -ic pvapy:image -pf examples/gpu_frame_stats.py \
         -pc GpuFrameStats -pa '{"threshold": 10, "gpu": "auto"}' -oc _ -sc _ -rp 5

``gpu``: "auto" (a GPU when CuPy sees one), "none" (NumPy) or a device number.
Each frame's mean, min, max, sum and number of pixels above ``threshold``
are published on the output channel as a structure; the running totals are
in the status channel's userStats (getStats below), next to the
framework's GPU fields (backend, device, bytes sent to the device, decode
and kernel time per frame, ring occupancy), which the runtime adds.
"""
from pvagpu import pva
from pvagpu.gpu import GpuAdImageProcessor


class GpuFrameStats(GpuAdImageProcessor):

    def __init__(self, configDict={}):
        GpuAdImageProcessor.__init__(self, configDict)
        self.threshold = float(configDict.get('threshold', 0))
        self.resetStats()

    def configure(self, configDict):
        if 'threshold' in configDict:
            self.threshold = float(configDict['threshold'])

    def resetStats(self):
        self.nFrames = 0
        self.nPixelsAbove = 0
        self.lastMean = 0.0
        self.lastMax = 0.0

    def processFrame(self, frame):
        xp = self.xp                       # cupy on a GPU, numpy otherwise
        image = frame.image.astype(xp.float64)
        above = int(xp.count_nonzero(image > self.threshold))
        stats = {
            'mean': float(image.mean()),
            'min': float(image.min()),
            'max': float(image.max()),
            'sum': float(image.sum()),
            'nAbove': above,
        }
        self.nFrames += 1
        self.nPixelsAbove += above
        self.lastMean, self.lastMax = stats['mean'], stats['max']
        return stats

    def processFrameBatch(self, batch):
        """With -ao N: consecutive frames of one shape stacked in
        ``batch.images``, processed at once; one result per frame."""
        xp = self.xp
        images = batch.images.astype(xp.float64)
        axes = tuple(range(1, images.ndim))
        means, mins = images.mean(axis=axes), images.min(axis=axes)
        maxs, sums = images.max(axis=axes), images.sum(axis=axes)
        above = xp.count_nonzero(images > self.threshold, axis=axes)
        results = []
        for i in range(len(batch)):
            results.append({'mean': float(means[i]), 'min': float(mins[i]),
                            'max': float(maxs[i]), 'sum': float(sums[i]),
                            'nAbove': int(above[i])})
        self.nFrames += len(batch)
        self.nPixelsAbove += int(above.sum())
        self.lastMean, self.lastMax = results[-1]['mean'], results[-1]['max']
        return results

    def getOutputFieldTypes(self):
        return {'mean': pva.DOUBLE, 'min': pva.DOUBLE, 'max': pva.DOUBLE, 'sum': pva.DOUBLE,
                'nAbove': pva.ULONG}

    def getStats(self):
        return {'nFrames': self.nFrames, 'nPixelsAbove': self.nPixelsAbove,
                'lastMean': self.lastMean, 'lastMax': self.lastMax}

    def getStatsPvaTypes(self):
        return {'nFrames': pva.UINT, 'nPixelsAbove': pva.ULONG, 'lastMean': pva.DOUBLE,
                'lastMax': pva.DOUBLE}
