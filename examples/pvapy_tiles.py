"""Tile processor written the pvapy way; only its imports name pvagpu.

Splits every frame into tiles of ``tileNx`` x ``tileNy`` pixels and
publishes each tile as an NTNDArray with its position in extra fields
(``tileIndexX``, ``tileIndexY``, as pvapy's split example does) and two
attributes: the tile's mean and the frame's time stamp as seconds. The
constructs are pvapy's: ``pva.PvObject`` extra fields,
``AdImageUtility.generateNtNdArray2D``, ``pva.NtAttribute`` with
``pva.PvFloat``/``pva.PvDouble``, ``TimeUtility``, ``FloatWithUnits``
statistics and ``pva.NtNdArray(extraFields)`` as the output type.

Under pvapy the same class runs with these imports instead:

    import pvaccess as pva
    from pvapy.hpc.adImageProcessor import AdImageProcessor
    from pvapy.utility.adImageUtility import AdImageUtility
    from pvapy.utility.floatWithUnits import FloatWithUnits
    from pvapy.utility.timeUtility import TimeUtility

Run it:

    pvagpu-sim-server -cn sim:image -nx 256 -ny 256 -fps 10 &
    pvagpu-consumer -ic sim:image -oc tiles:output -pf examples/pvapy_tiles.py \\
        -pc PvapyTileProcessor -pa '{"tileNx": 128, "tileNy": 128}' -rp 5 -dc
"""
import time

from pvagpu import pva
from pvagpu.hpc import AdImageProcessor
from pvagpu.utility import AdImageUtility, FloatWithUnits, TimeUtility


class PvapyTileProcessor(AdImageProcessor):

    def __init__(self, configDict={}):
        AdImageProcessor.__init__(self, configDict)
        self.tileNx = 0
        self.tileNy = 0
        self.nFrames = 0
        self.nTiles = 0
        self.nSkipped = 0
        self.processingTime = 0
        self.lastFrameAge = 0
        self.configure(configDict)
        self.logger.debug('Created PvapyTileProcessor')

    def configure(self, configDict):
        self.logger.debug('Configuration update: %s', configDict)
        if 'tileNx' in configDict:
            self.tileNx = int(configDict.get('tileNx'))
        if 'tileNy' in configDict:
            self.tileNy = int(configDict.get('tileNy'))

    def process(self, pvObject):
        t0 = time.time()
        (frameId, image, nx, ny, nz, colorMode, fieldKey) = self.reshapeNtNdArray(pvObject)
        if nx is None or nz or not self.tileNx or not self.tileNy:
            self.logger.debug('Frame id %s is not split into tiles', frameId)
            self.nSkipped += 1
            return pvObject
        frameTime = TimeUtility.getTimeStampAsFloat(pvObject['timeStamp'])
        nxTiles = nx // self.tileNx
        nyTiles = ny // self.tileNy
        for i in range(0, nxTiles):
            for j in range(0, nyTiles):
                tile = image[j*self.tileNy:(j+1)*self.tileNy, i*self.tileNx:(i+1)*self.tileNx]
                tileCoordinates = pva.PvObject({'tileIndexX': pva.INT, 'tileIndexY': pva.INT},
                                               {'tileIndexX': i, 'tileIndexY': j})
                tilePvObject = AdImageUtility.generateNtNdArray2D(
                    frameId, tile, extraFieldsPvObject=tileCoordinates)
                attrs = tilePvObject['attribute']
                attrs.append(pva.NtAttribute('tileMean', pva.PvFloat(float(tile.mean()))))
                attrs.append(pva.NtAttribute('frameTime', pva.PvDouble(frameTime)))
                tilePvObject['attribute'] = attrs
                self.updateOutputChannel(tilePvObject)
                self.nTiles += 1
        t1 = time.time()
        self.nFrames += 1
        self.processingTime += (t1 - t0)
        self.lastFrameAge = t1 - frameTime
        return pvObject

    def resetStats(self):
        self.nFrames = 0
        self.nTiles = 0
        self.nSkipped = 0
        self.processingTime = 0

    def getStats(self):
        tileRate = 0
        if self.processingTime > 0:
            tileRate = self.nTiles / self.processingTime
        return {
            'nFrames': self.nFrames,
            'nTiles': self.nTiles,
            'nSkipped': self.nSkipped,
            'processingTime': FloatWithUnits(self.processingTime, 's'),
            'tileRate': FloatWithUnits(tileRate, 'tps'),
            'lastFrameAge': FloatWithUnits(self.lastFrameAge, 's'),
        }

    def getStatsPvaTypes(self):
        return {
            'nFrames': pva.UINT,
            'nTiles': pva.UINT,
            'nSkipped': pva.UINT,
            'processingTime': pva.DOUBLE,
            'tileRate': pva.DOUBLE,
            'lastFrameAge': pva.DOUBLE,
        }

    def getOutputPvObjectType(self, pvObject):
        return pva.NtNdArray({'tileIndexX': pva.INT, 'tileIndexY': pva.INT})
