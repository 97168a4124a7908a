"""Hdf5OutputProcessor: stream frames into HDF5 files, keeping the detector's
compression (pvagpu addition to the pvapy.hpc API).

Frames go into one chunked dataset per file (default ``/entry/data/data``,
one chunk per frame, NeXus groups), their uniqueId, timestamps and NTNDArray
attributes into 1-D datasets in ``/entry/instrument/NDAttributes`` (as
areaDetector's NDFileHDF5); :mod:`pvagpu.hdf5` has the chunk framings, the
file layout and the writer thread. Readers need only h5py and hdf5plugin.

How each frame goes in:

* ``bslz4``, ``lz4``, ``lz4hdf5``, ``zlib`` and ``blosc`` frames are written
  as they arrived, by direct chunk write under the matching HDF5 filter
  (bitshuffle 32008, LZ4 32004, deflate, blosc 32001): no decode, no
  re-compression (``nDirect``). The first frame of a file picks its filter.
* Uncompressed frames are written as they are (``compression`` "none",
  also direct) or compressed by HDF5 with ``compression`` ("bslz4", "lz4",
  "gzip"; ``nCompressed``).
* Before a compressed payload is stored as it is, its sizes are checked
  and, with the default ``verifyCompressed`` "framing", the framing of
  bslz4 payloads (every block walked, the last ones parsed: 0.02-0.05 ms
  per 2 MiB frame) and blosc headers, so that no stored bslz4 chunk can
  make a reader's decoder read outside it; "decode" (or true) decodes
  every frame first, "none" (or false) checks the sizes only. A payload
  that fails is refused (``nFrameErrors``).
* A frame that cannot go in as it is (another codec such as jpeg; a codec
  other than the file's; RGB2/RGB3 colour layouts; ``keepCompression``
  false) is decoded and written through the file's filter (``nDecoded``).
* A frame whose shape or data type differs from the file's starts a new
  file (nothing is refused for that). A frame that cannot be decoded, or
  whose sizes disagree, is refused: counted in ``nFrameErrors``, logged at
  a limited rate, never written.

Files are written in SWMR mode (``swmr``), so readers can open them with
``h5py.File(path, "r", swmr=True)`` and ``refresh()`` while they grow; a
frame is flushed (visible to them, with its metadata) at most
``flushInterval`` s after it was written, also when no frame follows, and
flushes are at least that far apart (0: after every frame).
Files roll over after ``framesPerFile`` frames or ``bytesPerFile`` bytes.
``stop()`` (which the consumer calls on SIGTERM/SIGINT) and ``configure()``
write what is queued, then flush and close the file.

Writing happens on one writer thread behind a bounded queue
(``writerQueueSize`` frames): ``process()`` only queues the frame and
republishes it; when the queue is full the frame is not written and is
counted in ``nQueueOverruns``, so a slow disk never delays the stream. A
write error (full disk, vanished directory) is counted in ``nWriteErrors``
and logged at a limited rate; the file is closed and the next frame starts
a new one, so every file written so far stays readable.
"""
from __future__ import annotations

import os
import queue
import time
from typing import NamedTuple

from .. import pva
from ..errors import ConfigurationError
from ..hdf5.chunks import COMPRESSIONS, VERIFY_LEVELS
from ..hdf5.writer import FLUSH, STOP, Writer
from .ad_image_processor import AdImageProcessor
from .ad_output_file_processor import prepare_directory

#: The keys that ``outputFileNameFormat`` may use.
FORMAT_KEYS = ("uniqueId", "frameId", "objectId", "processorId", "fileNumber")
#: File name extensions accepted for HDF5 files.
EXTENSIONS = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5")


class Settings(NamedTuple):
    """One configuration, replaced as a whole by ``configure()``."""
    outputDirectory: str = "."
    outputFileNameFormat: str = "{uniqueId:06}.{processorId}.h5"
    datasetPath: str = "/entry/data/data"
    compression: str = "none"
    keepCompression: bool = True
    verifyCompressed: str = "framing"
    framesPerFile: int = 0
    bytesPerFile: int = 0
    flushInterval: float = 1.0
    swmr: bool = True
    minFreeBytes: int = 64 * 2**20


def _check(settings: Settings, processor_id) -> Settings:
    """``settings`` with the directory created and made absolute;
    ConfigurationError naming the first bad value."""
    s = settings
    try:
        name = s.outputFileNameFormat.format(uniqueId=0, frameId=0, objectId=0,
                                             processorId=processor_id, fileNumber=1)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        raise ConfigurationError(f"outputFileNameFormat {s.outputFileNameFormat!r} is not a "
                                 f"valid format ({type(exc).__name__}: {exc}); keys: "
                                 f"{', '.join(FORMAT_KEYS)}") from None
    if os.sep in name or os.path.splitext(name)[1].lower() not in EXTENSIONS:
        raise ConfigurationError(f"outputFileNameFormat {s.outputFileNameFormat!r} must name "
                                 f"a file ending in one of {', '.join(EXTENSIONS)}")
    path = s.datasetPath
    if not isinstance(path, str) or not path.startswith("/") or path.rstrip("/") in ("", "/"):
        raise ConfigurationError(f"datasetPath {path!r} must be an absolute HDF5 path")
    if path.rstrip("/").startswith("/entry/instrument/NDAttributes"):
        raise ConfigurationError(f"datasetPath {path!r} is inside the NDAttributes group")
    if s.compression not in COMPRESSIONS:
        raise ConfigurationError(f"compression {s.compression!r} is not one of "
                                 f"{', '.join(COMPRESSIONS)}")
    for key in ("framesPerFile", "bytesPerFile", "flushInterval", "minFreeBytes"):
        value = getattr(s, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigurationError(f"{key} must be a number >= 0, got {value!r}")
    for key in ("keepCompression", "swmr"):
        if not isinstance(getattr(s, key), bool):
            raise ConfigurationError(f"{key} must be true or false, got {getattr(s, key)!r}")
    verify = s.verifyCompressed
    if isinstance(verify, bool):  # as before there were levels
        verify = "decode" if verify else "none"
    if verify not in VERIFY_LEVELS:
        raise ConfigurationError(f"verifyCompressed must be one of {', '.join(VERIFY_LEVELS)} "
                                 f"(or true = decode, false = none), got {verify!r}")
    directory = prepare_directory(s.outputDirectory)
    return s._replace(outputDirectory=directory, datasetPath=path.rstrip("/"),
                      verifyCompressed=verify)


#: getStats() key -> (counter, PVA type) of every counted statistic.
COUNTED_STATS = {
    "nFramesWritten": ("n_frames_written", pva.UINT),
    "nBytesWritten": ("n_bytes_written", pva.ULONG),
    "nFilesWritten": ("n_files_written", pva.UINT),
    "nDirect": ("n_direct", pva.UINT),
    "nDecoded": ("n_decoded", pva.UINT),
    "nCompressed": ("n_compressed", pva.UINT),
    "nSkipped": ("n_skipped", pva.UINT),
    "nFrameErrors": ("n_frame_errors", pva.UINT),
    "nWriteErrors": ("n_write_errors", pva.UINT),
    "nQueueOverruns": ("n_queue_overruns", pva.UINT),
    "nAttributesDropped": ("n_attributes_dropped", pva.UINT),
}
#: The other getStats() keys and their PVA types.
STATE_STATS = {"queueLength": pva.UINT, "writeTime": pva.DOUBLE, "currentFile": pva.STRING,
               "lastErrorMessage": pva.STRING}


class Hdf5OutputProcessor(AdImageProcessor):
    """Streaming framework processor that writes frames to HDF5 files.

    Configuration (constructor and ``configure()``; ``configure()`` changes
    only the keys it is given, closes the current file and keeps the old
    configuration if a new value is refused with ConfigurationError). Keys
    and defaults are those of :class:`Settings`, plus ``writerQueueSize``
    (frames, default 64; constructor only):

    - ``outputDirectory``: created when configured.
    - ``outputFileNameFormat``: :meth:`str.format` string with keys
      ``uniqueId`` / ``frameId`` / ``objectId`` (the file's first frame),
      ``processorId`` and ``fileNumber`` (1, 2, ... per processor); an
      existing file is never overwritten (``-1``, ``-2``, ... are added).
    - ``datasetPath``, ``compression`` (none, bslz4, lz4, gzip: for frames
      that HDF5 compresses), ``keepCompression`` (store compressed frames
      as they arrived), ``verifyCompressed`` (what is checked before:
      "none" or false = sizes, "framing" = also the bslz4 block framing
      and the blosc header, "decode" or true = a decode; corrupt frames
      are refused), ``framesPerFile`` / ``bytesPerFile`` (0 = no limit),
      ``flushInterval`` (s: the longest a written frame waits to be
      visible to SWMR readers, and the shortest time between flushes),
      ``swmr``, ``minFreeBytes`` (frames are refused, as write errors,
      while the output file system has less free space than this plus
      the frame; 0 = no check; read at most once a second, less this
      writer's own bytes in between).
    """

    DEFAULT_WRITER_QUEUE_SIZE = 64
    #: At most one error log line per this many seconds per kind.
    ERROR_LOG_INTERVAL = 1.0
    #: How long configure() and stop() wait for the writer.
    WRITER_TIMEOUT = 60.0

    def __init__(self, configDict=None):
        super().__init__(configDict)
        configDict = dict(configDict or {})
        size = configDict.pop("writerQueueSize", self.DEFAULT_WRITER_QUEUE_SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigurationError(f"writerQueueSize must be an integer >= 1, got {size!r}")
        self._settings = self._settings_from(Settings(), configDict)
        self._writer = Writer(self, self._settings, size)

    @property
    def settings(self) -> Settings:
        """The latest configuration (the writer uses it from the frame
        after those queued before it was set)."""
        return self._settings

    def configure(self, configDict):
        """Change settings at run time: queued frames are written with the
        old ones, the current file is closed, and the next frame opens a new
        file with the new settings."""
        configDict = dict(configDict or {})
        if "writerQueueSize" in configDict:
            raise ConfigurationError("writerQueueSize can only be set when the processor "
                                     "is created")
        settings = self._settings_from(self._settings, configDict)
        self._writer.command(settings, self.WRITER_TIMEOUT)
        self._settings = settings

    def process(self, pvObject):
        """Queue the frame for the writer (never waits) and republish it."""
        self._writer.submit(pvObject)
        self.updateOutputChannel(pvObject)
        return pvObject

    def stop(self):
        """Write the queued frames, flush and close the file, end the writer
        (a second call does nothing)."""
        if not self._writer.alive:
            return
        try:
            self._writer.command(STOP, self.WRITER_TIMEOUT)
        except queue.Full:
            self.logger.error("HDF5 writer did not take the stop command in %g s",
                              self.WRITER_TIMEOUT)
            return
        if not self._writer.join(self.WRITER_TIMEOUT):
            self.logger.error("HDF5 writer did not finish in %g s", self.WRITER_TIMEOUT)

    def flush(self, timeout: float = WRITER_TIMEOUT) -> bool:
        """Wait until every frame queued so far is written and flushed (SWMR
        readers see it; the file stays open); False on timeout. For tests
        and scripts: the stream never needs it."""
        self._writer.command(FLUSH, timeout)
        deadline = time.monotonic() + timeout
        while self._writer.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._writer.queue.unfinished_tasks

    @property
    def currentFile(self) -> str:
        """Path of the file being written ("" when none is open)."""
        f = self._writer.file
        return f.path if f is not None else ""

    def resetStats(self):
        """Zero the counters."""
        self._writer.counters.reset()

    def getStats(self):
        """The counters (COUNTED_STATS), the writer queue's length, the
        writer's busy time (s), the open file and the last error."""
        w = self._writer
        counts = w.counters.counts()
        stats = {key: counts[counter] for key, (counter, _) in COUNTED_STATS.items()}
        stats.update(queueLength=w.queue.qsize(), writeTime=w.write_time,
                     currentFile=self.currentFile, lastErrorMessage=w.last_error)
        return stats

    def getStatsPvaTypes(self):
        return {key: t for key, (_, t) in COUNTED_STATS.items()} | STATE_STATS

    def _settings_from(self, base: Settings, configDict: dict) -> Settings:
        # other keys (the framework's processorId, inputChannel, ...) are not ours
        changes = {k: v for k, v in configDict.items() if k in Settings._fields}
        return _check(base._replace(**changes), self.processorId)
