"""The GPU data path: backend choice (CuPy or NumPy), the pinned staging
ring, device decode and :class:`GpuAdImageProcessor`.

Everything here runs without a GPU on the NumPy backend with identical
results; only the code behind the device interface (``CupyDevice``,
``DeviceDecoder``, ``Nvcomp``, ``_DevicePath``) needs CuPy and a device.
"""
from .backend import Backend, parse_gpu_spec, select_backend
from .processor import FrameBatch, GpuAdImageProcessor, GPU_STATS_TYPES
from .staging import HostDevice, SlotRing

__all__ = ["Backend", "parse_gpu_spec", "select_backend", "GpuAdImageProcessor", "FrameBatch",
           "GPU_STATS_TYPES", "SlotRing", "HostDevice"]
