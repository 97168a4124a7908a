"""pvagpu-sim-server's inputs: HDF5 files (-if/-hds, -hcm chunks as stored),
Channel Access metadata PVs from the embedded IOC (-mpv NAME), and the
default number of distinct frames (build and memory budgets, progress).

HDF5 files are written with pvagpu's own Hdf5OutputProcessor and must come
back bit for bit through pvagpu's decoders. The CA IOC is started in a
sim-server subprocess only (EPICS runs one IOC per process), on a private
loopback CA network (pva.loopback.ca_loopback_env).
"""
import json
import re
import signal
import subprocess
import sys
import textwrap

import h5py
import hdf5plugin
import numpy as np
import pytest
from p4p.client.thread import Context

from conftest import need_installed, wait_for
from pvagpu import ntnda
from pvagpu.cli import sim_server as cli
from pvagpu.errors import ConfigurationError
from pvagpu.hpc import Hdf5OutputProcessor
from pvagpu.pva import sim_ca, sim_frames
from pvagpu.pva.loopback import ca_loopback_env
from pvagpu.pva.sim_config import SimConfig
from pvagpu.pva.sim_frames import FrameCache
from pvagpu.pva.sim_server import SimServer

DATA = "/entry/data/data"
CHANNEL = "test:simin:image"
REQUEST = "record[queueSize=500]field()"
#: codec of the frames written -> codec name of the chunks sent by -hcm
WIRE_CODEC = {"bslz4": "bslz4", "lz4": "lz4", "zlib": "zlib"}


def images(n=6, shape=(24, 40), dtype="uint16"):
    rng = np.random.default_rng(3)
    return [rng.poisson(4 + k, shape).astype(dtype) for k in range(n)]


def write_hdf5(directory, codec, frames, name="frames.h5"):
    """An HDF5 file written by Hdf5OutputProcessor from frames compressed with ``codec``."""
    p = Hdf5OutputProcessor({"outputDirectory": str(directory), "outputFileNameFormat": name})
    try:
        for uid, img in enumerate(frames, 1):
            p.process(ntnda.value_from_image(img, uid, codec=codec))
        p.configure({})
        assert p.flush(timeout=30)
        assert p.getStats()["nDirect"] == len(frames)
    finally:
        p.stop()
    return str(directory / name)


def stored_chunk(path, k):
    with h5py.File(path, "r") as f:
        return f[DATA].id.read_direct_chunk((k, 0, 0))[1]


# --- HDF5 input -------------------------------------------------------------------

@pytest.mark.parametrize("codec", ["bslz4", "lz4", "zlib"])
def test_hcm_sends_each_chunk_as_stored(tmp_path, codec):
    frames = images()
    path = write_hdf5(tmp_path, codec, frames)
    cache = FrameCache(SimConfig(input_file=path, hdf_dataset=DATA, hdf_compressed=True))
    assert len(cache) == len(frames) and cache.codec == WIRE_CODEC[codec]
    assert "chunks as stored" in cache.describe()
    for k, value in enumerate(cache.values):
        assert value["codec.name"] == WIRE_CODEC[codec]
        assert ntnda.payload(value)[0].tobytes() == stored_chunk(path, k)  # header and all
        assert value["uncompressedSize"] == frames[k].nbytes
        np.testing.assert_array_equal(ntnda.frame_from_value(value).image, frames[k])


def test_hdf5_frames_without_hcm_go_out_decompressed_or_recompressed(tmp_path):
    frames = images(4)
    path = write_hdf5(tmp_path, "bslz4", frames)
    plain = FrameCache(SimConfig(input_file=path, hdf_dataset=DATA, keep_images=True))
    lz4 = FrameCache(SimConfig(input_file=path, hdf_dataset=DATA, codec="lz4", n_frames=2))
    assert [v["codec.name"] for v in plain.values] == [""] * 4 and len(lz4) == 2
    for k, value in enumerate(plain.values):
        np.testing.assert_array_equal(ntnda.frame_from_value(value).image, frames[k])
        np.testing.assert_array_equal(plain.images[k], frames[k])
    for k, value in enumerate(lz4.values):
        assert value["codec.name"] == "lz4"
        np.testing.assert_array_equal(ntnda.frame_from_value(value).image, frames[k])
    # big-endian, shuffled and deflated by HDF5 itself: read through its filters
    big = np.stack(frames).astype(">u2")
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f.create_dataset("stack", data=big, chunks=(1, 24, 40), shuffle=True, compression="gzip")
    cache = FrameCache(SimConfig(input_file=str(tmp_path / "big.h5"), hdf_dataset="stack"))
    assert cache.dtype == np.dtype("uint16")
    for k, value in enumerate(cache.values):
        np.testing.assert_array_equal(ntnda.frame_from_value(value).image, frames[k])


def test_hcm_of_an_unfiltered_dataset_sends_pixels(tmp_path):
    frames = images(3)
    with h5py.File(tmp_path / "raw.h5", "w") as f:
        f.create_dataset("d", data=np.stack(frames), chunks=(1, 24, 40))
    cache = FrameCache(SimConfig(input_file=str(tmp_path / "raw.h5"), hdf_dataset="d",
                                 hdf_compressed=True))
    assert not cache.codec
    for k, value in enumerate(cache.values):
        assert value["codec.name"] == ""
        np.testing.assert_array_equal(ntnda.frame_from_value(value).image, frames[k])


@pytest.mark.pva
@pytest.mark.parametrize("codec", ["bslz4", "lz4"])
def test_hcm_chunks_cross_pva_and_decode_bit_for_bit(pva_env, tmp_path, codec):
    frames = images()
    path = write_hdf5(tmp_path, codec, frames)
    n = 15
    cfg = SimConfig(channel_name=CHANNEL, input_file=path, hdf_dataset=DATA, hdf_compressed=True,
                    n_published=n, frame_rate=200, wait_for_client=True, start_delay=0.3)
    got = []
    with SimServer(cfg) as server, Context("pva", nt=False) as ctx:
        sub = ctx.monitor(CHANNEL, lambda v: got.append(v) if v["uniqueId"] > 0 else None,
                          request=REQUEST)
        wait_for(lambda: len(got) >= n, timeout=30, message=f"{n} frames")
        assert server.wait(10)
        sub.close()
    assert [v["uniqueId"] for v in got] == list(range(1, n + 1))
    for value in got:
        k = (value["uniqueId"] - 1) % len(frames)
        assert value["codec.name"] == codec
        assert ntnda.payload(value)[0].tobytes() == stored_chunk(path, k)
        np.testing.assert_array_equal(ntnda.frame_from_value(value).image, frames[k])


def test_hdf5_input_errors_are_clear(tmp_path):
    frames = np.stack(images(4))
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.create_dataset("/entry/data/data", data=frames, chunks=(1, 24, 40),
                         shuffle=True, compression="gzip")
        f.create_dataset("two", data=frames, chunks=(2, 24, 40), **hdf5plugin.LZ4())
        f.create_dataset("noshuffle", data=frames, chunks=(1, 24, 40),
                         **hdf5plugin.Bitshuffle(cname="none"))
        f.create_dataset("line", data=np.arange(10))
    bad = str(tmp_path / "bad.h5")
    np.save(tmp_path / "f.npy", frames)
    cases = [
        (dict(), r"is HDF5: name its frame dataset with -hds \(datasets here: /entry/data/data"),
        (dict(hdf_dataset="nosuch"), "has no dataset 'nosuch'"),
        (dict(hdf_dataset="line"), "expected \\(n, ny, nx\\) frames"),
        (dict(hdf_dataset=DATA, hdf_compressed=True),
         r"has filters shuffle \(2\), deflate \(1\); .* Leave out -hcm"),
        (dict(hdf_dataset="two", hdf_compressed=True), "one frame per chunk"),
        (dict(hdf_dataset="noshuffle", hdf_compressed=True), "not LZ4"),
    ]
    for settings, message in cases:
        with pytest.raises(ConfigurationError, match=message):
            FrameCache(SimConfig(input_file=bad, **settings))
    with pytest.raises(ConfigurationError, match="apply to HDF5 input"):
        FrameCache(SimConfig(input_file=str(tmp_path / "f.npy"), hdf_dataset="d"))


def test_cli_takes_pvapys_hdf5_flags(capsys, tmp_path):
    path = write_hdf5(tmp_path, "bslz4", images(2))
    args = cli.build_parser().parse_args(["-if", path, "-hds", DATA, "-hcm"])
    cfg = cli.config_from_args(args)
    assert (cfg.input_file, cfg.hdf_dataset, cfg.hdf_compressed) == (path, DATA, True)
    assert cli.main(["-if", path, "-hcm", "-cdc", "lz4"]) == 2
    assert "--codec cannot be given with it" in capsys.readouterr().err


# --- the default number of distinct frames -----------------------------------------

class FakeClock:
    """A clock that moves only when a frame is drawn: ``first`` s for the
    first frame (warming up), ``each`` s for every later one."""

    def __init__(self, monkeypatch, first, each):
        self.now, self.drawn = 0.0, 0
        draw = sim_frames.RandomFrames.image

        def timed_draw(source, index):
            self.now += first if self.drawn == 0 else each
            self.drawn += 1
            return draw(source, index)
        monkeypatch.setattr(sim_frames.RandomFrames, "image", timed_draw)
        monkeypatch.setattr(sim_frames.RandomFrames, "frame", timed_draw)

    def __call__(self):
        return self.now


def test_default_frame_count_keeps_to_the_build_budget_with_progress(monkeypatch):
    # a 2048x2048 uint16 Poisson bslz4 frame takes about 0.25 s here; faked on small frames
    clock = FakeClock(monkeypatch, first=1.0, each=0.25)
    reports, progress = [], []
    cache = FrameCache(SimConfig(nx=16, ny=16, datatype="uint16", distribution="poisson",
                                 codec="bslz4"), reports.append, progress.append, clock=clock)
    # 1 s for the first, then 2 + 3.75 s / 0.25 s frames: 17 frames in 5 s
    assert len(cache) == 17 and clock.drawn == 17 and cache.build_time == pytest.approx(5.0)
    assert reports == ["making 17 distinct frames, limited by the build budget of 5 s at "
                       "250.0 ms a frame; -nf N sets the number"]
    # about one line a second once the count is known, never one per frame
    assert 3 <= len(progress) <= 5, progress
    counts = [int(re.match(r"building frames: (\d+)/17 \(\d+%\), [\d.]+ s, about [\d.]+ s left",
                           line).group(1)) for line in progress]
    assert counts == sorted(counts) and counts[-1] < 17


def test_default_frame_count_keeps_to_the_memory_budget(monkeypatch):
    clock = FakeClock(monkeypatch, first=0.001, each=0.001)
    reports = []
    frame_bytes = 64 * 64 * 2
    cfg = SimConfig(nx=64, ny=64, datatype="uint16", memory_budget=12 * frame_bytes + 100)
    cache = FrameCache(cfg, reports.append, clock=clock)
    assert len(cache) == 12 and cache.payload_bytes <= cfg.memory_budget
    assert "limited by the memory budget" in reports[0]
    # -nf overrides the budgets; the cache size caps the default
    assert len(FrameCache(SimConfig(**{**cfg.__dict__, "n_frames": 20}), clock=clock)) == 20
    quiet = []
    assert len(FrameCache(SimConfig(nx=8, ny=8, cache_size=30), quiet.append,
                          clock=clock)) == 30
    assert quiet == []


def test_first_frame_over_the_budget_gives_one_frame(monkeypatch):
    clock = FakeClock(monkeypatch, first=7.0, each=7.0)
    reports = []
    assert len(FrameCache(SimConfig(nx=8, ny=8), reports.append, clock=clock)) == 1
    assert reports[0].startswith("making 1 distinct frames, limited by the build budget")


@pytest.mark.pva
def test_cli_prints_the_frame_count_and_build_progress(pva_env, capsys):
    rc = cli.main(["-cn", CHANNEL, "-nx", "512", "-ny", "512", "-dt", "uint16",
                   "--distribution", "poisson", "-cdc", "bslz4", "--build-budget", "1.5",
                   "-np", "3", "-fps", "50", "-std", "0", "-shd", "0", "-rp", "0"])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    chosen = re.search(r"making (\d+) distinct frames, limited by the build budget of 1.5 s", out)
    assert chosen, out
    assert f"serving {CHANNEL}: {chosen.group(1)} frames" in out
    assert re.search(rf"building frames: \d+/{chosen.group(1)} ", err), err


# --- Channel Access metadata PVs ---------------------------------------------------

def test_ca_metadata_without_softioc_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "softioc", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'pvagpu\[ioc\]'.*pva://NAME"):
        SimConfig(metadata_pvs=["det:x"]).check()
    assert cli.main(["-mpv", "pva://det:y,ca://det:x", "-nf", "1"]) == 2
    assert "softioc package" in capsys.readouterr().err


def test_one_ioc_per_process_is_said_clearly(monkeypatch):
    need_installed("softioc")
    monkeypatch.setattr(sim_ca, "_records", {"det:x": object()})
    sim_ca.check(["det:x"])  # the same records again: fine
    with pytest.raises(ConfigurationError, match="one IOC per process"):
        sim_ca.check(["det:y"])
    with pytest.raises(ConfigurationError, match="at most 61"):
        sim_ca.check(["x" * 62])


PAIRING_PROCESSOR = textwrap.dedent('''
    import json
    import queue
    import time

    import numpy as np
    from pvagpu.hpc import AdImageProcessor

    def stamp(v):
        return v["timeStamp.secondsPastEpoch"] + 1e-9 * v["timeStamp.nanoseconds"]

    class Pairing(AdImageProcessor):
        """Decodes each frame and keeps the metadata that arrived before it."""

        def __init__(self, configDict={}):
            AdImageProcessor.__init__(self, configDict)
            self.out, self.n = configDict["out"], configDict["n"]
            self.frames, self.meta = [], {"test:ca:x": [], "test:pva:y": []}

        def drain(self, wait=0.0):
            for name, got in self.meta.items():
                while True:
                    try:
                        m = self.metadataQueueMap[name].get(timeout=wait)
                    except queue.Empty:
                        break
                    got.append([m["value"], stamp(m)])

        def process(self, pvObject):
            (uid, image, nx, ny, nz, mode, key) = self.reshapeNtNdArray(pvObject)
            self.drain()
            self.frames.append([int(uid), stamp(pvObject), pvObject["codec.name"],
                                int(image.sum(dtype=np.uint64))])
            if uid == self.n:
                # the metadata of the last frame may still be on its way
                first = self.frames[0][1] - 0.045
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not all(
                        sum(m[1] >= first for m in got) >= self.n for got in self.meta.values()):
                    self.drain(0.1)
                with open(self.out + ".tmp", "w") as f:
                    json.dump({"frames": self.frames, "meta": self.meta}, f)
                import os
                os.replace(self.out + ".tmp", self.out)
            return pvObject
''')


@pytest.mark.pva
def test_ca_metadata_pvs_reach_pyepics_and_the_consumer(processes, tmp_path):
    need_installed("softioc", "epics")
    processes.env.update(ca_loopback_env())
    frames = images(5, (32, 48))
    path = write_hdf5(tmp_path, "bslz4", frames)
    (tmp_path / "pairing.py").write_text(PAIRING_PROCESSOR)
    out, n = tmp_path / "seen.json", 30
    server = processes.start(
        sys.executable, "-m", "pvagpu.cli.sim_server", "-cn", CHANNEL, "-if", path,
        "-hds", DATA, "-hcm", "-mpv", "test:ca:x,pva://test:pva:y", "-np", str(n),
        "-fps", "20", "-wfc", "-std", "1.5", "-shd", "60", "-rp", "0")
    consumer = processes.start(
        "pvagpu-consumer", "-ic", CHANNEL, "-pf", str(tmp_path / "pairing.py"),
        "-pc", "Pairing", "-pa", json.dumps({"out": str(out), "n": n}),
        "-mc", "ca://test:ca:x,pva://test:pva:y")
    wait_for(lambda: out.exists() or consumer.poll() is not None or server.poll() is not None,
             timeout=90, interval=0.1, message="the consumer's record of every frame")
    if not out.exists():
        consumer.terminate()
        server.terminate()
        pytest.fail("server:\n" + server.communicate(timeout=30)[0]
                    + "\nconsumer:\n" + consumer.communicate(timeout=30)[0])
    seen = json.loads(out.read_text())
    # pyepics (caget, another process) reads the IOC's record: the last value put
    caget = subprocess.run(
        [sys.executable, "-c", "import epics; pv = epics.PV('test:ca:x', form='time'); "
                               "print(pv.get(timeout=10), pv.precision)"],
        env=processes.env, capture_output=True, text=True, timeout=60)
    consumer.send_signal(signal.SIGINT)
    server.send_signal(signal.SIGINT)
    server_out, _ = server.communicate(timeout=30)
    assert server.returncode == 0, server_out
    assert "serving CA metadata PVs test:ca:x from an embedded IOC" in server_out

    # every frame decoded bit for bit from the stored bslz4 chunks
    assert [f[0] for f in seen["frames"]] == list(range(1, n + 1))
    assert {f[2] for f in seen["frames"]} == {"bslz4"}
    assert [f[3] for f in seen["frames"]] == [int(frames[k % 5].sum(dtype=np.uint64))
                                              for k in range(n)]
    # one CA value per frame, put just before it; the PVA one carries its time stamp
    ca = [m for m in seen["meta"]["test:ca:x"] if m[1] >= seen["frames"][0][1] - 0.045]
    stamps = [f[1] for f in seen["frames"]]
    assert len(ca) == n, seen["meta"]["test:ca:x"]
    for (value, t_ca), t_frame in zip(ca, stamps):
        assert 0.0 <= value < 1.0 and 0.0 <= t_frame - t_ca < 0.045, (t_ca, t_frame)
    pva = [m for m in seen["meta"]["test:pva:y"] if m[1] > 0]
    assert [m[1] for m in pva] == stamps
    assert caget.returncode == 0, caget.stderr
    value, precision = caget.stdout.split()
    assert float(value) == pytest.approx(ca[-1][0], abs=1e-12) and precision == "6"
