"""Drop-in for pvapy users (issue 13): processors written the pvapy way run
with their imports changed and nothing else, every frame and every tile
accounted for downstream; pvapy class paths load pvagpu's classes.

The processors are examples/pvapy_tiles.py (split into tiles: PvObject
extra fields, AdImageUtility tiles, NtAttribute, TimeUtility,
FloatWithUnits, NtNdArray output type) and, below, a stitcher and an
annotator written for this suite in the style of pvapy's examples.
"""
import json
import os
import time

import numpy as np
import pytest
from p4p.client.thread import Context
from p4p.server import Server
from p4p.server.thread import SharedPV

from conftest import wait_for
from pvagpu import ntnda, pva
from pvagpu.consumer import Consumer
from pvagpu.errors import ConfigurationError
from pvagpu.hpc import AdImageProcessor
from pvagpu.runtime import loading
from pvagpu.runtime.loading import load_processor_class
from pvagpu.utility import AdImageUtility, FloatWithUnits, TimeUtility

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TILES = os.path.join(REPO, "examples", "pvapy_tiles.py")
NX = NY = 16
TILE = 8
N_FRAMES = 31
RNG = np.random.default_rng(13)
IMAGES = {uid: RNG.integers(0, 60000, (NY, NX), dtype=np.uint16) for uid in range(N_FRAMES + 1)}
QUEUE = "record[queueSize=300]field()"


# --- processors written the pvapy way (imports aside) ----------------------

class StitchProcessor(AdImageProcessor):
    """Stitches the tiles of pvapy_tiles back into frames (as pvapy's stitch example)."""

    def __init__(self, configDict={}):
        AdImageProcessor.__init__(self, configDict)
        self.nx = int(configDict.get('nx', 0))
        self.ny = int(configDict.get('ny', 0))
        self.tileCache = {}
        self.nFramesStitched = 0
        self.nTilesReceived = 0
        self.stitchingTime = 0

    def process(self, pvObject):
        t0 = time.time()
        (frameId, image, nx, ny, nz, colorMode, fieldKey) = self.reshapeNtNdArray(pvObject)
        tileIndexX = pvObject['tileIndexX']
        tileIndexY = pvObject['tileIndexY']
        tiles = self.tileCache.setdefault(frameId, {})
        tiles[(tileIndexX, tileIndexY)] = image
        self.nTilesReceived += 1
        nxTiles, nyTiles = self.nx // nx, self.ny // ny
        if len(tiles) == nxTiles * nyTiles:
            rows = [np.hstack([tiles[(i, j)] for i in range(nxTiles)]) for j in range(nyTiles)]
            stitched = AdImageUtility.generateNtNdArray2D(frameId, np.vstack(rows))
            self.updateOutputChannel(stitched)
            del self.tileCache[frameId]
            self.nFramesStitched += 1
        self.stitchingTime += time.time() - t0
        return pvObject

    def getStats(self):
        return {'nFramesStitched': self.nFramesStitched, 'nTilesReceived': self.nTilesReceived,
                'stitchingTime': FloatWithUnits(self.stitchingTime, 's')}

    def getStatsPvaTypes(self):
        return {'nFramesStitched': pva.UINT, 'nTilesReceived': pva.UINT,
                'stitchingTime': pva.DOUBLE}

    def getOutputPvObjectType(self, pvObject):
        return pva.NtNdArray()


class AnnotateProcessor(AdImageProcessor):
    """Adds attributes to each received frame and replaces its image (as
    pvapy's metadata and moving-average examples do)."""

    def process(self, pvObject):
        (frameId, image, nx, ny, nz, colorMode, fieldKey) = self.reshapeNtNdArray(pvObject)
        frameAttributes = []
        if 'attribute' in pvObject:
            frameAttributes = pvObject['attribute']
        frameTime = TimeUtility.getTimeStampAsFloat(pvObject['timeStamp'])
        frameAttributes.append(pva.NtAttribute('frameSum', pva.PvDouble(float(image.sum()))))
        frameAttributes.append(pva.NtAttribute('frameTime', pva.PvDouble(frameTime)))
        frameAttributes.append(pva.NtAttribute('half', pva.PvUShort(int(image[0, 0]) // 2)))
        pvObject['attribute'] = frameAttributes
        pvObject2 = self.replaceNtNdArrayImage2D(pvObject, frameId, image // 2)
        self.updateOutputChannel(pvObject2)
        return pvObject2


# --- helpers ----------------------------------------------------------------

class Source:
    def __init__(self, name):
        self.name = name
        self.pv = SharedPV(initial=ntnda.value_from_image(IMAGES[0], 0))
        self.server = Server(providers=[{name: self.pv}])

    def post(self, uid):
        self.pv.post(ntnda.value_from_image(IMAGES[uid], uid,
                                            time_stamp=ntnda.TimeStamp(1000 + uid, 0),
                                            data_time_stamp=ntnda.TimeStamp(1000 + uid, 0)))

    def stop(self):
        self.server.stop()


@pytest.fixture
def source(pva_env):
    src = Source("dropin:image")
    yield src
    src.stop()


def post_frames(src, consumer, uids):
    """Post each frame once the consumer received the one before (no squashing)."""
    for uid in uids:
        n = consumer.receiver.counters.n_received
        src.post(uid)
        wait_for(lambda: consumer.receiver.counters.n_received > n, timeout=10,
                 message=f"frame {uid} received")


def tiles_processor():
    cls = load_processor_class(TILES, "PvapyTileProcessor")
    return cls({"tileNx": TILE, "tileNy": TILE})


def check_tiles(tiles):
    """Every tile of frames 1..N_FRAMES once, in order, with its pixels and attributes."""
    keys = [(t["uniqueId"], t["tileIndexX"], t["tileIndexY"]) for t in tiles]
    assert keys == [(f, i, j) for f in range(1, N_FRAMES + 1)
                    for i in range(NX // TILE) for j in range(NY // TILE)]
    for t in tiles:
        frame = ntnda.frame_from_value(t)
        i, j = t["tileIndexX"], t["tileIndexY"]
        expected = IMAGES[t["uniqueId"]][j * TILE:(j + 1) * TILE, i * TILE:(i + 1) * TILE]
        np.testing.assert_array_equal(frame.image, expected)
        assert frame.attribute("tileMean") == pytest.approx(expected.mean(), rel=1e-6)
        assert frame.attribute("frameTime") == 1000 + t["uniqueId"]


# --- tests ----------------------------------------------------------------

@pytest.mark.pva
def test_split_and_stitch_written_the_pvapy_way_lose_nothing(source):
    """pvapy_tiles -> stitcher: 124 of 124 tiles and 31 of 31 frames arrive,
    each the same pixels as sent; statistics made of FloatWithUnits."""
    split = tiles_processor()
    with Consumer(source.name, split, output_channel="dropin:tiles",
                  status_channel="dropin:tiles:status", status_period=0.2) as first:
        wait_for(lambda: first.receiver.connected, timeout=20, message="split connected")
        post_frames(source, first, [0])   # opens the tile record before the others join
        wait_for(lambda: split.nFrames == 1, message="warm-up frame split")
        stitch = StitchProcessor({"nx": NX, "ny": NY})
        with Consumer("dropin:tiles", stitch, output_channel="dropin:stitched",
                      server_queue_size=300) as second, Context("pva", nt=False) as ctx:
            tiles, frames = [], []
            subs = [ctx.monitor("dropin:tiles", tiles.append, request=QUEUE),
                    ctx.monitor("dropin:stitched", frames.append, request=QUEUE)]
            try:
                wait_for(lambda: second.receiver.connected, timeout=20, message="stitch connected")
                wait_for(lambda: tiles, timeout=20, message="tile client connected")
                post_frames(source, first, range(1, N_FRAMES + 1))
                wait_for(lambda: stitch.nFramesStitched == N_FRAMES, timeout=20,
                         message=f"{N_FRAMES} frames stitched")
                wait_for(lambda: len([t for t in tiles if t["uniqueId"] >= 1]) == 4 * N_FRAMES,
                         timeout=20, message="124 tiles at the client")
                wait_for(lambda: frames and frames[-1]["uniqueId"] == N_FRAMES, timeout=20,
                         message="last stitched frame at the client")
            finally:
                for sub in subs:
                    sub.close()
            status = ctx.get("dropin:tiles:status", timeout=10)
        check_tiles([t for t in tiles if t["uniqueId"] >= 1])
        stitched = [f for f in frames if f["uniqueId"] >= 1]
        assert [f["uniqueId"] for f in stitched] == list(range(1, N_FRAMES + 1))
        for f in stitched:
            np.testing.assert_array_equal(ntnda.frame_from_value(f).image, IMAGES[f["uniqueId"]])
        assert first.publisher.n_type_changes == 0 and second.publisher.n_type_changes == 0
        assert first.publisher.counters.n_errors == 0
        assert first.stats()["publisherStats"]["nPublished"] == 4 * (N_FRAMES + 1)
        assert stitch.nTilesReceived == 4 * N_FRAMES
        assert isinstance(split.getStats()["processingTime"], FloatWithUnits)
        assert status["userStats.nTiles"] >= 4 and status["userStats.processingTime"] > 0


@pytest.mark.pva
def test_attributes_added_the_pvapy_way_go_out_typed(source):
    with Consumer(source.name, AnnotateProcessor({}), output_channel="dropin:annotated") as c, \
            Context("pva", nt=False) as ctx:
        out = []
        wait_for(lambda: c.receiver.connected, timeout=20, message="consumer connected")
        post_frames(source, c, [0])
        sub = ctx.monitor("dropin:annotated", out.append, request=QUEUE)
        try:
            wait_for(lambda: out, timeout=20, message="client connected")
            post_frames(source, c, range(1, 6))
            wait_for(lambda: out[-1]["uniqueId"] == 5, message="frame 5 annotated")
        finally:
            sub.close()
    got = [v for v in out if v["uniqueId"] >= 1]
    assert [v["uniqueId"] for v in got] == [1, 2, 3, 4, 5]
    from pvagpu.pva.type_text import variant_types_and_union_members_from_tostr
    for v in got:
        frame = ntnda.frame_from_value(v)
        image = IMAGES[v["uniqueId"]]
        np.testing.assert_array_equal(frame.image, image // 2)
        assert frame.attribute("frameSum") == float(image.sum())
        assert frame.attribute("frameTime") == 1000 + v["uniqueId"]
        assert frame.attribute("half") == image[0, 0] // 2
        codes = [variant_types_and_union_members_from_tostr(a)[0]["value"]
                 for a in v["attribute"]]
        assert codes == ["i", "d", "d", "H"]   # ColorMode int32, then as built


@pytest.mark.pva
def test_pvapy_tiles_through_pvagpu_consumer(source, processes, pva_env):
    """The example through the command line: every tile of every frame
    arrives, the status channel carries its FloatWithUnits statistics."""
    proc = processes.start(
        "pvagpu-consumer", "-ic", source.name, "-oc", "cli:tiles", "-sc", "cli:status",
        "-pf", TILES, "-pc", "PvapyTileProcessor",
        "-pa", json.dumps({"tileNx": TILE, "tileNy": TILE}), "-rp", "0", "-dc")
    with Context("pva", nt=False) as ctx:
        def status():
            try:
                return ctx.get("cli:status", timeout=1)
            except Exception:
                return None
        wait_for(lambda: status() is not None and status()["receiverStats.nReceived"] >= 1,
                 timeout=30, message="consumer connected")
        source.post(0)                                   # opens the tile record
        tiles = []
        sub = None
        try:
            def subscribed():
                nonlocal sub
                if sub is None:
                    sub = ctx.monitor("cli:tiles", tiles.append, request=QUEUE)
                return tiles
            wait_for(subscribed, timeout=30, message="tile client connected")
            for uid in range(1, N_FRAMES + 1):
                source.post(uid)
                wait_for(lambda: tiles[-1]["uniqueId"] == uid, timeout=10,
                         message=f"tiles of frame {uid}")
            wait_for(lambda: len([t for t in tiles if t["uniqueId"] >= 1]) == 4 * N_FRAMES,
                     timeout=10, message="124 tiles")
        finally:
            if sub is not None:
                sub.close()
        check_tiles([t for t in tiles if t["uniqueId"] >= 1])
        final = wait_for(lambda: (lambda s: s if s and s["userStats.nFrames"] >= N_FRAMES + 1
                                  else None)(status()), timeout=15, message="status caught up")
        assert final["userStats.nTiles"] == 4 * (N_FRAMES + 1)
        assert final["userStats.processingTime"] > 0 and final["userStats.tileRate"] > 0
    assert proc.poll() is None, proc.stdout.read()


DOCUMENTED = ["pvapy.hpc.userDataProcessor.UserDataProcessor",
              "pvapy.hpc.adImageProcessor.AdImageProcessor",
              "pvapy.hpc.adOutputFileProcessor.AdOutputFileProcessor",
              "pvapy.hpc.adImageDataEncryptor.AdImageDataEncryptor",
              "pvapy.hpc.adImageDataDecryptor.AdImageDataDecryptor",
              "pvapy.hpc.dataEncryptor.DataEncryptor",
              "pvapy.hpc.dataDecryptor.DataDecryptor",
              "pvapy.hpc.userMpDataProcessor:UserMpDataProcessor"]


@pytest.mark.parametrize("class_path", DOCUMENTED)
def test_pvapy_class_paths_load_pvagpus_classes_even_with_pvapy_installed(class_path, caplog,
                                                                          monkeypatch):
    pytest.importorskip("pvapy.hpc.userDataProcessor")      # pvapy is there to be preferred
    monkeypatch.setattr(loading, "_announced", set())
    with caplog.at_level("WARNING", logger="pvagpu.runtime.loading"):
        cls = load_processor_class(None, class_path)
        load_processor_class(None, class_path)
    name = class_path.replace(":", ".").rpartition(".")[2]
    import pvagpu.hpc
    assert cls is getattr(pvagpu.hpc, name) and cls.__module__.startswith("pvagpu.hpc.")
    lines = [r.getMessage() for r in caplog.records if class_path in r.getMessage()]
    assert len(lines) == 1 and f"pvagpu.hpc:{name}" in lines[0]


def test_pvapy_classes_pvagpu_lacks_are_clear_errors():
    with pytest.raises(ConfigurationError, match="Hdf5OutputProcessor"):
        load_processor_class(None, "pvapy.hpc.hdf5AdImageWriter.Hdf5AdImageWriter")
    with pytest.raises(ConfigurationError, match="no class 'DataCollector'.*UserDataProcessor"):
        load_processor_class(None, "pvapy.hpc.dataCollector.DataCollector")


@pytest.mark.pva
def test_a_pvapy_class_path_runs_in_the_consumer(source):
    with Consumer(source.name, processor_class="pvapy.hpc.adImageProcessor.AdImageProcessor",
                  output_channel="dropin:passthrough") as c, Context("pva", nt=False) as ctx:
        assert type(c.processor) is AdImageProcessor
        wait_for(lambda: c.receiver.connected, timeout=20, message="consumer connected")
        post_frames(source, c, [1, 2, 3])
        wait_for(lambda: c.stats()["processorStats"]["nProcessed"] == 3, message="3 processed")
        got = ctx.get("dropin:passthrough", timeout=10)
    assert got["uniqueId"] == 3 and c.final_stats["processorStats"]["nErrors"] == 0
