"""Decoding staged payloads: one decoder per device, one dispatch rule.

Which payloads are decoded from the staging ring, and which are decoded on
the host by :mod:`pvagpu.codecs` and uploaded, is decided once, by
:func:`decodes_on_device`, for every device: ``""`` (uncompressed), ``lz4``
(one raw LZ4 block; not the HDF5 LZ4-filter chunks that are also sent as
``lz4``) and ``bslz4``. A decoder turns a staged payload of those codecs
into a 1-D array on its device:

* :class:`HostDecoder` (the NumPy backend, :class:`~.device.HostDevice`):
  the host codecs of :mod:`pvagpu.codecs`, the same code as everywhere
  else on the host.
* :class:`DeviceDecoder` (a GPU, :class:`~.device.CupyDevice`): ``""`` is
  a device-to-device copy; ``lz4`` one nvcomp batched-LZ4 call (a batch of
  1); ``bslz4``: the block walk of :mod:`pvagpu.codecs._bslz4_scan` (on the
  host: it reads the 4-byte length before each block) gives the offset and length of every LZ4
  block (:func:`bslz4_blocks`); nvcomp decompresses all blocks in one
  batched call into the bit-shuffled buffer, the raw tail is copied after
  them, and the bit-unshuffle kernel writes the output dtype. nvcomp's
  status and size of every block are checked before the frame is handed
  on. When nvcomp cannot be loaded, lz4 and bslz4 are decoded on the host
  instead (logged once).

Corrupt payloads raise :class:`~pvagpu.errors.CorruptPayloadError`. Output
buffers are new for every frame, so a bad frame leaves nothing behind.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .. import codecs
from ..codecs import _bslz4_scan
from ..codecs import bslz4 as _bslz4
from ..codecs._framing import lz4_decompress_block
from ..codecs.lz4 import is_hdf5_chunk
from ..errors import CorruptPayloadError
from .nvcomp import NVCOMP_SUCCESS, Nvcomp

#: codecs decoded from the staging ring (all others: host decode + upload)
DEVICE_CODECS = ("", "lz4", "bslz4")

_log = logging.getLogger(__name__)


def decodes_on_device(name: str, payload: np.ndarray, uncompressed_size: int) -> bool:
    """Whether a payload is decoded from the staging ring (else: host decode
    + upload)."""
    if name not in DEVICE_CODECS:
        return False
    return not (name == "lz4" and is_hdf5_chunk(payload, uncompressed_size))


def check_uncompressed(nbytes: int, uncompressed_size: int) -> None:
    if nbytes != uncompressed_size:
        raise CorruptPayloadError(
            f"payload of {nbytes} bytes, uncompressedSize {uncompressed_size}")


# ---------------------------------------------------------------------------
# The bslz4 block plan (what nvcomp is given)
# ---------------------------------------------------------------------------

@dataclass
class BlockPlan:
    """Where the LZ4 blocks of a bslz4 payload are and where they expand to."""
    comp_offsets: np.ndarray   # int64, offset of each LZ4 block in the payload
    comp_sizes: np.ndarray     # int64, its length
    out_offsets: np.ndarray    # int64, offset of its output in the shuffled buffer
    out_sizes: np.ndarray      # int64, its expanded size
    tail_offset: int           # raw tail: offset in the payload ...
    tail_bytes: int            # ... and length; it goes to the end of the output
    block_elements: int        # bitshuffle block size in elements
    n_elements: int
    itemsize: int

    @property
    def n_blocks(self) -> int:
        return int(self.comp_sizes.size)

    @property
    def out_bytes(self) -> int:
        return self.n_elements * self.itemsize


def _plan(payload, start, block_bytes, dtype, uncompressed_size):
    itemsize = dtype.itemsize
    block, nblocks, partial, tail = _bslz4.block_geometry(start, block_bytes, dtype,
                                                         uncompressed_size)
    n = uncompressed_size // itemsize
    comp_offsets, comp_sizes = np.empty(nblocks, np.int64), np.empty(nblocks, np.int64)
    size = payload.size
    # no block is parsed on the host (check_from past the end): nvcomp's CUDA
    # backend validates every block itself, and reports each failure
    status, index, end, length = _bslz4_scan.walk(
        payload, start, nblocks, block_bytes, partial * itemsize, size + 1, comp_offsets,
        comp_sizes)
    if status:
        raise _bslz4._scan_error(_bslz4_scan, status, index, nblocks, end, length, payload,
                                 start, block_bytes, n, dtype)
    if end + tail != size:
        raise CorruptPayloadError(
            f"bslz4: {n} {dtype.name} elements end at byte {end + tail}, payload is "
            f"{size} bytes")
    out_sizes = np.full(nblocks, block_bytes, np.int64)
    if partial:
        out_sizes[-1] = partial * itemsize
    return BlockPlan(comp_offsets, comp_sizes, np.arange(nblocks, dtype=np.int64) * block_bytes,
                     out_sizes, tail_offset=end, tail_bytes=tail, block_elements=block,
                     n_elements=n, itemsize=itemsize)


def bslz4_blocks(payload: np.ndarray, dtype, uncompressed_size: int) -> BlockPlan:
    """The block plan of a bslz4 payload (headerless, or with the 12-byte
    HDF5-filter header, recognised as :mod:`pvagpu.codecs.bslz4` does)."""
    dtype = codecs.check_sizes(dtype, int(uncompressed_size))
    payload = codecs.as_bytes(payload)
    return _bslz4.with_layout(_plan, payload, dtype, uncompressed_size)


def lz4_blocks_on_host(payload: np.ndarray, plan: BlockPlan) -> np.ndarray:
    """Host twin of the device's batched LZ4 step: the bit-shuffled buffer
    (uint8, ``plan.out_bytes``), raw tail included."""
    out = np.empty(plan.out_bytes, np.uint8)
    for off, size, dst, expand in zip(plan.comp_offsets, plan.comp_sizes, plan.out_offsets,
                                      plan.out_sizes):
        block = lz4_decompress_block("bslz4", payload[off:off + size], int(expand), "block")
        out[dst:dst + expand] = np.frombuffer(block, np.uint8)
    if plan.tail_bytes:
        out[-plan.tail_bytes:] = payload[plan.tail_offset:plan.tail_offset + plan.tail_bytes]
    return out


# ---------------------------------------------------------------------------
# The decoders
# ---------------------------------------------------------------------------

class HostDecoder:
    """The decoder of :class:`~.device.HostDevice`: :mod:`pvagpu.codecs`."""

    def decodes(self, name: str, payload, uncompressed_size: int) -> bool:
        return decodes_on_device(name, payload, uncompressed_size)

    def warm_up(self) -> None:
        """Nothing to compile: the runtime warms the host codecs up."""

    def decode(self, name: str, staged, dtype: np.dtype, uncompressed_size: int):
        if name == "":
            check_uncompressed(staged.nbytes, uncompressed_size)
            return staged.device.view(dtype)
        return codecs.decode(name, staged.device, dtype, uncompressed_size)


class DeviceDecoder:
    """The decoder of :class:`~.device.CupyDevice` (see the module
    docstring): decodes a staged payload on its stream into a new array."""

    def __init__(self, device, nvcomp: Nvcomp | None = None):
        self.device = device
        self.cp = device.xp
        self._nvcomp = nvcomp
        self._nvcomp_problem = None
        self._nvcomp_warned = False

    @property
    def nvcomp(self) -> Nvcomp:
        if self._nvcomp is None:
            self._nvcomp = Nvcomp()
        return self._nvcomp

    def nvcomp_problem(self) -> str | None:
        """None when nvcomp is usable, else why not (found out once)."""
        if self._nvcomp is None and self._nvcomp_problem is None:
            try:
                self._nvcomp = Nvcomp()
            except (OSError, AttributeError, RuntimeError) as exc:
                self._nvcomp_problem = f"{type(exc).__name__}: {exc}"
        return self._nvcomp_problem

    def decodes(self, name: str, payload, uncompressed_size: int) -> bool:
        if not decodes_on_device(name, payload, uncompressed_size):
            return False
        if name == "":
            return True
        problem = self.nvcomp_problem()
        if problem and not self._nvcomp_warned:
            self._nvcomp_warned = True
            _log.warning("nvcomp cannot be used (%s): lz4 and bslz4 frames are decoded on the "
                         "host", problem)
        return problem is None

    def warm_up(self) -> None:
        """Compile the bit-unshuffle kernel for every element size now:
        numba compiles a kernel on its first launch (about a second per
        signature), which would stall the first bslz4 frames of a stream
        and overrun the staging ring. Waits for the launches."""
        cp, device = self.cp, self.device
        stream = device.new_stream()
        for itemsize in (1, 2, 4, 8):
            data = np.arange(64, dtype=f"u{itemsize}")
            plan = bslz4_blocks(codecs.encode("bslz4", data), data.dtype, data.nbytes)
            with stream:
                shuffled = cp.zeros(plan.out_bytes, cp.uint8)
                out = cp.empty(plan.n_elements, data.dtype)
                self._unshuffle(shuffled, out, plan, stream)
        device.synchronize_stream(stream)

    def decode(self, name: str, staged, dtype: np.dtype, uncompressed_size: int):
        """1-D device array of ``dtype``; ``staged`` from the SlotRing."""
        cp = self.cp
        stream = staged.stream
        with stream:
            if name == "":
                check_uncompressed(staged.nbytes, uncompressed_size)
                out = cp.empty(uncompressed_size, cp.uint8)
                out[...] = staged.device          # device-to-device: the slot is reused later
                return out.view(dtype)
            if name == "lz4":
                out = cp.empty(uncompressed_size, cp.uint8)
                if uncompressed_size == 0:       # nvcomp would get a null output pointer
                    return out.view(dtype)
                sizes = np.array([staged.nbytes], np.int64)
                self._lz4_batch(staged.device, np.zeros(1, np.int64), sizes, out,
                                np.zeros(1, np.int64), np.array([uncompressed_size], np.int64),
                                stream)
                return out.view(dtype)
            if name == "bslz4":
                plan = bslz4_blocks(staged.host, dtype, uncompressed_size)
                shuffled = cp.empty(max(plan.out_bytes, 4), cp.uint8)
                if plan.n_blocks:
                    self._lz4_batch(staged.device, plan.comp_offsets, plan.comp_sizes, shuffled,
                                    plan.out_offsets, plan.out_sizes, stream)
                if plan.tail_bytes:
                    shuffled[plan.out_bytes - plan.tail_bytes:plan.out_bytes] = \
                        staged.device[plan.tail_offset:plan.tail_offset + plan.tail_bytes]
                out = cp.empty(plan.n_elements, dtype)
                self._unshuffle(shuffled, out, plan, stream)
                return out
        raise CorruptPayloadError(f"codec {name!r} is not decoded on the device")

    def _lz4_batch(self, src, comp_offsets, comp_sizes, dst, out_offsets, out_sizes, stream):
        """nvcomp batched LZ4 of blocks of ``src`` into ``dst`` on ``stream``
        (current); CorruptPayloadError on any failed block (synchronizes)."""
        cp = self.cp
        n = int(comp_sizes.size)
        comp_ptrs = cp.asarray(np.asarray(comp_offsets, np.uint64) + np.uint64(src.data.ptr))
        out_ptrs = cp.asarray(np.asarray(out_offsets, np.uint64) + np.uint64(dst.data.ptr))
        d_comp_sizes = cp.asarray(np.asarray(comp_sizes, np.uint64))
        d_out_sizes = cp.asarray(np.asarray(out_sizes, np.uint64))
        actual = cp.zeros(n, cp.uint64)
        statuses = cp.full(n, -1, cp.int32)
        max_chunk = int(np.max(out_sizes))
        temp = self.nvcomp.temp_bytes(n, max_chunk, int(np.sum(out_sizes)), stream.ptr)
        temp_buf = cp.empty(temp, cp.uint8) if temp else None
        self.nvcomp.decompress(comp_ptrs.data.ptr, d_comp_sizes.data.ptr, d_out_sizes.data.ptr,
                               actual.data.ptr, n, temp_buf.data.ptr if temp else 0, temp,
                               out_ptrs.data.ptr, statuses.data.ptr, stream.ptr)
        failed = (statuses != NVCOMP_SUCCESS) | (actual != d_out_sizes)
        n_bad = int(cp.count_nonzero(failed))       # synchronizes this stream only
        if n_bad:
            first = int(cp.argmax(failed))
            raise CorruptPayloadError(
                f"nvcomp: {n_bad} of {n} LZ4 blocks failed (first: block {first}, status "
                f"{int(statuses[first])}, {int(actual[first])} of {int(out_sizes[first])} bytes)")

    def _unshuffle(self, shuffled, out, plan: BlockPlan, stream):
        self.device.bitunshuffle(shuffled, out, plan.n_elements, plan.itemsize,
                                 plan.block_elements, stream)
