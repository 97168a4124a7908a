"""How an NTNDArray frame becomes a chunk of an HDF5 frame dataset.

:func:`prepare` turns a received NTNDArray into a :class:`FrameRecord`:
the chunk exactly as HDF5 stores it whenever the frame's codec has an HDF5
filter that reads its payload (:data:`DIRECT_CODECS`), else the (decoded)
image for HDF5's own filter pipeline. :data:`FILTERS` names the filters.

Chunk framings (INTEROP.md 2.2; each verified by reading the chunk back
through hdf5plugin, see tests/test_hdf5_output.py):

``bslz4`` -> bitshuffle filter 32008 (LZ4)
    The filter's chunk is a 12-byte header (uint64 BE total bytes, uint32
    BE block size in bytes) followed by exactly the bytes that
    ``bshuf_compress_lz4`` writes, i.e. NDPluginCodec's payload. The header
    is prepended (default block size, as NDPluginCodec uses); a payload
    that already has it (pvapy's sim server with ``-hcm``) goes in as is.
``lz4`` -> HDF5 LZ4 filter 32004
    NDPluginCodec's payload is one bare LZ4 block over the whole frame; the
    filter's chunk is uint64 BE original size, uint32 BE block size, then
    per block uint32 BE stored size + data. One block of the frame's size
    wraps the payload without recompressing. (The filter reads a block whose
    stored size equals its raw size as uncompressed bytes; an LZ4 block of
    exactly the frame's size cannot be wrapped and is decoded instead.) An
    HDF5-framed payload (``lz4hdf5``, or ``lz4`` from ``-hcm``) goes in as is.
``zlib`` -> deflate (gzip) filter 1, ``blosc`` -> blosc filter 32001
    The payload is the filter's chunk (a zlib stream; a blosc1 buffer).

What is checked before a compressed payload is stored as it is
(``verify``, the processor's ``verifyCompressed``; :data:`VERIFY_LEVELS`):

``"none"``
    the size checks of :func:`pvagpu.ntnda.compressed_payload` only
    (compressedSize, uncompressedSize, dimensions, data type);
``"framing"`` (the default)
    also the codec's own framing where it has one, without decoding: a
    bslz4 payload's blocks are walked as the decoder walks them before
    decoding (every block inside the payload, the last blocks parsed, the
    end where the size says; 0.02-0.05 ms for a 2 MiB frame, on the copy
    that gets the filter header, while it is in the cache), so no stored
    bslz4 chunk can make a reader's decoder read outside it; a blosc
    payload's header is checked. lz4 and zlib payloads have no framing
    beyond their sizes;
``"decode"``
    every frame is decoded before it is stored (a decode, still no
    re-compression).

A payload that fails is refused (CorruptPayloadError); one that passes may
still hold wrong bytes inside its blocks (below ``"decode"``): readers
then get a decode error or wrong pixels for that frame only, as with any
direct chunk write. The framing check runs in :class:`ChunkAssembler`,
after the payload has been copied behind its filter header.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional

import hdf5plugin
import numpy as np

from .. import codecs, ntnda
from ..codecs.bslz4 import default_block_size

#: HDF5 compression of a file's frame dataset -> create_dataset keywords.
#: ``compression`` (processor configuration) may name the first four; a
#: file gets "blosc" only when blosc frames arrive and are kept as they are.
FILTERS = {
    "none": lambda: {},
    "bslz4": lambda: dict(hdf5plugin.Bitshuffle(cname="lz4")),
    "lz4": lambda: dict(hdf5plugin.LZ4()),
    "gzip": lambda: {"compression": "gzip"},
    "blosc": lambda: dict(hdf5plugin.Blosc()),
}
COMPRESSIONS = ("none", "bslz4", "lz4", "gzip")
#: What ``verify`` may ask for, cheapest first (see the module docstring).
VERIFY_LEVELS = ("none", "framing", "decode")

def _be(n: int, width: int) -> bytes:
    return int(n).to_bytes(width, "big")


def _has_hdf5_header(payload: np.ndarray, size: int) -> bool:
    """Whether ``payload`` starts with the filters' uint64 BE original size."""
    return payload.size >= 12 and int.from_bytes(payload[:8].tobytes(), "big") == size


def _bslz4_header(payload, dtype, size):
    if _has_hdf5_header(payload, size):
        return b""
    return _be(size, 8) + _be(default_block_size(dtype.itemsize) * dtype.itemsize, 4)


def _lz4_header(payload, dtype, size):
    if _has_hdf5_header(payload, size):
        return b""
    if payload.size == size or size >= 2**32:
        return None  # the filter would read it as stored raw / no uint32 block size
    return _be(size, 8) + _be(size, 4) + _be(payload.size, 4)


def _as_is(payload, dtype, size):
    return b""


def _bslz4_framing(payload, dtype, size):
    codecs.get("bslz4").check(payload, dtype, size)


def _blosc_framing(payload, dtype, size):
    codecs.get("blosc").check_header(payload, size)


#: codec.name -> (the file compression whose filter reads the chunk, header
#: maker ``(payload, dtype, uncompressed_size) -> bytes`` that go before the
#: payload in the chunk, or None when the payload cannot be framed, framing
#: check ``(payload, dtype, uncompressed_size)`` or None when there is none).
DIRECT_CODECS = {
    "bslz4": ("bslz4", _bslz4_header, _bslz4_framing),
    "lz4": ("lz4", _lz4_header, None),
    "lz4hdf5": ("lz4", _as_is, None),
    "zlib": ("gzip", _as_is, None),
    "blosc": ("blosc", _as_is, _blosc_framing),
}

#: Colour modes whose wire order is not the image order ((ny, nx, 3)): their
#: payloads cannot be chunks of the image dataset and are decoded.
_REORDERED_MODES = {ntnda.ColorMode.RGB2, ntnda.ColorMode.RGB3}


@dataclasses.dataclass
class FrameRecord:
    """One frame, ready to append: the chunk ``header + chunk`` (stored as
    is, in the file compression ``compression``; "none" for raw bytes) or
    ``image`` (to go through the file's filter pipeline), plus its metadata.
    ``check(payload)``, when set, is the framing check still to make on the
    payload (CorruptPayloadError): :class:`ChunkAssembler` makes it."""
    shape: tuple
    dtype: np.dtype
    unique_id: int
    time_stamp: ntnda.TimeStamp
    data_time_stamp: ntnda.TimeStamp
    attributes: dict
    compression: Optional[str] = None
    chunk: object = None
    header: bytes = b""
    image: Optional[np.ndarray] = None
    decoded: bool = False
    decode: Optional[Callable] = dataclasses.field(default=None, repr=False)
    check: Optional[Callable] = dataclasses.field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        """Bytes this frame adds to the file (uncompressed size for an image)."""
        if self.chunk is None:
            return self.image.nbytes
        return len(self.header) + memoryview(self.chunk).nbytes

    def as_image(self) -> "FrameRecord":
        """This frame with its chunk replaced by the image (decoded if needed)."""
        if self.chunk is None:
            return self
        if self.compression == "none":
            image = np.frombuffer(self.chunk, self.dtype).reshape(self.shape)
            return dataclasses.replace(self, chunk=None, image=image)
        return dataclasses.replace(self, chunk=None, image=self.decode(), decoded=True)


_TIME_STAMP = tuple(f"timeStamp.{k}" for k in ntnda.TimeStamp._fields)
_DATA_TIME_STAMP = tuple(f"dataTimeStamp.{k}" for k in ntnda.TimeStamp._fields)


def prepare(value, keep_compression: bool = True,
            verify: str = "framing") -> Optional[FrameRecord]:
    """The :class:`FrameRecord` of a received NTNDArray, None for a frame
    without pixels. FrameError / CodecError for a frame that disagrees with
    itself (sizes, dimensions, unknown codec, corrupt payload when decoded);
    ``verify`` is one of :data:`VERIFY_LEVELS`."""
    shape = ntnda.pixel_shape(value)
    if not shape or 0 in shape:
        return None
    field = value.__getitem__
    meta = dict(
        unique_id=int(value["uniqueId"]),
        time_stamp=ntnda.TimeStamp(*map(field, _TIME_STAMP)),
        data_time_stamp=ntnda.TimeStamp(*map(field, _DATA_TIME_STAMP)),
        attributes={a["name"]: a["value"] for a in value["attribute"]})
    name = value["codec.name"]
    if not name:
        flat = ntnda.payload(value)[0]
        image = ntnda.image_from_pixels(flat, value)[0]
        if image.flags.c_contiguous:
            return FrameRecord(image.shape, image.dtype, compression="none", chunk=image, **meta)
        return FrameRecord(image.shape, image.dtype, image=image, **meta)
    payload, dtype, size = ntnda.compressed_payload(value)

    def decode():
        return ntnda.frame_from_value(value).image

    direct = DIRECT_CODECS.get(name)
    if keep_compression and direct and ntnda.color_mode_of(value) not in _REORDERED_MODES:
        compression, make_header, framing = direct
        header = make_header(payload, dtype, size)
        if header is not None:
            check = None
            if verify == "decode":
                codecs.decode(name, payload, dtype, size)
            elif verify == "framing" and framing is not None:
                check = functools.partial(framing, dtype=dtype, size=size)
            return FrameRecord(shape, dtype, compression=compression, chunk=payload,
                               header=header, decode=decode, check=check, **meta)
    image = decode()
    return FrameRecord(image.shape, image.dtype, image=image, decoded=True, **meta)


class ChunkAssembler:
    """Makes the chunk of a :class:`FrameRecord` one buffer and runs its
    framing check: HDF5 takes a chunk as one buffer and the filters read
    their header from its start, so a payload without the header (as
    NDPluginCodec sends them) is copied behind it, into a buffer reused
    from frame to frame (a fresh 2 MiB allocation per frame costs more in
    page faults than the copy). The check then reads the copy, which is in
    the cache. A chunk is valid until the next call."""

    def __init__(self):
        self._buffer = np.empty(0, np.uint8)

    def __call__(self, record: FrameRecord) -> FrameRecord:
        """``record`` with ``header`` empty and ``check`` done (both cleared);
        CorruptPayloadError from the check."""
        if record.chunk is None:
            return record
        payload = record.chunk
        if record.header:
            n, payload = len(record.header), np.frombuffer(record.chunk, np.uint8)
            if self._buffer.size < n + payload.size:
                self._buffer = np.empty(n + payload.size, np.uint8)
            chunk = self._buffer[:n + payload.size]
            chunk[:n] = np.frombuffer(record.header, np.uint8)
            chunk[n:] = payload
            payload = chunk[n:]
            record.chunk, record.header = chunk, b""
        if record.check is not None:
            check, record.check = record.check, None
            check(payload)
        return record
