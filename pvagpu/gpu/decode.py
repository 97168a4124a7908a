"""Device decode of areaDetector payloads, and its host twin.

Codecs decoded on the device (:data:`DEVICE_CODECS`):

* ``""`` (uncompressed): no decode, the staged bytes are the pixels;
* ``lz4``: one raw LZ4 block, decoded by nvcomp's batched LZ4 (a batch of 1);
* ``bslz4``: the framing walk (:func:`bslz4_blocks`, on the host: it reads
  only the 4-byte big-endian length before each block) gives the offset and
  length of every LZ4 block; nvcomp decompresses all blocks in one batched
  call into the bit-shuffled buffer, the raw tail is copied after them, and
  :mod:`pvagpu.kernels.bitunshuffle` unshuffles into the output dtype.

Every other codec (blosc, jpeg, zlib, lz4hdf5, and ``lz4`` payloads that
are HDF5 LZ4-filter chunks) is decoded on the host by :mod:`pvagpu.codecs`
and uploaded.

A corrupt payload raises :class:`~pvagpu.errors.CorruptPayloadError`: the
framing walk checks that every block lies inside the payload and that the
blocks and tail add up to uncompressedSize; nvcomp (run with its CUDA
backend, which validates its input, not the hardware decompression engine,
which does not) reports a status and the decompressed size of every block,
and both are checked before the frame is handed on. Output buffers are new
for every frame, so a bad frame never leaves anything behind for the next.

:class:`DeviceDecoder` and :class:`Nvcomp` are the device-only code; the
rest runs (and is tested) on the host.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
from numba import njit

from .. import codecs
from ..codecs import bslz4 as _bslz4
from ..codecs._framing import lz4_decompress_block
from ..codecs.lz4 import is_hdf5_chunk
from ..errors import CorruptPayloadError

#: codecs that the device decodes itself
DEVICE_CODECS = ("", "lz4", "bslz4")


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


@njit(cache=True, nogil=True)
def _walk(buf, pos, nblocks, block_bytes, last_bytes, comp_off, comp_size, out_off, out_size):
    """Fill the block arrays; returns (0, end) or (block index + 1, position)
    of the first block whose length field or data lies outside the payload."""
    n = buf.shape[0]
    out = 0
    for i in range(nblocks):
        if n - pos < 4:
            return i + 1, pos
        clen = ((np.int64(buf[pos]) << 24) | (np.int64(buf[pos + 1]) << 16)
                | (np.int64(buf[pos + 2]) << 8) | np.int64(buf[pos + 3]))
        pos += 4
        expand = last_bytes if (i == nblocks - 1 and last_bytes) else block_bytes
        if clen > n - pos or clen == 0 or clen > expand + expand // 255 + 16:
            return i + 1, pos
        comp_off[i] = pos
        comp_size[i] = clen
        out_off[i] = out
        out_size[i] = expand
        out += expand
        pos += clen
    return 0, pos


def _plan(payload, start, block_bytes, dtype, uncompressed_size):
    itemsize = dtype.itemsize
    block, nblocks, partial, tail = _bslz4.block_geometry(start, block_bytes, dtype,
                                                         uncompressed_size)
    n = uncompressed_size // itemsize
    arrays = [np.empty(nblocks, np.int64) for _ in range(4)]
    bad, end = _walk(payload, start, nblocks, block_bytes, partial * itemsize, *arrays)
    if bad:
        raise CorruptPayloadError(
            f"bslz4: block {bad - 1} of {nblocks} (block size {block_bytes} bytes) at byte "
            f"{end} does not fit the {payload.size}-byte payload")
    if end + tail != payload.size:
        raise CorruptPayloadError(
            f"bslz4: {n} {dtype.name} elements end at byte {end + tail}, payload is "
            f"{payload.size} bytes")
    return BlockPlan(*arrays, tail_offset=end, tail_bytes=tail, block_elements=block,
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


def decodes_on_device(name: str, payload: np.ndarray, uncompressed_size: int) -> bool:
    """Whether the device decodes this payload (else: host decode + upload)."""
    if name not in DEVICE_CODECS:
        return False
    return not (name == "lz4" and is_hdf5_chunk(payload, uncompressed_size))


# ---------------------------------------------------------------------------
# Device-only code: nvcomp through its C API, and the decoder
# ---------------------------------------------------------------------------

NVCOMP_SUCCESS = 0
NVCOMP_DECOMPRESS_BACKEND_CUDA = 2   # validates its input; the hardware engine does not
#: the nvcomp major version whose C API (nvcomp/lz4.h of 6.0) the binding below
#: follows; the signatures differ between majors (5.x has no
#: nvcompBatchedLZ4DecompressGetTempSize), so another major is refused
NVCOMP_MAJOR = 6


class _Properties(ctypes.Structure):
    """nvcompProperties_t (nvcomp.h): version = major * 1000 + minor * 100 + patch."""
    _fields_ = [("version", ctypes.c_uint32), ("cudart_version", ctypes.c_uint32)]


class _LZ4DecompressOpts(ctypes.Structure):
    """nvcompBatchedLZ4DecompressOpts_t (nvcomp 5/6 lz4.h), passed by value."""
    _fields_ = [("backend", ctypes.c_int), ("sort_before_hw_decompress", ctypes.c_int),
                ("data_type", ctypes.c_int), ("bitshuffle_mode", ctypes.c_int),
                ("reserved", ctypes.c_char * 48)]


class Nvcomp:
    """nvcomp's batched LZ4 decompression through ctypes (libnvcomp.so.6 from
    the nvidia-libnvcomp-cu13 wheel, which nvidia-nvcomp-cu13 depends on)."""

    def __init__(self, lib=None):
        if lib is None:
            lib = self._load()
        self.lib = lib
        lib.nvcompGetProperties.argtypes = [ctypes.POINTER(_Properties)]
        lib.nvcompGetProperties.restype = ctypes.c_int
        props = _Properties()
        status = lib.nvcompGetProperties(ctypes.byref(props))
        self.version = props.version
        if status != NVCOMP_SUCCESS or self.version // 1000 != NVCOMP_MAJOR:
            raise RuntimeError(
                f"nvcomp {self.version // 1000}.{self.version % 1000 // 100}."
                f"{self.version % 100} (status {status}): pvagpu calls the C API of nvcomp "
                f"{NVCOMP_MAJOR}.x (nvidia-libnvcomp-cu13 or -cu12 {NVCOMP_MAJOR}.x)")
        size_t, vp = ctypes.c_size_t, ctypes.c_void_p
        lib.nvcompBatchedLZ4DecompressGetTempSize.argtypes = [
            size_t, size_t, _LZ4DecompressOpts, ctypes.POINTER(size_t), size_t, vp]
        lib.nvcompBatchedLZ4DecompressGetTempSize.restype = ctypes.c_int
        lib.nvcompBatchedLZ4DecompressAsync.argtypes = [
            vp, vp, vp, vp, size_t, vp, size_t, vp, _LZ4DecompressOpts, vp, vp]
        lib.nvcompBatchedLZ4DecompressAsync.restype = ctypes.c_int
        self.opts = _LZ4DecompressOpts(backend=NVCOMP_DECOMPRESS_BACKEND_CUDA)

    @staticmethod
    def _load():
        try:
            from nvidia import libnvcomp
            lib = libnvcomp.load_library()
            if lib is not None:
                return lib
        except ImportError:
            pass
        return ctypes.CDLL("libnvcomp.so.6")

    def temp_bytes(self, n_chunks: int, max_chunk: int, total: int, stream_ptr: int) -> int:
        out = ctypes.c_size_t(0)
        status = self.lib.nvcompBatchedLZ4DecompressGetTempSize(
            n_chunks, max_chunk, self.opts, ctypes.byref(out), total, stream_ptr)
        if status != NVCOMP_SUCCESS:
            raise RuntimeError(f"nvcompBatchedLZ4DecompressGetTempSize failed: status {status}")
        return out.value

    def decompress(self, comp_ptrs, comp_sizes, out_sizes, actual_sizes, n_chunks, temp_ptr,
                   temp_bytes, out_ptrs, statuses, stream_ptr) -> None:
        """All pointer arguments are device addresses (ints)."""
        status = self.lib.nvcompBatchedLZ4DecompressAsync(
            comp_ptrs, comp_sizes, out_sizes, actual_sizes, n_chunks, temp_ptr or None,
            temp_bytes, out_ptrs, self.opts, statuses, stream_ptr)
        if status != NVCOMP_SUCCESS:
            raise CorruptPayloadError(f"nvcomp LZ4 decompression could not start: status {status}")


class DeviceDecoder:
    """Decodes a staged payload on its stream into a new device array."""

    def __init__(self, cupy, nvcomp: Nvcomp | None = None):
        self.cp = cupy
        self._nvcomp = nvcomp
        self._nvcomp_problem = None

    @property
    def nvcomp(self) -> Nvcomp:
        if self._nvcomp is None:
            self._nvcomp = Nvcomp()
        return self._nvcomp

    def nvcomp_problem(self) -> str | None:
        """None when nvcomp is usable, else why not (found out once): then
        lz4 and bslz4 are decoded on the host instead of failing every frame."""
        if self._nvcomp is None and self._nvcomp_problem is None:
            try:
                self._nvcomp = Nvcomp()
            except (OSError, AttributeError, RuntimeError) as exc:
                self._nvcomp_problem = f"{type(exc).__name__}: {exc}"
        return self._nvcomp_problem

    def warm_up(self) -> None:
        """Compile the bit-unshuffle kernel for every element size now:
        numba compiles a kernel on its first launch (about a second per
        signature), which would stall the first bslz4 frames of a stream
        and overrun the staging ring. Waits for the launches."""
        cp = self.cp
        stream = cp.cuda.Stream(non_blocking=True)
        for itemsize in (1, 2, 4, 8):
            data = np.arange(64, dtype=f"u{itemsize}")
            plan = bslz4_blocks(codecs.encode("bslz4", data), data.dtype, data.nbytes)
            with stream:
                shuffled = cp.zeros(plan.out_bytes, cp.uint8)
                out = cp.empty(plan.n_elements, data.dtype)
                self._unshuffle(shuffled, out, plan, stream)
        stream.synchronize()

    def decode(self, name: str, staged, dtype: np.dtype, uncompressed_size: int):
        """1-D device array of ``dtype``; ``staged`` from the SlotRing."""
        cp = self.cp
        stream = staged.stream
        with stream:
            if name == "":
                if staged.nbytes != uncompressed_size:
                    raise CorruptPayloadError(
                        f"payload of {staged.nbytes} bytes, uncompressedSize {uncompressed_size}")
                out = cp.empty(uncompressed_size, cp.uint8)
                out[...] = staged.device          # device-to-device: the slot is reused later
                return out.view(dtype)
            if name == "lz4":
                out = cp.empty(uncompressed_size, cp.uint8)
                if uncompressed_size == 0:       # nvcomp would get a null output pointer
                    return out.view(dtype)
                sizes = np.array([staged.nbytes], np.int64)
                self._lz4_batch(staged.device, np.zeros(1, np.int64), sizes, out,
                                np.zeros(1, np.int64), np.array([uncompressed_size], np.int64))
                return out.view(dtype)
            if name == "bslz4":
                plan = bslz4_blocks(staged.host, dtype, uncompressed_size)
                shuffled = cp.empty(max(plan.out_bytes, 4), cp.uint8)
                if plan.n_blocks:
                    self._lz4_batch(staged.device, plan.comp_offsets, plan.comp_sizes, shuffled,
                                    plan.out_offsets, plan.out_sizes)
                if plan.tail_bytes:
                    shuffled[plan.out_bytes - plan.tail_bytes:plan.out_bytes] = \
                        staged.device[plan.tail_offset:plan.tail_offset + plan.tail_bytes]
                out = cp.empty(plan.n_elements, dtype)
                self._unshuffle(shuffled, out, plan, stream)
                return out
        raise CorruptPayloadError(f"codec {name!r} is not decoded on the device")

    def _lz4_batch(self, src, comp_offsets, comp_sizes, dst, out_offsets, out_sizes):
        """nvcomp batched LZ4 of blocks of ``src`` into ``dst`` on the current
        stream; raises CorruptPayloadError on any failed block (synchronizes)."""
        cp = self.cp
        n = int(comp_sizes.size)
        stream_ptr = cp.cuda.get_current_stream().ptr
        comp_ptrs = cp.asarray(np.asarray(comp_offsets, np.uint64) + np.uint64(src.data.ptr))
        out_ptrs = cp.asarray(np.asarray(out_offsets, np.uint64) + np.uint64(dst.data.ptr))
        d_comp_sizes = cp.asarray(np.asarray(comp_sizes, np.uint64))
        d_out_sizes = cp.asarray(np.asarray(out_sizes, np.uint64))
        actual = cp.zeros(n, cp.uint64)
        statuses = cp.full(n, -1, cp.int32)
        max_chunk = int(np.max(out_sizes))
        temp = self.nvcomp.temp_bytes(n, max_chunk, int(np.sum(out_sizes)), stream_ptr)
        temp_buf = cp.empty(temp, cp.uint8) if temp else None
        self.nvcomp.decompress(comp_ptrs.data.ptr, d_comp_sizes.data.ptr, d_out_sizes.data.ptr,
                               actual.data.ptr, n, temp_buf.data.ptr if temp else 0, temp,
                               out_ptrs.data.ptr, statuses.data.ptr, stream_ptr)
        bad = cp.count_nonzero((statuses != NVCOMP_SUCCESS) | (actual != d_out_sizes))
        n_bad = int(bad)                       # synchronizes this stream only
        if n_bad:
            first = int(cp.argmax((statuses != NVCOMP_SUCCESS) | (actual != d_out_sizes)))
            raise CorruptPayloadError(
                f"nvcomp: {n_bad} of {n} LZ4 blocks failed (first: block {first}, status "
                f"{int(statuses[first])}, {int(actual[first])} of {int(out_sizes[first])} bytes)")

    def _unshuffle(self, shuffled, out, plan: BlockPlan, stream):
        from numba import cuda
        from ..kernels.bitunshuffle import launch_bitunshuffle
        nb_stream = cuda.external_stream(stream.ptr)
        # sync=False: numba must not synchronize CuPy's stream on import
        src = cuda.as_cuda_array(shuffled, sync=False)
        dst = cuda.as_cuda_array(out, sync=False)
        launch_bitunshuffle(src, dst, plan.n_elements, plan.itemsize, plan.block_elements,
                            stream=nb_stream)
