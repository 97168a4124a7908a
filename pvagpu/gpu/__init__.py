"""The GPU data path: backend choice (CuPy or NumPy), the device interface,
the pinned staging ring, decoding, the frame pipeline and
:class:`GpuAdImageProcessor`.

* :mod:`.backend`: ``--gpu`` (:func:`parse_gpu_spec`, the one parser) and
  the backend (:func:`select_backend`);
* :mod:`.device`: the device interface, :class:`CupyDevice` and
  :class:`HostDevice` (every CUDA call of the path is in CupyDevice);
* :mod:`.staging`: the pinned staging ring (:class:`SlotRing`);
* :mod:`.decode`: which payloads the device decodes, and the decoders;
  :mod:`.nvcomp`: the nvcomp binding;
* :mod:`.pipeline`: the frame pipeline, one code path for both backends;
* :mod:`.results`: the Values published for processFrame's results;
* :mod:`.processor`: :class:`GpuAdImageProcessor` (configuration, hooks,
  statistics) and the statistics merge the runtime calls.

Everything runs without a GPU on the NumPy backend, through the same
pipeline; only :class:`CupyDevice` and :mod:`.nvcomp` need a device.
"""
from .backend import Backend, parse_gpu_spec, select_backend
from .device import CupyDevice, HostDevice
from .pipeline import FrameBatch, FramePipeline
from .processor import (GPU_STATS_TYPES, GpuAdImageProcessor, processor_stats,
                        processor_stats_types, reset_processor_stats)
from .staging import SlotRing

__all__ = ["Backend", "parse_gpu_spec", "select_backend", "GpuAdImageProcessor", "FrameBatch",
           "FramePipeline", "GPU_STATS_TYPES", "SlotRing", "HostDevice", "CupyDevice",
           "processor_stats", "processor_stats_types", "reset_processor_stats"]
