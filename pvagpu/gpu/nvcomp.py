"""nvcomp's batched LZ4 decompression through its C API (ctypes), the one
binding pvagpu has to nvcomp (device-only code: the calls that decompress
need a device; loading the library, reading its version and sizing the
temporary buffer do not, and are tested without one).

nvcomp runs with its CUDA backend, which validates its input (the hardware
decompression engine does not): it reports a status and the decompressed
size of every block, which :class:`~pvagpu.gpu.decode.DeviceDecoder` checks.
"""
from __future__ import annotations

import ctypes

from ..errors import CorruptPayloadError

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
