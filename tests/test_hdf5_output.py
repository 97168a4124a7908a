"""Hdf5OutputProcessor and pvagpu.hdf5: files read back with h5py +
hdf5plugin bit for bit against the frames sent; compressed frames stored as
they arrived; metadata; SWMR readers; rollover; reconfigure; write errors
and a full disk; end to end from pvagpu-sim-server through pvagpu-consumer."""
import errno
import json
import signal
import subprocess
import sys
import textwrap
import threading
from collections import namedtuple

import h5py
import hdf5plugin
import numpy as np
import pytest
from p4p.client.thread import Context

from conftest import wait_for
from pvagpu import codecs, ntnda
from pvagpu.errors import ConfigurationError
from pvagpu.hdf5.file import FrameFile
from pvagpu.hpc import Hdf5OutputProcessor

DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
FILTER_IDS = {"bslz4": 32008, "lz4": 32004, "lz4hdf5": 32004, "zlib": 1, "blosc": 32001}
DATA = "/entry/data/data"
ATTRS = "/entry/instrument/NDAttributes"


def image(dtype, uid=1, shape=(24, 40)):
    """A detector-like frame that differs from frame to frame."""
    rng = np.random.default_rng(uid)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.normal(uid, 3, shape).astype(dtype)
    return rng.poisson(5 + uid % 7, shape).astype(dtype)


def frame(img, uid, codec="", **fields):
    return ntnda.value_from_image(img, uid, codec=codec, **fields)


@pytest.fixture
def make(tmp_path):
    """Processors writing to tmp_path; each is stopped at the end."""
    made = []

    def make_processor(**config):
        config.setdefault("outputDirectory", str(tmp_path))
        p = Hdf5OutputProcessor(config)
        made.append(p)
        return p
    yield make_processor
    for p in made:
        p.stop()


def write(p, values):
    """Send ``values``, then close the file (configure() does) and wait."""
    for v in values:
        p.process(v)
    p.configure({})
    assert p.flush(timeout=30)
    return p.getStats()


def read_frames(path, swmr=False):
    with h5py.File(path, "r", swmr=swmr) as f:
        return f[DATA][...], f[ATTRS + "/NDArrayUniqueId"][...]


def only_file(directory):
    files = sorted(directory.glob("*.h5"))
    assert len(files) == 1, files
    return files[0]


# -- compressed frames go in as they arrived ---------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("codec", ["bslz4", "lz4"])
def test_compressed_frames_are_stored_as_they_arrived(make, tmp_path, codec, dtype):
    images = [image(dtype, uid) for uid in range(1, 6)]
    values = [frame(img, uid, codec) for uid, img in enumerate(images, 1)]
    stats = write(make(), values)
    assert stats["nDirect"] == 5 and stats["nDecoded"] == stats["nCompressed"] == 0
    assert stats["nFramesWritten"] == 5 and stats["nWriteErrors"] == 0
    with h5py.File(only_file(tmp_path), "r") as f:
        dset = f[DATA]
        assert dset.shape == (5, 24, 40) and dset.dtype == np.dtype(dtype)
        assert dset.chunks == (1, 24, 40)
        assert dset.id.get_create_plist().get_filter(0)[0] == FILTER_IDS[codec]
        for k, (img, value) in enumerate(zip(images, values)):
            np.testing.assert_array_equal(dset[k], img)
            payload = ntnda.payload(value)[0].tobytes()
            chunk = dset.id.read_direct_chunk((k, 0, 0))[1]
            assert chunk.endswith(payload)  # the payload itself, behind the filter's header
            assert len(chunk) - len(payload) == (12 if codec == "bslz4" else 16)
        assert stats["nBytesWritten"] == sum(
            dset.id.get_chunk_info(k).size for k in range(5))


@pytest.mark.parametrize("codec", ["lz4hdf5", "zlib", "blosc"])
def test_other_filter_framings_are_stored_as_they_arrived(make, tmp_path, codec):
    images = [image("uint16", uid) for uid in range(1, 4)]
    values = [frame(img, uid, codec) for uid, img in enumerate(images, 1)]
    assert write(make(), values)["nDirect"] == 3
    with h5py.File(only_file(tmp_path), "r") as f:
        assert f[DATA].id.get_create_plist().get_filter(0)[0] == FILTER_IDS[codec]
        for k, (img, value) in enumerate(zip(images, values)):
            np.testing.assert_array_equal(f[DATA][k], img)
            assert f[DATA].id.read_direct_chunk((k, 0, 0))[1] == ntnda.payload(value)[0].tobytes()


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int32", "float64"])
def test_hdf5s_own_filters_frame_chunks_as_we_do(tmp_path, dtype):
    """HDF5's bitshuffle filter, compressing an image itself, stores exactly
    the 12-byte header + the areaDetector bslz4 payload; its LZ4 filter
    stores the 12-byte header + one block (stored size + LZ4 data; the LZ4
    library inside hdf5plugin may pick other matches than python-lz4)."""
    img = image(dtype, 3, (64, 100))
    with h5py.File(tmp_path / "ref.h5", "w") as f:
        bs = f.create_dataset("bs", data=img[None], chunks=(1, *img.shape),
                              **hdf5plugin.Bitshuffle(cname="lz4"))
        lz = f.create_dataset("lz", data=img[None], chunks=(1, *img.shape), **hdf5plugin.LZ4())
        bs_chunk = bs.id.read_direct_chunk((0, 0, 0))[1]
        lz_chunk = lz.id.read_direct_chunk((0, 0, 0))[1]
    block_bytes = max(128, 8192 // img.itemsize // 8 * 8) * img.itemsize
    size = img.nbytes.to_bytes(8, "big")
    assert bs_chunk == size + block_bytes.to_bytes(4, "big") + codecs.encode("bslz4", img).tobytes()
    assert lz_chunk[:12] == size + img.nbytes.to_bytes(4, "big")
    assert int.from_bytes(lz_chunk[12:16], "big") == len(lz_chunk) - 16
    block = np.frombuffer(lz_chunk[16:], np.uint8)
    if block.size == img.nbytes:  # incompressible: the filter stored the bytes
        assert block.tobytes() == img.tobytes()
    else:
        np.testing.assert_array_equal(codecs.decode("lz4", block, img.dtype, img.nbytes),
                                      img.reshape(-1))


def test_hdf5_framed_payloads_from_pvapy_sim_server_go_in_unchanged(make, tmp_path):
    """pvapy-ad-sim-server -hcm sends HDF5 chunks (with the filter header)
    as "bslz4" and "lz4"; they are stored without a second header."""
    img = image("uint16", 2)
    bs = codecs.encode("bslz4", img, hdf5_header=True)
    lz = codecs.encode("lz4hdf5", img)
    for codec, payload in (("bslz4", bs), ("lz4", lz)):
        value = ntnda.value_from_compressed(payload, 1, nx=40, ny=24, dtype=np.uint16,
                                            codec=codec)
        p = make(outputFileNameFormat=f"{codec}.h5")
        assert write(p, [value])["nDirect"] == 1
        with h5py.File(tmp_path / f"{codec}.h5", "r") as f:
            np.testing.assert_array_equal(f[DATA][0], img)
            assert f[DATA].id.read_direct_chunk((0, 0, 0))[1] == payload.tobytes()


# -- raw frames, re-compression and decoding ---------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("compression", ["none", "bslz4", "lz4", "gzip"])
def test_raw_frames_as_they_are_or_compressed_on_request(make, tmp_path, compression, dtype):
    images = [image(dtype, uid) for uid in range(1, 4)]
    stats = write(make(compression=compression),
                  [frame(img, uid) for uid, img in enumerate(images, 1)])
    assert stats["nFramesWritten"] == 3
    assert stats["nDirect"] == (3 if compression == "none" else 0)
    assert stats["nCompressed"] == (0 if compression == "none" else 3)
    with h5py.File(only_file(tmp_path), "r") as f:
        filters = f[DATA].id.get_create_plist()
        assert filters.get_nfilters() == (0 if compression == "none" else 1)
        np.testing.assert_array_equal(f[DATA][...], np.stack(images))


def test_frames_that_cannot_go_in_as_they_are_are_decoded(make, tmp_path):
    """A codec without an HDF5 filter (jpeg), or another codec than the
    file's, is decoded and written through the file's filter."""
    imgs = [image("uint8", uid) for uid in range(1, 5)]
    p = make(compression="gzip", outputFileNameFormat="f{fileNumber}.h5")
    stats = write(p, [frame(imgs[0], 1, "bslz4"), frame(imgs[1], 2, "lz4"),
                      frame(imgs[2], 3, ""), frame(imgs[3], 4, "bslz4")])
    assert (stats["nDirect"], stats["nDecoded"], stats["nCompressed"]) == (2, 1, 2)
    with h5py.File(tmp_path / "f1.h5", "r") as f:
        assert f[DATA].id.get_create_plist().get_filter(0)[0] == 32008  # the first frame's
        np.testing.assert_array_equal(f[DATA][...], np.stack(imgs))
    jpeg = frame(imgs[0], 5, "jpeg")
    stats = write(p, [jpeg])
    assert stats["nDecoded"] == 2
    with h5py.File(tmp_path / "f2.h5", "r") as f:
        assert f[DATA].compression == "gzip"
        np.testing.assert_array_equal(f[DATA][0], ntnda.frame_from_value(jpeg).image)


def test_keep_compression_false_decodes_and_recompresses(make, tmp_path):
    imgs = [image("uint16", uid) for uid in range(1, 4)]
    stats = write(make(keepCompression=False, compression="lz4"),
                  [frame(img, uid, "bslz4") for uid, img in enumerate(imgs, 1)])
    assert (stats["nDirect"], stats["nDecoded"], stats["nCompressed"]) == (0, 3, 3)
    with h5py.File(only_file(tmp_path), "r") as f:
        assert f[DATA].id.get_create_plist().get_filter(0)[0] == 32004
        np.testing.assert_array_equal(f[DATA][...], np.stack(imgs))


def test_colour_frames(make, tmp_path):
    """RGB1 payloads are in image order and go in as they are; RGB2/RGB3
    ones are decoded; every file holds (ny, nx, 3) images."""
    rgb = image("uint8", 1, (12, 10, 3))
    for mode in (2, 3, 4):
        p = make(outputFileNameFormat=f"mode{mode}.h5")
        stats = write(p, [frame(rgb, 1, "bslz4", color_mode=mode),
                          frame(rgb, 2, "", color_mode=mode)])
        assert stats["nFramesWritten"] == 2
        if mode == 2:  # bslz4 as it came, then the raw frame compressed into that file
            assert (stats["nDirect"], stats["nDecoded"], stats["nCompressed"]) == (1, 0, 1)
        else:  # decoded into an uncompressed file, then the raw frame reordered into it
            assert (stats["nDirect"], stats["nDecoded"], stats["nCompressed"]) == (0, 1, 0)
        with h5py.File(tmp_path / f"mode{mode}.h5", "r") as f:
            assert f[DATA].shape == (2, 12, 10, 3)
            np.testing.assert_array_equal(f[DATA][0], rgb)
            np.testing.assert_array_equal(f[DATA][1], rgb)
            assert list(f[ATTRS + "/ColorMode"][...]) == [mode, mode]


def test_a_shape_or_dtype_change_starts_a_new_file(make, tmp_path):
    a, b, c = image("uint16", 1), image("uint16", 2, (8, 8)), image("float32", 3, (8, 8))
    stats = write(make(outputFileNameFormat="{fileNumber}_{uniqueId}.h5"),
                  [frame(a, 1, "bslz4"), frame(b, 2, "bslz4"), frame(c, 3, "bslz4")])
    assert stats["nFilesWritten"] == 3 and stats["nFramesWritten"] == 3
    for name, img in (("1_1.h5", a), ("2_2.h5", b), ("3_3.h5", c)):
        data, uids = read_frames(tmp_path / name)
        np.testing.assert_array_equal(data[0], img)


def test_a_bad_frame_is_refused_and_counted(make, tmp_path):
    good = frame(image("uint16", 1), 1, "lz4")
    bad = frame(image("uint16", 2), 2, "lz4")
    bad["compressedSize"] = 5  # disagrees with the payload
    unknown = frame(image("uint16", 3), 3, "lz4")
    unknown["codec.name"] = "nosuchcodec"
    p = make()
    stats = write(p, [good, bad, unknown, frame(image("uint16", 4), 4, "lz4")])
    assert stats["nFrameErrors"] == 2 and stats["nFramesWritten"] == 2
    assert "nosuchcodec" in stats["lastErrorMessage"]
    data, uids = read_frames(only_file(tmp_path))
    assert list(uids) == [1, 4]
    np.testing.assert_array_equal(data[1], image("uint16", 4))


def test_verify_compressed_refuses_a_corrupt_payload(make, tmp_path):
    value = frame(image("uint16", 1), 1, "lz4")
    payload = ntnda.payload(value)[0].copy()
    payload[len(payload) // 2:] = 0xFF
    corrupt = ntnda.value_from_compressed(payload, 2, nx=40, ny=24, dtype=np.uint16, codec="lz4")
    stats = write(make(verifyCompressed=True), [value, corrupt])
    assert stats["nFrameErrors"] == 1 and stats["nDirect"] == 1
    assert list(read_frames(only_file(tmp_path))[1]) == [1]


def test_the_default_framing_check_refuses_a_broken_bslz4_payload(make, tmp_path):
    """By default (verifyCompressed "framing") a bslz4 payload's blocks are
    walked before it is stored: a truncated one is refused and counted, and
    leaves no file behind; "none" stores it as it came."""
    good = frame(image("uint16", 2), 2, "bslz4")
    payload = ntnda.payload(frame(image("uint16", 1), 1, "bslz4"))[0]
    truncated = ntnda.value_from_compressed(payload[:-5], 1, nx=40, ny=24, dtype=np.uint16,
                                            codec="bslz4")
    p = make(outputFileNameFormat="{uniqueId}.h5")
    assert p.settings.verifyCompressed == "framing"
    stats = write(p, [truncated, good])
    assert stats["nFrameErrors"] == 1 and stats["nDirect"] == 1
    assert "CorruptPayloadError" in stats["lastErrorMessage"]
    assert [f.name for f in tmp_path.glob("*.h5")] == ["2.h5"]  # none for the refused frame
    np.testing.assert_array_equal(read_frames(tmp_path / "2.h5")[0][0], image("uint16", 2))
    p.configure({"verifyCompressed": False, "outputFileNameFormat": "none{uniqueId}.h5"})
    assert p.settings.verifyCompressed == "none"
    assert write(p, [truncated])["nDirect"] == 2
    with h5py.File(tmp_path / "none1.h5", "r") as f:
        assert f[DATA].id.read_direct_chunk((0, 0, 0))[1][12:] == payload[:-5].tobytes()
    p.configure({"verifyCompressed": True})
    assert p.settings.verifyCompressed == "decode"
    with pytest.raises(ConfigurationError, match="verifyCompressed"):
        p.configure({"verifyCompressed": "sometimes"})


# -- metadata ------------------------------------------------------------------------

def test_unique_id_timestamps_and_attributes_are_stored_per_frame(make, tmp_path):
    ts = [ntnda.TimeStamp(1700000000 + k, 1000 * k + 7, k) for k in range(3)]
    dts = [ntnda.TimeStamp(1600000000 + k, 999_999_999 - k, 10 + k) for k in range(3)]
    attrs = [
        [{"name": "Temperature", "value": ("d", 21.5)}, {"name": "Gain", "value": ("i", 3)},
         {"name": "Mode", "value": ("s", "fast")}, {"name": "Armed", "value": ("?", True)}],
        [{"name": "Temperature", "value": ("d", 22.5)}, {"name": "Gain", "value": ("i", 4)},
         {"name": "Mode", "value": ("s", "é" * 300)}, {"name": "Late", "value": ("i", 1)}],
        [{"name": "Temperature", "value": ("s", "n/a")}],
    ]
    values = [frame(image("uint16", uid), uid + 100, "bslz4", time_stamp=ts[uid],
                    data_time_stamp=dts[uid], attributes=attrs[uid]) for uid in range(3)]
    p = make()
    write(p, values)
    with h5py.File(only_file(tmp_path), "r") as f:
        assert f["/entry"].attrs["NX_class"] == "NXentry"
        assert f["/entry/data"].attrs["NX_class"] == "NXdata"
        assert f["/entry/data"].attrs["signal"] == "data"
        assert f["/entry/instrument"].attrs["NX_class"] == "NXinstrument"
        g = f[ATTRS]
        assert g.attrs["NX_class"] == "NXcollection"
        assert list(g["NDArrayUniqueId"]) == [100, 101, 102]
        assert list(g["NDArrayEpicsTSSec"]) == [t.secondsPastEpoch for t in ts]
        assert list(g["NDArrayEpicsTSnSec"]) == [t.nanoseconds for t in ts]
        assert list(g["NDArrayEpicsTSUserTag"]) == [t.userTag for t in ts]
        assert list(g["NDArrayDataTSSec"]) == [t.secondsPastEpoch for t in dts]
        assert list(g["NDArrayDataTSnSec"]) == [t.nanoseconds for t in dts]
        assert list(g["NDArrayDataTSUserTag"]) == [t.userTag for t in dts]
        np.testing.assert_allclose(g["NDArrayTimeStamp"][...], [t.seconds for t in dts])
        np.testing.assert_array_equal(g["Temperature"][...], [21.5, 22.5, np.nan])
        assert list(g["Gain"]) == [3, 4, 0]
        assert g["Mode"][0] == b"fast" and g["Mode"][1] == ("é" * 300).encode()[:256]
        assert list(g["Armed"]) == [True, False, False]
        assert list(g["ColorMode"]) == [0, 0, 0]
        assert "Late" not in g  # SWMR: no new datasets after the first frame
    # frame 2: Late; frame 3: Gain, Mode, Armed missing, Temperature of another type
    # (missing ones are not counted; unstorable or unknown ones are)
    assert p.getStats()["nAttributesDropped"] == 2


# -- SWMR ------------------------------------------------------------------------------

SWMR_READER = textwrap.dedent("""
    import sys, time
    import h5py, hdf5plugin, numpy as np
    path, n = sys.argv[1], int(sys.argv[2])
    with h5py.File(path, "r", swmr=True) as f:
        data, uids = f["/entry/data/data"], f["/entry/instrument/NDAttributes/NDArrayUniqueId"]
        seen = 0
        deadline = time.monotonic() + 60
        while seen < n and time.monotonic() < deadline:
            data.refresh(); uids.refresh()
            count = min(data.shape[0], uids.shape[0])
            for k in range(seen, count):
                assert (data[k] == uids[k]).all(), (k, uids[k])
            if count > seen:
                seen = count
                print(seen, flush=True)
            else:
                time.sleep(0.005)
    """)


def test_a_swmr_reader_sees_every_frame_while_the_file_grows(make, tmp_path):
    (tmp_path / "reader.py").write_text(SWMR_READER)
    p = make(compression="none", flushInterval=0.0)
    n = 12

    def send(uid):
        p.process(frame(np.full((16, 16), uid, np.uint16), uid, "bslz4"))

    send(1)
    wait_for(lambda: p.getStats()["nFramesWritten"] == 1 and p.currentFile, timeout=30)
    path = p.currentFile
    reader = subprocess.Popen([sys.executable, str(tmp_path / "reader.py"), path, str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # lock step: frame k+1 is sent only after the reader has seen frame k,
        # so every count the reader reports was read from the open file
        for uid in range(1, n + 1):
            if uid > 1:
                send(uid)
            line = reader.stdout.readline()
            assert line.strip() == str(uid), line + reader.stdout.read()
            assert p.currentFile == path
        assert reader.wait(timeout=30) == 0
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    p.stop()
    data, uids = read_frames(path)  # closed cleanly: readable without SWMR
    assert list(uids) == list(range(1, n + 1))


def test_files_are_flushed_at_most_every_flush_interval_and_at_the_latest_after_it(
        make, monkeypatch):
    """A stream the writer keeps up with does not flush after every frame
    (each flush writes every metadata dataset); a frame that no other frame
    follows is still flushed once flushInterval has passed."""
    flushes = []
    real_flush = FrameFile.flush

    def counted_flush(self):
        flushes.append(self.n_frames)
        return real_flush(self)
    monkeypatch.setattr(FrameFile, "flush", counted_flush)
    p = make(flushInterval=3600.0)
    for uid in range(1, 21):
        p.process(frame(image("uint16", uid), uid, "bslz4"))
        wait_for(lambda: p.getStats()["nFramesWritten"] == uid, timeout=30)  # caught up
    assert flushes == []
    assert p.flush() and flushes == [20]
    p.configure({"flushInterval": 0.2})
    p.process(frame(image("uint16", 21), 21, "bslz4"))
    wait_for(lambda: flushes[-1:] == [1], timeout=30, message="the timed flush")


# -- rollover, configure, stop ---------------------------------------------------------

def test_rollover_every_n_frames_and_every_n_bytes(make, tmp_path):
    imgs = [image("uint16", uid) for uid in range(1, 8)]
    values = [frame(img, uid) for uid, img in enumerate(imgs, 1)]
    stats = write(make(framesPerFile=3, outputFileNameFormat="n_{uniqueId:03}.h5"), values)
    assert stats["nFilesWritten"] == 3
    for name, uids in (("n_001.h5", [1, 2, 3]), ("n_004.h5", [4, 5, 6]), ("n_007.h5", [7])):
        data, stored = read_frames(tmp_path / name)
        assert list(stored) == uids
        np.testing.assert_array_equal(data, np.stack([imgs[u - 1] for u in uids]))
    limit = 2 * imgs[0].nbytes + 10  # two raw frames per file
    stats = write(make(bytesPerFile=limit, outputFileNameFormat="b{fileNumber}.h5"), values)
    assert stats["nFilesWritten"] == 4
    assert [list(read_frames(tmp_path / f"b{k}.h5")[1]) for k in (1, 2, 3, 4)] == \
        [[1, 2], [3, 4], [5, 6], [7]]


def test_an_existing_file_is_never_overwritten(make, tmp_path):
    (tmp_path / "same.h5").write_bytes(b"precious")
    stats = write(make(outputFileNameFormat="same.h5", framesPerFile=1),
                  [frame(image("uint8", uid), uid) for uid in (1, 2)])
    assert stats["nFilesWritten"] == 2
    assert (tmp_path / "same.h5").read_bytes() == b"precious"
    assert list(read_frames(tmp_path / "same-1.h5")[1]) == [1]
    assert list(read_frames(tmp_path / "same-2.h5")[1]) == [2]


def test_configure_closes_the_file_and_applies_to_later_frames(make, tmp_path):
    p = make(outputFileNameFormat="a{uniqueId}.h5")
    for uid in (1, 2):
        p.process(frame(image("uint16", uid), uid))
    p.configure({"outputFileNameFormat": "b{uniqueId}.h5", "compression": "gzip",
                 "outputDirectory": str(tmp_path / "new")})
    for uid in (3, 4):
        p.process(frame(image("uint16", uid), uid))
    assert p.flush()
    assert list(read_frames(tmp_path / "a1.h5")[1]) == [1, 2]  # closed by configure()
    with h5py.File(tmp_path / "new" / "b3.h5", "r") as f:
        assert f[DATA].compression == "gzip" and list(f[ATTRS + "/NDArrayUniqueId"]) == [3, 4]
    with pytest.raises(ConfigurationError, match="compression"):
        p.configure({"compression": "zstd", "framesPerFile": 2})
    with pytest.raises(ConfigurationError, match="outputFileNameFormat"):
        p.configure({"outputFileNameFormat": "x{nosuchkey}.h5"})
    with pytest.raises(ConfigurationError, match="outputFileNameFormat"):
        p.configure({"outputFileNameFormat": "frames.tiff"})
    with pytest.raises(ConfigurationError, match="writerQueueSize"):
        p.configure({"writerQueueSize": 3})
    assert p.settings.compression == "gzip" and p.settings.framesPerFile == 0


def test_stop_writes_the_queue_and_closes_the_file(tmp_path):
    p = Hdf5OutputProcessor({"outputDirectory": str(tmp_path)})
    for uid in range(1, 21):
        p.process(frame(image("uint16", uid), uid, "bslz4"))
    p.stop()
    assert p.getStats()["nFramesWritten"] == 20 and p.currentFile == ""
    data, uids = read_frames(only_file(tmp_path))  # no swmr=True needed: closed
    assert list(uids) == list(range(1, 21))


def test_a_slow_disk_shows_as_queue_overruns_never_as_a_blocked_frame_path(make, tmp_path,
                                                                          monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real_append = FrameFile.append

    def slow_append(self, record):
        entered.set()
        release.wait(30)
        return real_append(self, record)
    monkeypatch.setattr(FrameFile, "append", slow_append)
    p = make(writerQueueSize=2)
    p.process(frame(image("uint8", 1), 1))
    assert entered.wait(30)  # the writer is stuck on frame 1
    for uid in range(2, 11):  # returns at once although nothing can be written
        p.process(frame(image("uint8", uid), uid))
    stats = p.getStats()
    # frame 1 is in the writer's hands, 2 and 3 in the queue, 4..10 overran
    assert stats["nQueueOverruns"] == 7 and stats["queueLength"] == 2
    release.set()
    stats = write(p, [])
    assert stats["nFramesWritten"] == 3 and stats["nQueueOverruns"] == 7
    p.resetStats()
    assert p.getStats()["nQueueOverruns"] == 0 and p.getStats()["nFramesWritten"] == 0


def test_stats_types_cover_every_stat(make):
    p = make()
    assert set(p.getStats()) == set(p.getStatsPvaTypes())


# -- write errors and a full disk ---------------------------------------------------------

def test_a_write_error_is_counted_and_the_next_frame_tries_again(make, tmp_path, monkeypatch,
                                                                 caplog):
    real_append = FrameFile.append
    failures = iter([False, True, False, False])

    def flaky_append(self, record):
        if next(failures):
            raise OSError(errno.EIO, "injected I/O error")
        return real_append(self, record)
    monkeypatch.setattr(FrameFile, "append", flaky_append)
    imgs = [image("uint16", uid) for uid in range(1, 5)]
    stats = write(make(outputFileNameFormat="f{fileNumber}.h5"),
                  [frame(img, uid, "bslz4") for uid, img in enumerate(imgs, 1)])
    assert stats["nWriteErrors"] == 1 and stats["nFramesWritten"] == 3
    assert "injected I/O error" in stats["lastErrorMessage"]
    assert "injected I/O error" in caplog.text
    # the file with the error was closed cleanly; frame 3 started a new one
    assert list(read_frames(tmp_path / "f1.h5")[1]) == [1]
    data, uids = read_frames(tmp_path / "f2.h5")
    assert list(uids) == [3, 4]
    np.testing.assert_array_equal(data, np.stack(imgs[2:]))


def test_a_nearly_full_disk_stops_writing_before_hdf5_runs_out(make, tmp_path, monkeypatch):
    import pvagpu.hdf5.writer as module
    free = {"bytes": 10**12}
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(module.shutil, "disk_usage",
                        lambda path: usage(10**13, 0, free["bytes"]))
    p = make(minFreeBytes=10**6, outputFileNameFormat="f{fileNumber}.h5")
    stats = write(p, [frame(image("uint16", 1), 1)])
    free["bytes"] = 10**6 + 100  # less than the reserve plus one frame
    p.process(frame(image("uint16", 2), 2))
    wait_for(lambda: p.getStats()["nWriteErrors"] == 1, timeout=30)
    assert "disk nearly full" in p.getStats()["lastErrorMessage"]
    assert list(read_frames(tmp_path / "f1.h5")[1]) == [1]  # closed cleanly
    free["bytes"] = 10**12
    stats = write(p, [frame(image("uint16", 3), 3)])
    assert stats["nFramesWritten"] == 2
    assert list(read_frames(tmp_path / "f2.h5")[1]) == [3]


def test_free_space_is_read_at_most_every_interval_less_the_bytes_written(make, tmp_path,
                                                                          monkeypatch):
    """Between two readings the writer subtracts its own bytes; a frame is
    refused only on a fresh reading, and the next frame reads again."""
    import pvagpu.hdf5.writer as module
    monkeypatch.setattr(module, "FREE_SPACE_INTERVAL", 3600.0)
    readings = []
    usage = namedtuple("usage", "total used free")
    nbytes = image("uint16", 1).nbytes
    free = {"bytes": 10**6 + int(3.5 * nbytes)}  # the reserve and 3.5 raw frames

    def disk_usage(path):  # a disk that the frames written fill
        readings.append(path)
        return usage(10**13, 0, free["bytes"] - p.getStats()["nBytesWritten"])
    monkeypatch.setattr(module.shutil, "disk_usage", disk_usage)
    p = make(minFreeBytes=10**6, outputFileNameFormat="f{fileNumber}.h5")
    for uid in range(1, 5):
        p.process(frame(image("uint16", uid), uid))
    wait_for(lambda: p.getStats()["nWriteErrors"] == 1, timeout=30)
    assert p.getStats()["nFramesWritten"] == 3
    assert len(readings) == 2  # the first frame's, and the fresh one that refused frame 4
    assert "disk nearly full" in p.getStats()["lastErrorMessage"]
    free["bytes"] = 10**12
    stats = write(p, [frame(image("uint16", uid), uid) for uid in range(5, 9)])
    assert stats["nFramesWritten"] == 7 and len(readings) == 3
    assert list(read_frames(tmp_path / "f1.h5")[1]) == [1, 2, 3]
    assert list(read_frames(tmp_path / "f2.h5")[1]) == [5, 6, 7, 8]


FULL_DISK_WRITER = textwrap.dedent("""
    import json, resource, signal, sys
    import numpy as np
    from pvagpu import ntnda
    from pvagpu.hpc import Hdf5OutputProcessor
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))
    p = Hdf5OutputProcessor({"outputDirectory": sys.argv[1], "framesPerFile": 6,
                             "outputFileNameFormat": "f{fileNumber:02}.h5"})
    def send(uid):
        p.process(ntnda.value_from_image(np.full((128, 128), uid, np.uint16), uid))
    for uid in range(1, 13):
        send(uid)
    p.configure({"framesPerFile": 0})  # from now on files grow until the limit
    for uid in range(13, 41):
        send(uid)
        p.flush(30)
    p.stop()
    print(json.dumps(p.getStats()))
    """)


def test_a_full_disk_leaves_every_file_written_so_far_readable(tmp_path):
    """RLIMIT_FSIZE stands in for a full file system (no root needed): HDF5
    fails in the middle of writing a chunk and of flushing its metadata."""
    (tmp_path / "writer.py").write_text(FULL_DISK_WRITER)
    out = tmp_path / "out"
    out.mkdir()
    run = subprocess.run([sys.executable, str(tmp_path / "writer.py"), str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    stats = json.loads(run.stdout.strip().splitlines()[-1])
    assert stats["nWriteErrors"] >= 1 and "File too large" in stats["lastErrorMessage"]
    files = sorted(out.glob("*.h5"))
    # the files closed before the limit was reached are complete
    for name, uids in (("f01.h5", range(1, 7)), ("f02.h5", range(7, 13))):
        data, stored = read_frames(out / name)
        assert list(stored) == list(uids)
        assert all((data[k] == uid).all() for k, uid in enumerate(uids))
    # every later file opens (SWMR readers, as while it was written) and every
    # frame in it is the frame sent; frames lost to the limit are the errors
    stored_total = 12
    for path in files[2:]:
        data, stored = read_frames(path, swmr=True)
        assert len(stored) >= 1
        assert all((data[k] == uid).all() for k, uid in enumerate(stored))
        stored_total += len(stored)
    assert stored_total == stats["nFramesWritten"]
    assert stats["nFramesWritten"] + stats["nWriteErrors"] >= 40


# -- end to end ------------------------------------------------------------------------------

@pytest.mark.pva
def test_end_to_end_from_sim_server_through_the_consumer(processes, tmp_path, pva_env):
    frames = np.stack([image("uint16", uid, (32, 48)) for uid in range(1, 5)])
    np.save(tmp_path / "frames.npy", frames)
    out = tmp_path / "h5"
    processes.start("pvagpu-sim-server", "-cn", "h5:sim", "-if", str(tmp_path / "frames.npy"),
                    "-cdc", "bslz4", "-fps", "100", "-rt", "300", "-std", "0", "-shd", "0")
    args = {"outputDirectory": str(out), "framesPerFile": 10,
            "outputFileNameFormat": "scan_{fileNumber:03}.h5"}
    consumer = processes.start("pvagpu-consumer", "-ic", "h5:sim", "-sc", "_", "-cc", "_",
                               "-pc", "pvagpu.hpc:Hdf5OutputProcessor", "-pa", json.dumps(args))
    ctx = Context("pva", nt=False)
    try:
        def written():
            v = ctx.get("pvapy:consumer:1:status", timeout=1, throw=False)
            return not isinstance(v, Exception) and v["userStats.nFramesWritten"] >= 25
        wait_for(written, timeout=60, interval=0.2, message="25 frames written")
    finally:
        ctx.close()
    consumer.send_signal(signal.SIGTERM)  # the consumer stops the processor: files closed
    log, _ = consumer.communicate(timeout=60)
    assert consumer.returncode == 0, log
    files = sorted(out.glob("scan_*.h5"))
    assert len(files) >= 3
    n = 0
    for path in files:
        with h5py.File(path, "r") as f:  # closed cleanly: no SWMR flag left
            dset = f[DATA]
            assert dset.id.get_create_plist().get_filter(0)[0] == 32008
            uids = f[ATTRS + "/NDArrayUniqueId"][...]
            assert len(uids) == dset.shape[0] <= 10
            for k, uid in enumerate(uids):
                np.testing.assert_array_equal(dset[k], frames[(uid - 1) % 4])
            n += len(uids)
    assert n >= 25
