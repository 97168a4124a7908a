"""Photon counting with a running sum image, on the GPU (or the CPU).

Run: pvagpu-consumer -ic pvapy:image -pf examples/gpu_photon_counting.py \
         -pc GpuPhotonCounting -pa '{"threshold": 20, "publishEvery": 10}' -oc _ -sc _ -rp 5

Pixels above ``threshold`` (after subtracting ``background``) count as one
photon; the running count image (uint32) stays on the device and is
published as an NTNDArray every ``publishEvery`` frames (it comes back
through an asynchronous copy into pinned memory). The control channel's
``configure`` with ``{"reset": true}`` starts a new sum: the next frame
zeroes the sum in place, on the frame path. (Replacing or freeing a device
array from the control thread could free memory that earlier frames'
kernels, queued on other CUDA streams, still read.)
"""
from pvagpu import pva
from pvagpu.gpu import GpuAdImageProcessor


class GpuPhotonCounting(GpuAdImageProcessor):

    def __init__(self, configDict={}):
        GpuAdImageProcessor.__init__(self, configDict)
        self.threshold = float(configDict.get('threshold', 0))
        self.background = float(configDict.get('background', 0))
        self.publishEvery = max(1, int(configDict.get('publishEvery', 1)))
        self.sumImage = None
        self.resetRequested = False
        self.resetStats()

    def configure(self, configDict):
        if 'threshold' in configDict:
            self.threshold = float(configDict['threshold'])
        if 'background' in configDict:
            self.background = float(configDict['background'])
        if 'publishEvery' in configDict:
            self.publishEvery = max(1, int(configDict['publishEvery']))
        if configDict.get('reset'):
            self.resetRequested = True           # done by the next frame

    def resetStats(self):
        self.nFrames = 0
        self.nPhotons = 0

    def processFrame(self, frame):
        xp = self.xp
        image = frame.image
        if image.ndim == 3:                      # colour: count on the luminance
            image = image.mean(axis=2)
        hits = (image.astype(xp.float32) - self.background) > self.threshold
        if self.sumImage is None or self.sumImage.shape != hits.shape:
            self.sumImage = xp.zeros(hits.shape, dtype=xp.uint32)
            self.resetRequested = False
        elif self.resetRequested:
            self.resetRequested = False
            self.sumImage.fill(0)
        self.sumImage += hits
        self.nPhotons += int(xp.count_nonzero(hits))
        self.nFrames += 1
        if self.nFrames % self.publishEvery == 0:
            return self.sumImage.copy()          # published as an NTNDArray
        return None

    def getStats(self):
        return {'nFrames': self.nFrames, 'nPhotons': self.nPhotons}

    def getStatsPvaTypes(self):
        return {'nFrames': pva.UINT, 'nPhotons': pva.ULONG}
