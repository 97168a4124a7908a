"""The writer thread of :class:`pvagpu.hpc.Hdf5OutputProcessor`.

:class:`Writer` takes frames from a bounded queue, turns each into a chunk
(:func:`pvagpu.hdf5.chunks.prepare`), opens, rolls over and closes
:class:`~pvagpu.hdf5.file.FrameFile` s, and counts what it writes and what
fails. Commands travel in the same queue, so they apply in frame order.

Per frame the writer does what the frame needs and little else: file-system
free space is read at most every FREE_SPACE_INTERVAL s (the writer's own
bytes are subtracted in between), and a file is flushed (metadata written,
SWMR readers see the new frames) at most every ``flushInterval`` s, and at
the latest ``flushInterval`` s after a frame was written, also when no
further frame comes.
"""
from __future__ import annotations

import errno
import logging
import os
import queue
import shutil
import threading
import time

from ..errors import OutputFileError
from ..stats import Counters, ErrorLog
from .chunks import ChunkAssembler, prepare
from .file import FrameFile, new_path

class WriterCounters(Counters):
    """Written by the writer thread, except n_queue_overruns (frame path)."""
    FIELDS = ("n_frames_written", "n_bytes_written", "n_files_written", "n_direct",
              "n_decoded", "n_compressed", "n_skipped", "n_frame_errors", "n_write_errors",
              "n_queue_overruns", "n_attributes_dropped")
    __slots__ = FIELDS


#: Queue commands besides frames (a new settings object is one too: close
#: the file, use the settings from the next frame on).
STOP = object()   # close the file, end the thread
FLUSH = object()  # flush the file

#: Seconds between two readings of the output file system's free space
#: (``minFreeBytes``); a reading that would refuse a frame is always fresh.
FREE_SPACE_INTERVAL = 1.0


class Writer:
    """The writer thread.

    ``settings``: an object with the processor's configuration attributes
    (outputDirectory, outputFileNameFormat, datasetPath, compression,
    keepCompression, verifyCompressed, framesPerFile, bytesPerFile,
    flushInterval, swmr, minFreeBytes); ``processor`` gives ``logger``,
    ``processorId`` and ``ERROR_LOG_INTERVAL``."""

    def __init__(self, processor, settings, queue_size: int):
        self.processor = processor
        self.settings = settings  # the writer's own: changed in queue order
        self.logger = processor.logger
        self.queue = queue.Queue(queue_size)
        self.counters = WriterCounters()
        self.file = None          # the open FrameFile
        self.file_number = 0
        self.write_time = 0.0
        self.last_error = ""
        self._file_bytes = 0
        self._assemble = ChunkAssembler()
        self._errors = ErrorLog(self.logger, processor.ERROR_LOG_INTERVAL, logging.ERROR)
        self._last_flush = time.monotonic()
        self._free = None         # free bytes at the last reading, less those written since
        self._free_read = 0.0     # time.monotonic() of that reading
        self._thread = threading.Thread(target=self._run, name="hdf5-writer", daemon=True)
        self._thread.start()

    def submit(self, value) -> bool:
        """Queue a frame without waiting; False (counted) when the queue is full."""
        try:
            self.queue.put_nowait(value)
            return True
        except queue.Full:
            self.counters.n_queue_overruns += 1
            return False

    def command(self, item, timeout: float) -> None:
        """Queue a command behind the frames; waits for room up to ``timeout``."""
        self.queue.put(item, timeout=timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=self._flush_due())
            except queue.Empty:  # frames written, none followed: time to show them
                self._maybe_flush()
                continue
            try:
                if item is FLUSH:
                    self._maybe_flush(force=True)
                elif item is STOP or isinstance(item, type(self.settings)):
                    self._close_file()
                    if item is STOP:
                        return
                    self.settings = item
                    self._free = None
                else:
                    start = time.perf_counter()
                    self._write(item)
                    self._maybe_flush()
                    self.write_time += time.perf_counter() - start
            finally:
                self.queue.task_done()

    def _write(self, value) -> None:
        settings = self.settings
        c = self.counters
        try:
            record = prepare(value, settings.keepCompression, settings.verifyCompressed)
            if record is not None:
                record = self._assemble(record)
        except Exception as exc:
            self._refuse(_unique_id(value), exc)
            return
        if record is None:
            c.n_skipped += 1
            return
        try:
            self._check_free_space(settings, record.nbytes)
            f = self._file_for(record, settings)
        except Exception as exc:
            self._write_failed(record, exc, settings.outputDirectory)
            return
        try:
            record = f.fit(record)
        except Exception as exc:
            self._refuse(record.unique_id, exc)
            return
        try:
            f.append(record)
        except Exception as exc:
            self._write_failed(record, exc, f.path)
            return
        written = f.n_bytes - self._file_bytes
        self._file_bytes = f.n_bytes
        if self._free is not None:
            self._free -= written
        c.n_frames_written += 1
        c.n_bytes_written += written
        if record.chunk is not None:
            c.n_direct += 1
        else:
            c.n_decoded += record.decoded
            c.n_compressed += f.compression != "none"

    def _refuse(self, unique_id, exc: Exception) -> None:
        """A bad frame (cannot be decoded, sizes disagree): counted, not written."""
        self.counters.n_frame_errors += 1
        self._error("frame", f"frame {unique_id} refused: {type(exc).__name__}: {exc}")

    def _write_failed(self, record, exc: Exception, where: str) -> None:
        """A frame not written: counted; the file is closed, the next frame
        opens a new one."""
        self.counters.n_write_errors += 1
        self._error("write", f"frame {record.unique_id} not written to {where}: "
                             f"{type(exc).__name__}: {exc}")
        self._free = None
        self._close_file()

    def _file_for(self, record, settings) -> FrameFile:
        """The open file that takes ``record``, rolling over as configured."""
        f = self.file
        if f is not None and (
                not f.accepts(record)
                or (settings.framesPerFile and f.n_frames >= settings.framesPerFile)
                or (settings.bytesPerFile and f.n_frames
                    and f.n_bytes + record.nbytes > settings.bytesPerFile)):
            self._close_file()
            f = None
        if f is None:
            f = self._open(record, settings)
        return f

    def _open(self, record, settings) -> FrameFile:
        self.file_number += 1
        uid = record.unique_id
        name = settings.outputFileNameFormat.format(
            uniqueId=uid, frameId=uid, objectId=uid, processorId=self.processor.processorId,
            fileNumber=self.file_number)
        path = new_path(settings.outputDirectory, name)
        compression = (record.compression if record.chunk is not None
                       and record.compression != "none" else settings.compression)
        try:
            self.file = FrameFile(path, settings.datasetPath, record, compression, settings.swmr)
        except BaseException:
            _remove(path)  # a file without frames is not left behind
            raise
        self._file_bytes = 0
        self.counters.n_files_written += 1
        self.logger.info("writing %s (%s, %s %s)", path, compression, record.dtype,
                         record.shape)
        return self.file

    def _flush_due(self):
        """Seconds until the open file's unflushed frames are due to be
        flushed; None when there are none."""
        f = self.file
        if f is None or not f.unflushed:
            return None
        due = self._last_flush + self.settings.flushInterval - time.monotonic()
        return min(max(0.0, due), 3600.0)  # a bound that any lock's timeout accepts

    def _maybe_flush(self, force: bool = False) -> None:
        """Flush when forced, or when frames were written and flushInterval
        has passed since the last flush (0: after every frame)."""
        f = self.file
        if f is None:
            return
        now = time.monotonic()
        if force or (f.unflushed and now - self._last_flush >= self.settings.flushInterval):
            self._last_flush = now
            try:
                f.flush()
            except Exception as exc:
                self.counters.n_write_errors += 1
                self._error("write", f"cannot flush {f.path}: {type(exc).__name__}: {exc}")
                self._close_file()

    def _close_file(self) -> None:
        f, self.file = self.file, None
        if f is None:
            return
        try:
            f.close()
        except Exception as exc:
            self.counters.n_write_errors += 1
            self._error("write", f"cannot close {f.path}: {type(exc).__name__}: {exc}")
        else:
            self.logger.info("closed %s: %d frames", f.path, f.n_frames)
        finally:
            self.counters.n_attributes_dropped += f.n_dropped  # counted as frames are flushed

    def _error(self, kind: str, message: str) -> None:
        self.last_error = message
        self._errors(kind, message)

    def _check_free_space(self, settings, nbytes: int) -> None:
        """OutputFileError (ENOSPC) when writing ``nbytes`` would leave less
        than ``minFreeBytes`` free: the file is then closed while closing
        still fits, instead of HDF5 running out of space in the middle of a
        write. The file system is asked at most every FREE_SPACE_INTERVAL s
        (a statvfs call can be a round trip on a network file system), and
        again before any refusal."""
        if not settings.minFreeBytes:
            return
        need = nbytes + settings.minFreeBytes
        now = time.monotonic()
        if self._free is None or self._free < need or now - self._free_read >= FREE_SPACE_INTERVAL:
            self._free = shutil.disk_usage(settings.outputDirectory).free
            self._free_read = now
        if self._free < need:
            raise OutputFileError(errno.ENOSPC, f"disk nearly full: {self._free} bytes free in "
                                  f"{settings.outputDirectory}, a frame needs {nbytes} and "
                                  f"minFreeBytes is {settings.minFreeBytes}")


def _unique_id(value):
    try:
        return int(value["uniqueId"])
    except Exception:
        return "?"


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
