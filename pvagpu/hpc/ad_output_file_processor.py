"""AdOutputFileProcessor: save every frame to a file (pvapy.hpc API).

Each frame is decoded and reshaped by ``reshapeNtNdArray`` (so compressed
and colour frames work), written to ``outputDirectory`` under a name made
from ``outputFileNameFormat``, and then republished unchanged.

Differences from pvapy 5.6, all on purpose:

* The name format is applied to the file name only, never to the directory,
  so a directory with braces in its name works.
* The extension picks the writer: ``.tif``/``.tiff`` (tifffile; greyscale
  or RGB) or ``.npy`` (numpy). Anything else is refused at configure time,
  as is a format with unknown keys or a directory that cannot be written.
* Files appear atomically: each one is written to a hidden temporary file
  in the same directory and renamed onto its final name, so a program that
  picks up new files never reads a half-written one.
* The directory is created when it is configured, never when a file is
  written: if it disappears later (an unmounted disk), writes fail loudly
  instead of quietly filling the disk underneath the mount point.
* A failed write raises :class:`pvagpu.errors.OutputFileError`, after
  being counted in ``nErrors``; the next frame is tried as usual.
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from typing import Callable, NamedTuple

import numpy as np
import tifffile

from .. import pva
from ..errors import ConfigurationError, OutputFileError
from ..stats import ErrorLog
from .ad_image_processor import AdImageProcessor


def _write_tiff(fh, image):
    """TIFF through tifffile: greyscale for (ny, nx), RGB for (ny, nx, 3)."""
    tifffile.imwrite(fh, image, photometric="rgb" if image.ndim == 3 else "minisblack")


def _write_npy(fh, image):
    """NumPy's .npy format (dtype and shape in the header, no pickles)."""
    np.save(fh, image, allow_pickle=False)


#: File name extension (lower case) -> ``writer(binary_file, image)``.
#: Writers get the image as reshapeNtNdArray returns it, often a read-only,
#: possibly non-contiguous view; they copy it only if their format needs to.
WRITERS = {".tif": _write_tiff, ".tiff": _write_tiff, ".npy": _write_npy}

#: The keys that ``outputFileNameFormat`` may use.
FORMAT_KEYS = ("uniqueId", "frameId", "objectId", "processorId")


def _open_temporary(directory: str, name: str):
    """Create a new, empty, hidden file beside ``name``: an open binary file.

    Mode ``"xb"`` (O_EXCL) makes the name ours alone; the umask decides the
    permissions, as for any other file the user creates."""
    for _ in range(100):
        path = os.path.join(directory, f".{name[:200]}.{secrets.token_hex(4)}.tmp")
        try:
            return open(path, "xb")
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name for {name} in {directory}")


def write_atomically(path: str, writer: Callable, image: np.ndarray) -> int:
    """Write ``image`` to ``path`` with ``writer`` so that ``path`` appears
    complete or not at all; return the size of the file in bytes.

    The data goes to a hidden temporary file in the same directory (a rename
    is atomic only within one file system), which is flushed, closed and then
    renamed onto ``path`` with ``os.replace``. Whatever fails, the temporary
    file is removed and the exception propagates. There is no fsync: readers
    never see a torn file, but a power cut may lose the latest files."""
    directory, name = os.path.split(path)
    fh = _open_temporary(directory, name)
    try:
        with fh:
            writer(fh, image)
            fh.flush()
            size = os.fstat(fh.fileno()).st_size
        os.replace(fh.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(fh.name)
        raise
    return size


class _Target(NamedTuple):
    """Where and how files are written: replaced as a whole by configure(),
    so a frame being written while another thread reconfigures sees either
    the old or the new configuration, never a mixture."""
    directory: str      # absolute path
    name_format: str    # outputFileNameFormat
    writer: Callable    # from WRITERS, chosen by the extension


class AdOutputFileProcessor(AdImageProcessor):
    """Streaming framework processor that saves area-detector images to files.

    Configuration (constructor and ``configure()``; ``configure()`` changes
    only the keys it is given and keeps the old configuration if a new value
    is refused with :class:`pvagpu.errors.ConfigurationError`):

    - ``outputDirectory`` (str, default ``"."``): created, with its parents,
      when configured; ``~`` is expanded.
    - ``outputFileNameFormat`` (str, default
      ``'{uniqueId:06}.{processorId}.tiff'``): a :meth:`str.format` string for
      the file name, with keys ``uniqueId``, ``frameId``, ``objectId`` (all the
      frame's uniqueId) and ``processorId``. The extension selects the file
      type: ``.tif``, ``.tiff`` or ``.npy``. A format without ``{uniqueId}``
      names one file that every frame replaces (atomically).
    """

    BYTES_IN_MEGABYTE = 1000000
    DEFAULT_OUTPUT_DIRECTORY = "."
    DEFAULT_OUTPUT_FILE_NAME_FORMAT = "{uniqueId:06}.{processorId}.tiff"
    #: At most one error log line per this many seconds; the rest are counted.
    ERROR_LOG_INTERVAL = 1.0

    def __init__(self, configDict=None):
        super().__init__(configDict)
        configDict = configDict or {}
        name_format, writer = self._check_name_format(
            configDict.get("outputFileNameFormat", self.DEFAULT_OUTPUT_FILE_NAME_FORMAT))
        directory = prepare_directory(
            configDict.get("outputDirectory", self.DEFAULT_OUTPUT_DIRECTORY))
        self._target = _Target(directory, name_format, writer)
        self._error_log = ErrorLog(self.logger, self.ERROR_LOG_INTERVAL, logging.ERROR)
        self.resetStats()

    @property
    def outputDirectory(self) -> str:
        """The directory files are written to (absolute path)."""
        return self._target.directory

    @property
    def outputFileNameFormat(self) -> str:
        """The format of the file names."""
        return self._target.name_format

    def configure(self, configDict):
        """Change ``outputDirectory`` and/or ``outputFileNameFormat`` at run
        time. Both are checked before either is used: a refused value raises
        ConfigurationError and the previous configuration stays in force."""
        configDict = configDict or {}
        old = self._target
        name_format, writer = old.name_format, old.writer
        if "outputFileNameFormat" in configDict:
            name_format, writer = self._check_name_format(configDict["outputFileNameFormat"])
        directory = old.directory
        if "outputDirectory" in configDict:
            directory = prepare_directory(configDict["outputDirectory"])
        self._target = _Target(directory, name_format, writer)
        self.logger.info("writing files named %r to %s", name_format, directory)

    def process(self, pvObject):
        """Decode the frame, write its image to a file and republish the
        input unchanged. Frames without dimensions are skipped (counted in
        ``nSkipped``) and republished. A frame that cannot be decoded or
        written is counted in ``nErrors`` and its error raised (a
        :class:`pvagpu.errors.PvagpuError`); it is not republished."""
        try:
            imageId, image = self.reshapeNtNdArray(pvObject)[:2]
        except Exception as exc:
            self._count_error(f"cannot decode frame: {exc}")
            raise
        if image is None or image.size == 0:
            self.nSkipped += 1
        else:
            self._save(imageId, image)
        self.updateOutputChannel(pvObject)
        return pvObject

    def resetStats(self):
        """Zero every counter and forget the last error."""
        self.nFilesSaved = 0
        self.nBytesSaved = 0
        self.fileProcessingTime = 0.0
        self.nSkipped = 0
        self.nErrors = 0
        self.lastErrorMessage = ""

    def getStats(self):
        """Files and bytes saved, time spent writing (s) and the rates over
        that time (files/s, MB/s with 1 MB = BYTES_IN_MEGABYTE), frames
        skipped, errors and the last error message."""
        seconds = self.fileProcessingTime
        return {
            "nFilesSaved": self.nFilesSaved,
            "nBytesSaved": self.nBytesSaved,
            "fileProcessingTime": seconds,
            "fileProcessingRate": self.nFilesSaved / seconds if seconds > 0 else 0.0,
            "dataStorageRateMBps": (self.nBytesSaved / self.BYTES_IN_MEGABYTE / seconds
                                    if seconds > 0 else 0.0),
            "nSkipped": self.nSkipped,
            "nErrors": self.nErrors,
            "lastErrorMessage": self.lastErrorMessage,
        }

    def getStatsPvaTypes(self):
        """PVA type of each getStats() key."""
        return {
            "nFilesSaved": pva.UINT,
            "nBytesSaved": pva.ULONG,
            "fileProcessingTime": pva.DOUBLE,
            "fileProcessingRate": pva.DOUBLE,
            "dataStorageRateMBps": pva.DOUBLE,
            "nSkipped": pva.UINT,
            "nErrors": pva.UINT,
            "lastErrorMessage": pva.STRING,
        }

    # -- internals ---------------------------------------------------------

    def _file_name(self, name_format: str, unique_id: int) -> str:
        return name_format.format(uniqueId=unique_id, frameId=unique_id,
                                  objectId=unique_id, processorId=self.processorId)

    def _check_name_format(self, name_format):
        """``(name_format, writer)`` for a valid format; ConfigurationError
        naming the problem otherwise."""
        def refuse(why):
            return ConfigurationError(f"outputFileNameFormat {name_format!r} {why}")

        if not isinstance(name_format, str) or not name_format:
            raise refuse("is not a non-empty string")
        try:
            sample = self._file_name(name_format, 0)
        except KeyError as exc:
            raise refuse(f"uses the unknown key {exc}; known keys: "
                         f"{', '.join(FORMAT_KEYS)}") from None
        except IndexError:
            raise refuse(f"has a positional field; use named keys: "
                         f"{', '.join(FORMAT_KEYS)}") from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise refuse(f"is not a valid format: {exc}") from None
        separators = {os.sep, os.altsep} - {None}
        if any(sep in sample for sep in separators) or sample in (".", ".."):
            raise refuse("must name a file, not a path; put directories in outputDirectory")
        extension = os.path.splitext(sample)[1].lower()
        if extension not in WRITERS:
            raise refuse(f"has the extension {extension or '(none)'!r}; supported: "
                         f"{', '.join(sorted(WRITERS))}")
        return name_format, WRITERS[extension]

    def _save(self, unique_id: int, image: np.ndarray) -> None:
        target = self._target  # read once: configure() may replace it meanwhile
        path = os.path.join(target.directory, self._file_name(target.name_format, unique_id))
        start = time.perf_counter()
        try:
            size = write_atomically(path, target.writer, image)
        except Exception as exc:
            error = self._output_file_error(path, exc)
            self._count_error(str(error))
            raise error from exc
        self.fileProcessingTime += time.perf_counter() - start
        self.nFilesSaved += 1
        self.nBytesSaved += size

    @staticmethod
    def _output_file_error(path: str, exc: Exception) -> OutputFileError:
        """OutputFileError naming the file and the cause, with the cause's
        errno (e.g. ENOSPC) when it is an OSError (then ``str()`` starts
        with ``[Errno n]``, as for any OSError)."""
        if not isinstance(exc, OSError):
            return OutputFileError(f"cannot write {path}: {type(exc).__name__}: {exc}")
        cause = exc.strerror or str(exc)
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            cause += (f"; the output directory {directory} no longer exists (unmounted?) "
                      f"and is not re-created: configure a new outputDirectory")
        message = f"cannot write {path}: {cause}"
        return OutputFileError(exc.errno, message) if exc.errno else OutputFileError(message)

    def _count_error(self, message: str) -> None:
        """Count an error and log it, at most once per ERROR_LOG_INTERVAL."""
        self.nErrors += 1
        self.lastErrorMessage = message
        self._error_log("output file", message)


def prepare_directory(directory) -> str:
    """Create ``directory`` (and parents) and prove it writable by making
    and removing a hidden file in it; its absolute path."""
    try:
        directory = os.fspath(directory)
    except TypeError:
        directory = None
    if not isinstance(directory, str):
        raise ConfigurationError(f"outputDirectory must be a path string, got {directory!r}")
    directory = os.path.abspath(os.path.expanduser(directory or "."))
    try:
        os.makedirs(directory, exist_ok=True)
        with _open_temporary(directory, "pvagpu-write-test") as probe:
            pass
        os.unlink(probe.name)
    except OSError as exc:
        raise ConfigurationError(f"outputDirectory {directory!r} cannot be created or "
                                 f"written: {exc.strerror or exc}") from exc
    return directory
