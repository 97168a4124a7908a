"""HDF5 input of the simulated detector: ``-if FILE.h5 -hds DATASET [-hcm]``.

:class:`Hdf5Frames` reads the frames of one dataset ((n, ny, nx),
(n, ny, nx, 3), or one 2-D frame), through HDF5's filters (hdf5plugin
registers bitshuffle, LZ4, blosc, ...), so any compression the file uses is
undone and the frames go out as pixels, or compressed with ``--codec``.

With ``hdf_compressed`` (``-hcm``, pvapy's ``--hdf-compression-mode``) each
frame is sent as its chunk is stored, without decompressing: the chunk's
bytes, filter header included, become the payload, under the codec name
that pvapy's sim server gives them (:data:`CHUNK_CODECS`): bitshuffle/LZ4
-> ``bslz4`` (with its 12-byte header), LZ4 -> ``lz4`` (in the HDF5 LZ4
filter's framing, i.e. ``lz4hdf5``), blosc -> ``blosc``; pvagpu adds
deflate -> ``zlib``. pvagpu's decoders read these framings as they are;
pvapy's need PVAPY_COMPRESSED_PAYLOAD_START (INTEROP.md 2.3). This needs one
frame per chunk (chunks ``(1, ny, nx)``, as areaDetector and pvagpu's
HDF5 writer store them), one such filter and no other, and native byte
order. A dataset without filters is sent uncompressed (and said so); a
chunk that HDF5 stored with its filter skipped goes out uncompressed.
"""
from __future__ import annotations

import os

import h5py
import hdf5plugin
import numpy as np

from ..errors import ConfigurationError
from .sim_config import SimConfig
from .sim_frames import Chunk, StackFrames

#: file name endings read as HDF5 (others too, if h5py recognises the file)
SUFFIXES = (".h5", ".hdf", ".hdf5", ".nxs", ".cxi")

#: HDF5 filter id -> codec name of a chunk sent as stored (-hcm)
CHUNK_CODECS = {
    hdf5plugin.BSHUF_ID: "bslz4",
    hdf5plugin.LZ4_ID: "lz4",
    hdf5plugin.BLOSC_ID: "blosc",
    h5py.h5z.FILTER_DEFLATE: "zlib",
}

#: bitshuffle filter option (5th) that selects LZ4 after the shuffle
_BSHUF_LZ4 = 2


def is_hdf5(path: str) -> bool:
    """Whether ``path`` is read as HDF5 (by its name, else its signature)."""
    if path.lower().endswith(SUFFIXES):
        return True
    if path.lower().endswith((".npy", ".npz")):
        return False
    try:
        return os.path.isfile(path) and h5py.is_hdf5(path)
    except OSError:
        return False


def _filters(dataset) -> list:
    """(filter id, options, name) of each filter of ``dataset``, in order."""
    plist = dataset.id.get_create_plist()
    out = []
    for i in range(plist.get_nfilters()):
        code, _flags, options, name = plist.get_filter(i)
        out.append((int(code), tuple(options), name.decode("ascii", "replace")))
    return out


class Hdf5Frames(StackFrames):
    """Frames of dataset ``hdf_dataset`` of the HDF5 file ``input_file``."""

    def __init__(self, config: SimConfig):
        path, name = config.input_file, config.hdf_dataset
        try:
            self.file = h5py.File(path, "r")
        except OSError as exc:
            raise ConfigurationError(f"cannot read input file {path!r}: {exc}") from None
        try:
            if not name:
                raise ConfigurationError(
                    f"input file {path!r} is HDF5: name its frame dataset with -hds "
                    f"(datasets here: {', '.join(self._datasets()) or 'none'})")
            dataset = self.file.get(name)
            if not isinstance(dataset, h5py.Dataset):
                raise ConfigurationError(
                    f"input file {path!r} has no dataset {name!r} "
                    f"(datasets here: {', '.join(self._datasets()) or 'none'})")
            super().__init__(dataset, config, f"{os.path.basename(path)}:{dataset.name}")
            self.codec = self._chunk_codec(dataset, path) if config.hdf_compressed else None
            if self.codec:
                self.source += f" (chunks as stored: {self.codec})"
        except BaseException:
            self.file.close()
            raise

    def _datasets(self) -> list:
        found = []
        self.file.visititems(lambda key, obj: found.append("/" + key)
                             if isinstance(obj, h5py.Dataset) and obj.ndim >= 2 else None)
        return found[:10]

    def _chunk_codec(self, dataset, path: str):
        """The codec name of ``dataset``'s chunks; None for unfiltered ones."""
        where = f"-hcm: {path}:{dataset.name}"
        filters = _filters(dataset)
        if not filters:
            return None
        names = ", ".join(f"{label or code} ({code})" for code, _, label in filters)
        code, options, _ = filters[0]
        if len(filters) > 1 or code not in CHUNK_CODECS:
            raise ConfigurationError(
                f"{where} has filters {names}; chunks can be sent as stored only with one of "
                f"bitshuffle/LZ4, LZ4, blosc or deflate. Leave out -hcm to send the frames "
                f"decompressed (or recompressed with --codec)")
        if code == hdf5plugin.BSHUF_ID and len(options) > 4 and options[4] != _BSHUF_LZ4:
            raise ConfigurationError(
                f"{where}: the bitshuffle filter has compression option {options[4]} "
                f"(not LZ4), which no areaDetector codec carries; leave out -hcm")
        chunk = (1,) + self.frame_shape if not self.single else self.frame_shape
        if dataset.chunks != chunk:
            raise ConfigurationError(
                f"{where} has chunks {dataset.chunks}; -hcm needs one frame per chunk, "
                f"{chunk}; leave out -hcm")
        if dataset.dtype.byteorder not in ("=", "|", "<" if np.little_endian else ">"):
            raise ConfigurationError(f"{where} stores {dataset.dtype.str} (not this "
                                     f"machine's byte order); leave out -hcm")
        if self.color_mode not in (self.color_mode.MONO, self.color_mode.RGB1):
            raise ConfigurationError(
                f"{where}: stored colour frames are pixel-interleaved (RGB1); -hcm cannot "
                f"send them as {self.color_mode.name}")
        return CHUNK_CODECS[code]

    def frame(self, index: int):
        """Frame ``index``: its stored chunk (``-hcm``) or its pixels."""
        if not self.codec:
            return self.image(index)
        offset = (0,) * len(self.frame_shape) if self.single \
            else (index,) + (0,) * len(self.frame_shape)
        try:
            mask, data = self.stack.id.read_direct_chunk(offset)
        except (OSError, ValueError, KeyError):  # a chunk never written: fill values
            return self.image(index)
        if mask:  # HDF5 skipped the filter for this chunk: its bytes are the pixels
            return self.image(index)
        return Chunk(np.frombuffer(data, dtype=np.uint8), self.codec)

    def close(self) -> None:
        self.file.close()
