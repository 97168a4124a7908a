"""AdOutputFileProcessor: files that read back bit for bit, atomic writes,
configuration at run time, and write errors that are counted and survived."""
import errno
import logging
import os
import shutil
import threading

import numpy as np
import pytest
import tifffile

from pvagpu import codecs, ntnda, pva
from pvagpu.errors import ConfigurationError, FrameError, OutputFileError, PvagpuError
from pvagpu.hpc import AdImageProcessor, AdOutputFileProcessor
from pvagpu.hpc import ad_output_file_processor as module
from pvagpu.ntnda import ColorMode

DEFAULT_FORMAT = "{uniqueId:06}.{processorId}.tiff"


class Publisher:
    """Stands in for the framework's data publisher."""

    def __init__(self):
        self.published = []

    def updateOutputChannel(self, value):
        self.published.append(value)


def make_processor(directory, name_format=DEFAULT_FORMAT, **config):
    proc = AdOutputFileProcessor({"outputDirectory": str(directory),
                                  "outputFileNameFormat": name_format, **config})
    proc.dataPublisher = Publisher()
    return proc


def random_image(shape, dtype, seed=0):
    """Pixels over the whole range of ``dtype`` (bit-exact checks see every bit)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def read_back(path):
    path = str(path)
    return np.load(path) if path.endswith(".npy") else tifffile.imread(path)


def assert_same(path, image):
    saved = read_back(path)
    assert saved.dtype == image.dtype and saved.shape == image.shape
    assert saved.tobytes() == np.ascontiguousarray(image).tobytes()


def files_in(directory):
    """Every entry of ``directory``, hidden temporary files included."""
    return sorted(os.listdir(directory))


# -- what is written ---------------------------------------------------------

@pytest.mark.parametrize("extension", [".tiff", ".tif", ".npy"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32])
def test_mono_frames_read_back_bit_for_bit(tmp_path, dtype, extension):
    proc = make_processor(tmp_path, "{uniqueId:06}.{processorId}" + extension)
    image = random_image((24, 40), dtype)
    frame = AdImageProcessor.generateNtNdArray2D(7, image)
    assert proc.process(frame) is frame
    assert files_in(tmp_path) == [f"000007.1{extension}"]
    assert_same(tmp_path / f"000007.1{extension}", image)
    if extension != ".npy":
        assert tifffile.TiffFile(tmp_path / f"000007.1{extension}").pages[0].photometric \
            == tifffile.PHOTOMETRIC.MINISBLACK


@pytest.mark.parametrize("extension", [".tiff", ".npy"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("mode", [ColorMode.RGB1, ColorMode.RGB2, ColorMode.RGB3])
def test_colour_frames_are_saved_as_ny_nx_3(tmp_path, mode, dtype, extension):
    proc = make_processor(tmp_path, "{uniqueId}" + extension)
    image = random_image((12, 20, 3), dtype, seed=int(mode))
    proc.process(ntnda.value_from_image(image, 3, color_mode=mode))
    assert_same(tmp_path / f"3{extension}", image)
    if extension == ".tiff":
        assert tifffile.TiffFile(tmp_path / "3.tiff").pages[0].photometric \
            == tifffile.PHOTOMETRIC.RGB


@pytest.mark.parametrize("codec", ["lz4", "bslz4"])
@pytest.mark.parametrize("extension", [".tiff", ".npy"])
def test_compressed_frames_are_decoded_before_saving(tmp_path, codec, extension):
    proc = make_processor(tmp_path, "{uniqueId}" + extension)
    mono = random_image((32, 48), np.uint16, seed=1)
    colour = random_image((16, 24, 3), np.uint8, seed=2)
    proc.process(ntnda.value_from_image(mono, 1, codec=codec))
    proc.process(ntnda.value_from_image(colour, 2, color_mode=ColorMode.RGB2, codec=codec))
    payload = codecs.encode(codec, mono)  # the seed's way: already-compressed bytes
    proc.process(AdImageProcessor.generateNtNdArray2D(
        3, payload, nx=48, ny=32, dtype=np.uint16, compressorName=codec))
    assert_same(tmp_path / f"1{extension}", mono)
    assert_same(tmp_path / f"2{extension}", colour)
    assert_same(tmp_path / f"3{extension}", mono)


def test_input_is_republished_unchanged(tmp_path):
    proc = make_processor(tmp_path)
    image = random_image((8, 8), np.uint16)
    frame = ntnda.value_from_image(image, 11, color_mode=ColorMode.MONO)
    before = (frame["uniqueId"], frame["value"].copy(), frame["codec.name"])
    assert proc.process(frame) is frame
    assert proc.dataPublisher.published == [frame]
    assert proc.dataPublisher.published[0] is frame
    assert frame["uniqueId"] == before[0] and frame["codec.name"] == before[2]
    assert np.array_equal(frame["value"], before[1])


def test_frames_without_dimensions_are_skipped_and_republished(tmp_path):
    proc = make_processor(tmp_path)
    frame = ntnda.value_from_image(np.zeros((2, 2), np.uint8), 4)
    frame["dimension"] = []
    assert proc.process(frame) is frame
    assert files_in(tmp_path) == []
    assert proc.dataPublisher.published == [frame]
    assert proc.getStats()["nSkipped"] == 1 and proc.getStats()["nErrors"] == 0


# -- file names ---------------------------------------------------------------

def test_default_configuration_writes_tiff_named_by_id_into_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = AdOutputFileProcessor()
    assert proc.outputFileNameFormat == DEFAULT_FORMAT
    assert proc.outputDirectory == str(tmp_path)
    proc.processorId = 5  # the framework sets it after construction
    proc.process(AdImageProcessor.generateNtNdArray2D(42, np.ones((2, 3), np.uint8)))
    assert files_in(tmp_path) == ["000042.5.tiff"]


def test_custom_format_with_every_key(tmp_path):
    proc = make_processor(tmp_path, "f{frameId:04d}_o{objectId}_u{uniqueId:x}_p{processorId}.npy",
                          processorId=3)
    proc.process(AdImageProcessor.generateNtNdArray2D(26, np.ones((2, 3), np.uint8)))
    assert files_in(tmp_path) == ["f0026_o26_u1a_p3.npy"]


def test_braces_in_the_directory_are_not_format_fields(tmp_path):
    directory = tmp_path / "run{uniqueId}" / "{processorId:06}" / "{nokey}"
    proc = make_processor(directory)
    image = random_image((4, 5), np.uint16)
    proc.process(AdImageProcessor.generateNtNdArray2D(1, image))
    assert files_in(directory) == ["000001.1.tiff"]
    assert_same(directory / "000001.1.tiff", image)


# -- configuration --------------------------------------------------------------

BAD_FORMATS = [
    "{nokey}.tiff",               # unknown key
    "{}.tiff",                    # positional field
    "{uniqueId:q}.tiff",          # bad format spec
    "{uniqueId.tiff",             # unbalanced brace
    "{uniqueId}.png",             # extension without a writer
    "{uniqueId}",                 # no extension
    "sub/{uniqueId}.tiff",        # a path, not a file name
    "",
    17,
]


@pytest.mark.parametrize("name_format", BAD_FORMATS)
def test_bad_format_is_refused_at_construction(tmp_path, name_format):
    with pytest.raises(ConfigurationError, match="outputFileNameFormat"):
        make_processor(tmp_path, name_format)


@pytest.mark.parametrize("name_format", BAD_FORMATS)
def test_bad_format_at_configure_keeps_the_old_configuration(tmp_path, name_format):
    proc = make_processor(tmp_path, "{uniqueId}.npy")
    new_directory = tmp_path / "new"
    with pytest.raises(ConfigurationError):
        proc.configure({"outputDirectory": str(new_directory), "outputFileNameFormat": name_format})
    assert not new_directory.exists()  # nothing was changed, not even half
    assert (proc.outputDirectory, proc.outputFileNameFormat) == (str(tmp_path), "{uniqueId}.npy")
    proc.process(AdImageProcessor.generateNtNdArray2D(2, np.ones((2, 2), np.uint8)))
    assert files_in(tmp_path) == ["2.npy"]


def test_directory_is_created_with_its_parents(tmp_path):
    directory = tmp_path / "a" / "b" / "c"
    make_processor(directory)
    assert directory.is_dir() and files_in(directory) == []  # the write probe is gone


def test_directory_that_cannot_be_created_is_refused(tmp_path):
    (tmp_path / "afile").write_bytes(b"not a directory")
    blocked = tmp_path / "afile" / "sub"
    with pytest.raises(ConfigurationError, match="afile"):
        make_processor(blocked)
    with pytest.raises(ConfigurationError, match="outputDirectory"):
        make_processor(tmp_path / "afile")  # exists, but is a file
    proc = make_processor(tmp_path / "good")
    with pytest.raises(ConfigurationError):
        proc.configure({"outputDirectory": str(blocked)})
    assert proc.outputDirectory == str(tmp_path / "good")
    with pytest.raises(ConfigurationError):
        proc.configure({"outputDirectory": None})


def test_configure_at_run_time_changes_only_the_given_keys(tmp_path):
    proc = make_processor(tmp_path / "one", "{uniqueId}.tiff")
    image = random_image((6, 7), np.int32)
    proc.process(AdImageProcessor.generateNtNdArray2D(1, image))
    proc.configure({"outputFileNameFormat": "frame{uniqueId:03}.npy"})
    proc.process(AdImageProcessor.generateNtNdArray2D(2, image))
    proc.configure({"outputDirectory": str(tmp_path / "two")})
    proc.process(AdImageProcessor.generateNtNdArray2D(3, image))
    proc.configure({})  # nothing to change
    proc.process(AdImageProcessor.generateNtNdArray2D(4, image))
    assert files_in(tmp_path / "one") == ["1.tiff", "frame002.npy"]
    assert files_in(tmp_path / "two") == ["frame003.npy", "frame004.npy"]
    assert_same(tmp_path / "two" / "frame004.npy", image)


# -- atomic writes and errors ----------------------------------------------------

def failing_halfway(exception):
    """A tifffile.imwrite stand-in that writes some bytes, then fails."""
    def imwrite(fh, data, **kwargs):
        fh.write(b"II*\x00" + bytes(1000))
        raise exception
    return imwrite


def test_disk_full_midway_leaves_neither_final_nor_temporary_file(tmp_path, monkeypatch):
    proc = make_processor(tmp_path)
    monkeypatch.setattr(module.tifffile, "imwrite",
                        failing_halfway(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    frame = AdImageProcessor.generateNtNdArray2D(8, np.ones((4, 4), np.uint8))
    with pytest.raises(OutputFileError) as caught:
        proc.process(frame)
    error = caught.value
    assert isinstance(error, PvagpuError) and isinstance(error, OSError)
    assert error.errno == errno.ENOSPC
    assert "000008.1.tiff" in str(error) and os.strerror(errno.ENOSPC) in str(error)
    assert files_in(tmp_path) == []
    assert proc.dataPublisher.published == []
    stats = proc.getStats()
    assert (stats["nErrors"], stats["nFilesSaved"], stats["nBytesSaved"]) == (1, 0, 0)
    assert stats["lastErrorMessage"] == str(error)
    monkeypatch.undo()  # the disk has room again: the next frame is written
    proc.process(frame)
    assert files_in(tmp_path) == ["000008.1.tiff"]


def test_writer_failing_with_a_non_os_error_cleans_up(tmp_path, monkeypatch):
    proc = make_processor(tmp_path, "{uniqueId}.npy")
    (tmp_path / "5.npy").write_bytes(b"old, complete file")

    def bad_save(fh, data, **kwargs):
        fh.write(b"\x93NUMPY partial")
        raise ValueError("cannot store this")

    monkeypatch.setattr(module.np, "save", bad_save)
    with pytest.raises(OutputFileError, match=r"5\.npy.*cannot store this"):
        proc.process(AdImageProcessor.generateNtNdArray2D(5, np.ones((4, 4), np.uint8)))
    assert files_in(tmp_path) == ["5.npy"]
    assert (tmp_path / "5.npy").read_bytes() == b"old, complete file"  # not torn


@pytest.mark.parametrize("extension", [".npy", ".tiff"])
def test_concurrent_reader_never_sees_an_incomplete_file(tmp_path, extension):
    """Frames go to a fresh name each and, alternately, to one name that
    every frame replaces; a reader polling the directory must read every
    file it finds complete."""
    shape, n_frames = (256, 256), 60
    distinct = make_processor(tmp_path, "{uniqueId:04}" + extension)
    latest = make_processor(tmp_path, "latest" + extension)
    done = threading.Event()
    problems, reads = [], [0]

    def scan():
        for name in files_in(tmp_path):
            if name.startswith("."):
                continue  # temporary files are nobody's business
            try:
                image = read_back(tmp_path / name)
            except FileNotFoundError:
                continue
            except Exception as exc:  # a torn file
                problems.append(f"{name}: {exc!r}")
                continue
            reads[0] += 1
            if image.shape != shape or not (image == image.flat[0]).all():
                problems.append(f"{name}: wrong content")

    def reader():
        while True:
            finished = done.is_set()
            scan()
            if finished:  # one last scan after the writer stopped
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        for uid in range(1, n_frames + 1):
            frame = AdImageProcessor.generateNtNdArray2D(uid, np.full(shape, uid, np.uint16))
            (latest if uid % 2 else distinct).process(frame)
    finally:
        done.set()
        thread.join(10)
    assert not problems, problems[:5]
    assert reads[0] > 0
    names = files_in(tmp_path)
    assert not [n for n in names if n.startswith(".")]
    assert len(names) == n_frames // 2 + 1
    assert read_back(tmp_path / f"latest{extension}")[0, 0] == n_frames - 1


def test_directory_removed_after_configure(tmp_path, caplog):
    """An unmounted disk: writes fail with a clear error and are counted,
    the directory is not re-created, and a new directory fixes it."""
    gone = tmp_path / "mnt" / "data"
    proc = make_processor(gone)
    shutil.rmtree(tmp_path / "mnt")
    frame = AdImageProcessor.generateNtNdArray2D(1, np.ones((3, 3), np.uint8))
    with caplog.at_level(logging.ERROR, logger=proc.logger.name):
        for _ in range(3):
            with pytest.raises(OutputFileError, match="no longer exists") as caught:
                proc.process(frame)
    assert str(gone / "000001.1.tiff") in str(caught.value)
    assert caught.value.errno == errno.ENOENT
    assert not (tmp_path / "mnt").exists()
    assert proc.getStats()["nErrors"] == 3
    assert len(caplog.records) == 1  # rate-limited: one line per second at most
    proc.configure({"outputDirectory": str(tmp_path / "elsewhere")})
    assert proc.process(frame) is frame
    assert files_in(tmp_path / "elsewhere") == ["000001.1.tiff"]
    assert proc.getStats()["nFilesSaved"] == 1
    assert proc.dataPublisher.published == [frame]


def test_undecodable_frame_is_counted_and_raised(tmp_path):
    proc = make_processor(tmp_path)
    frame = ntnda.value_from_image(np.ones((4, 4), np.uint8), 1)
    frame["dimension"] = ntnda.dimension_list((5, 4))  # disagrees with the data
    with pytest.raises(FrameError):
        proc.process(frame)
    assert proc.getStats()["nErrors"] == 1 and "cannot decode" in proc.lastErrorMessage
    assert files_in(tmp_path) == [] and proc.dataPublisher.published == []


# -- statistics and the seed's API ------------------------------------------------

def test_stats_count_files_and_bytes_on_disk(tmp_path):
    proc = make_processor(tmp_path)
    for uid, size in enumerate([(8, 8), (16, 32), (64, 64)], start=1):
        proc.process(AdImageProcessor.generateNtNdArray2D(uid, random_image(size, np.uint16)))
    stats = proc.getStats()
    on_disk = sum(os.path.getsize(tmp_path / name) for name in files_in(tmp_path))
    assert stats["nFilesSaved"] == 3 and stats["nBytesSaved"] == on_disk
    assert stats["fileProcessingTime"] > 0
    assert stats["fileProcessingRate"] == pytest.approx(3 / stats["fileProcessingTime"])
    assert stats["dataStorageRateMBps"] == pytest.approx(
        on_disk / AdOutputFileProcessor.BYTES_IN_MEGABYTE / stats["fileProcessingTime"])
    proc.resetStats()
    assert proc.getStats() == {
        "nFilesSaved": 0, "nBytesSaved": 0, "fileProcessingTime": 0.0,
        "fileProcessingRate": 0.0, "dataStorageRateMBps": 0.0,
        "nSkipped": 0, "nErrors": 0, "lastErrorMessage": ""}


def test_stats_pva_types_cover_every_stat(tmp_path):
    proc = make_processor(tmp_path)
    types = proc.getStatsPvaTypes()
    assert set(types) == set(proc.getStats())
    assert types["nFilesSaved"] == pva.UINT and types["nBytesSaved"] == pva.ULONG
    assert types["fileProcessingTime"] == pva.DOUBLE and types["lastErrorMessage"] == pva.STRING
    for key, value in proc.getStats().items():
        code = ntnda.p4p_code(types[key])
        assert isinstance(value, str) == (code == "s"), key


def test_seed_api():
    assert AdOutputFileProcessor.BYTES_IN_MEGABYTE == 1000000
    assert issubclass(AdOutputFileProcessor, AdImageProcessor)
    for name in ("configure", "process", "getStats", "getStatsPvaTypes", "resetStats",
                 "start", "stop", "updateOutputChannel", "getOutputPvObjectType",
                 "reshapeNtNdArray", "generateNtNdArray2D", "replaceNtNdArrayImage2D",
                 "getNtNdArrayDataFieldKey"):
        assert callable(getattr(AdOutputFileProcessor, name)), name
