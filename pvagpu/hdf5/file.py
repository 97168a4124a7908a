"""One open HDF5 frame file: NeXus layout, frame and metadata datasets, SWMR.

:class:`FrameFile` appends :class:`~pvagpu.hdf5.chunks.FrameRecord` s: the
frame's chunk as it is (direct chunk write) or its image through the
dataset's filter, and its uniqueId, timestamps and NTNDArray attributes to
1-D datasets beside it (named as areaDetector's NDFileHDF5 names them).
"""
from __future__ import annotations

import os

import h5py
import numpy as np
from h5py import h5s

from .chunks import FILTERS, FrameRecord

#: Length of fixed-size string datasets (NTNDArray string attributes);
#: longer strings are cut (counted in ``FrameFile.n_truncated``).
STRING_LENGTH = 256


def _numbers(record: FrameRecord) -> tuple:
    """The per-frame numbers that FRAME_FIELDS store, one row per frame:
    uniqueId, timeStamp (3 fields), dataTimeStamp (3 fields)."""
    return (record.unique_id, *record.time_stamp, *record.data_time_stamp)


#: Per-frame datasets from the NTNDArray's own fields, beside the
#: attributes in the NDAttributes group (names as areaDetector's
#: NDFileHDF5, POSIX epoch): name -> (dtype, rows of :func:`_numbers` ->
#: values, source).
FRAME_FIELDS = {
    "NDArrayUniqueId": (np.int32, lambda m: m[:, 0], "uniqueId"),
    "NDArrayTimeStamp": (np.float64, lambda m: m[:, 4] + 1e-9 * m[:, 5],
                         "dataTimeStamp (POSIX seconds)"),
    "NDArrayEpicsTSSec": (np.int64, lambda m: m[:, 1], "timeStamp.secondsPastEpoch (POSIX)"),
    "NDArrayEpicsTSnSec": (np.int32, lambda m: m[:, 2], "timeStamp.nanoseconds"),
    "NDArrayEpicsTSUserTag": (np.int32, lambda m: m[:, 3], "timeStamp.userTag"),
    "NDArrayDataTSSec": (np.int64, lambda m: m[:, 4], "dataTimeStamp.secondsPastEpoch (POSIX)"),
    "NDArrayDataTSnSec": (np.int32, lambda m: m[:, 5], "dataTimeStamp.nanoseconds"),
    "NDArrayDataTSUserTag": (np.int32, lambda m: m[:, 6], "dataTimeStamp.userTag"),
}


def _attribute_dtype(value):
    """HDF5 dtype for an NTNDArray attribute value; None for one that has no
    per-frame scalar form (arrays, empty values)."""
    if isinstance(value, (bool, np.bool_)):
        return np.dtype(np.bool_)
    if isinstance(value, (int, np.integer)):
        return np.dtype(np.int64)
    if isinstance(value, (float, np.floating)):
        return np.dtype(np.float64)
    if isinstance(value, str):
        return np.dtype(f"S{STRING_LENGTH}")
    return None


#: Stored for a frame that lacks an attribute (or has it with another type).
_FILL = {"b": False, "i": 0, "f": np.nan, "S": b""}


class _Column:
    """A growing 1-D per-frame dataset."""

    def __init__(self, group, name: str, dtype, source: str):
        self.dtype = np.dtype(dtype)
        self.dset = group.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(1024,),
                                         dtype=self.dtype)
        self.dset.attrs["source"] = source

    def write(self, start: int, values) -> None:
        """Store ``values`` from row ``start`` on (low-level calls: a tenth
        of the cost of h5py's resize and slice assignment)."""
        values = np.ascontiguousarray(values, dtype=self.dtype)
        n = values.shape[0]
        dset = self.dset.id
        dset.set_extent((start + n,))
        space = dset.get_space()
        space.select_hyperslab((start,), (n,))
        dset.write(h5s.create_simple((n,)), space, values)


class FrameFile:
    """One HDF5 file of frames, open for writing (SWMR when ``swmr``).

    Layout (NeXus classes in NX_class attributes)::

        /entry                      NXentry
        /entry/data                 NXdata, signal="data"
        /entry/data/data            frames: (n, *frame shape), chunk = 1 frame
        /entry/instrument           NXinstrument
        /entry/instrument/NDAttributes   NXcollection: one 1-D dataset per
                                    FRAME_FIELDS entry and per NTNDArray
                                    attribute of the first frame

    (``dataset_path`` moves the frame dataset; its parent group is the
    NXdata.) SWMR forbids new datasets once it is on, so the attribute
    datasets are those of the first frame; a later attribute with another
    name, or with a value of another type, is not stored (counted in
    ``n_dropped``; the column gets its fill value: 0, NaN, False or "").
    Strings are stored UTF-8 in STRING_LENGTH bytes (longer ones cut,
    counted in ``n_truncated``).

    Metadata is kept in memory (numbers and attribute values only, never a
    frame's pixels) and written at each :meth:`flush`, so the metadata
    datasets are never longer than the frame dataset; ``n_dropped`` and
    ``n_truncated`` count the frames flushed.
    """

    def __init__(self, path: str, dataset_path: str, first: FrameRecord, compression: str,
                 swmr: bool = True):
        self.path = path
        self.compression = compression
        self.shape, self.dtype = first.shape, first.dtype
        self.n_frames = self.n_bytes = self.n_dropped = self.n_truncated = 0
        self._flushed = 0
        self._numbers, self._attribute_values = [], []  # per frame not yet flushed
        self._zeros = (0,) * len(self.shape)
        self._file = h5py.File(path, "x", libver="latest")
        try:
            self._create(dataset_path, first.attributes)
            if swmr:
                self._file.swmr_mode = True
        except BaseException:
            self._file.close()
            raise

    def _create(self, dataset_path: str, attributes: dict) -> None:
        f = self._file
        entry = f.require_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        parent_path, name = dataset_path.rstrip("/").rsplit("/", 1)
        parent = f.require_group(parent_path or "/")
        if parent.name != "/":
            parent.attrs["NX_class"] = "NXdata"
            parent.attrs["signal"] = name
        self.data = parent.create_dataset(
            name, shape=(0, *self.shape), maxshape=(None, *self.shape),
            chunks=(1, *self.shape), dtype=self.dtype, **FILTERS[self.compression]())
        instrument = entry.require_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        group = instrument.require_group("NDAttributes")
        group.attrs["NX_class"] = "NXcollection"
        self._fields = {key: (_Column(group, key, dtype, source), values)
                        for key, (dtype, values, source) in FRAME_FIELDS.items()}
        self._attributes = {}
        for key, value in attributes.items():
            dtype = _attribute_dtype(value)
            if dtype is not None and key not in self._fields and "/" not in key:
                self._attributes[key] = _Column(group, key, dtype, "NTNDArray attribute")

    def accepts(self, record: FrameRecord) -> bool:
        """Whether ``record`` has this file's frame shape and dtype."""
        return record.shape == self.shape and record.dtype == self.dtype

    def fit(self, record: FrameRecord) -> FrameRecord:
        """``record`` as this file can take it: its chunk when that is in the
        file's compression, else its image (decoded if need be: CodecError
        for a corrupt payload)."""
        if record.chunk is not None and record.compression == self.compression:
            return record
        return record.as_image()

    @property
    def unflushed(self) -> bool:
        """Whether frames were appended since the last :meth:`flush`."""
        return self.n_frames > self._flushed

    def append(self, record: FrameRecord) -> None:
        """Append one frame, a record returned by :meth:`fit`: its chunk as
        it is (one buffer: see :class:`~pvagpu.hdf5.chunks.ChunkAssembler`),
        or its image through the file's filter.

        The frame is either fully appended or, if writing fails, not at all
        (the dataset is shrunk back) and the exception propagates."""
        if record.chunk is not None and record.header:
            raise ValueError("the chunk has a separate header: assemble it first")
        n = self.n_frames
        origin = (n, *self._zeros)
        dset = self.data.id
        dset.set_extent((n + 1, *self.shape))
        try:
            if record.chunk is not None:
                dset.write_direct_chunk(origin, record.chunk)
                size = record.nbytes
            else:
                self.data[n] = record.image
                size = dset.get_chunk_info_by_coord(origin).size
        except BaseException:
            dset.set_extent((n, *self.shape))
            raise
        self.n_frames = n + 1
        self.n_bytes += size
        self._numbers.append(_numbers(record))
        self._attribute_values.append(record.attributes)

    def flush(self) -> None:
        """Write the pending metadata and flush the file: SWMR readers see
        every frame appended so far, with its metadata."""
        start, n = self._flushed, self.n_frames
        if n > start:
            rows = np.array(self._numbers, dtype=np.int64).reshape(n - start, -1)
            for column, values in self._fields.values():
                column.write(start, values(rows))
            self._write_attributes(start)
            self._numbers.clear()
            self._attribute_values.clear()
            self._flushed = n
        self._file.flush()

    def _write_attributes(self, start: int) -> None:
        pending = self._attribute_values
        stored = 0
        for key, column in self._attributes.items():
            kind = column.dtype.kind
            values = []
            for attributes in pending:
                value = attributes.get(key)
                dtype = _attribute_dtype(value)
                if dtype is None or dtype.kind != kind:
                    value = _FILL[kind]
                else:
                    stored += 1
                    if kind == "S":
                        value = value.encode("utf-8", "replace")
                        self.n_truncated += len(value) > STRING_LENGTH
                values.append(value)
            column.write(start, values)
        self.n_dropped += sum(len(attributes) for attributes in pending) - stored

    def close(self) -> None:
        """Flush and close: the file is complete and readable without SWMR.

        If the flush fails (a full disk), every HDF5 object of the file is
        still closed, one by one, and the flush's error raised: what was
        flushed before stays readable with ``h5py.File(path, "r", swmr=True)``.
        (h5py's ``File.close`` gives up at the first object that cannot be
        flushed and leaves ids half-freed, which crash when released.)"""
        if not self._file.id.valid:
            return
        try:
            self.flush()
        except BaseException:
            datasets = [column.dset for column, _ in self._fields.values()]
            datasets += [column.dset for column in self._attributes.values()] + [self.data]
            for obj in datasets + [self._file]:
                while obj.id.valid:
                    try:
                        obj.id._close()
                    except Exception:  # noqa: PERF203 - each try releases one reference
                        pass
            raise
        self._file.close()


def new_path(directory: str, name: str) -> str:
    """``directory/name``, or with ``-1``, ``-2``, ... before the extension
    when that file exists: a file is never overwritten."""
    stem, ext = os.path.splitext(name)
    path, k = os.path.join(directory, name), 0
    while os.path.lexists(path):
        k += 1
        path = os.path.join(directory, f"{stem}-{k}{ext}")
    return path
