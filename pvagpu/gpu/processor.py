"""GpuAdImageProcessor: the processor class users subclass for GPU work.

A subclass implements ``processFrame(frame)`` and, optionally,
``processFrameBatch(batch)``::

    class Threshold(GpuAdImageProcessor):
        def processFrame(self, frame):
            xp = self.xp                   # cupy on a GPU, numpy otherwise
            return {"nAbove": int(xp.count_nonzero(frame.image > 10))}

``frame`` is a :class:`pvagpu.ntnda.Frame` whose ``image`` is the decoded
image as a device array (``(ny, nx)`` or ``(ny, nx, 3)``; a NumPy array on
the NumPy backend), with ``unique_id``, ``attributes``, ``time_stamp``,
``data_time_stamp``, ``color_mode`` and ``codec``.

The hooks, and who calls them:

* ``process(pvObject)`` (the seed's entry point; the runtime calls it for
  each frame) and ``processBatch(values)`` (for a list of frames when the
  consumer accumulates objects, ``-ao``) belong to this class: they run
  the frame pipeline (:mod:`.pipeline`) and call the hooks below. Do not
  override them.
* ``processFrame(frame)``: one decoded frame.
* ``processFrameBatch(batch)``: a :class:`FrameBatch` (``images`` stacked
  on a new first axis, plus the frames) of consecutive frames of one shape
  and dtype. A class that does not define it gets no stacked batches:
  ``processBatch`` runs its frames one at a time through ``processFrame``,
  so a failing frame costs only itself.
* ``getStats()``, ``getStatsPvaTypes()``, ``resetStats()``: the user's
  statistics, as in every pvapy processor. The framework's GPU statistics
  (:data:`GPU_STATS_TYPES`) are separate (``getGpuStats()``, ...); the
  runtime merges both with :func:`processor_stats`,
  :func:`processor_stats_types` and :func:`reset_processor_stats`.

What ``processFrame`` returns is published on the output channel
(:mod:`.results`): an image (an array) as an NTNDArray with the frame's
uniqueId, timestamps and attributes (on a GPU after an asynchronous copy
into pinned memory, published once it completed, in order, at the latest
when the processor stops); a dict of scalars as a structure ``{uniqueId,
timeStamp, <keys>}`` whose field types come from
:meth:`~GpuAdImageProcessor.getOutputFieldTypes` (declare them so the
output channel has that structure from its first update); None: nothing.
``processFrameBatch`` returns a list (one result per frame) or one result.

On a GPU, successive frames are staged and decoded on different CUDA
streams, but each ``processFrame``/``processFrameBatch`` call runs on the
device after the previous one and the copy of its result, so state that a
processor keeps on the device is updated in frame order.

The backend is chosen at ``start()`` from ``configDict['gpu']`` (``auto``,
``none`` or a device number; the consumer's ``--gpu``), unless the runtime
called :meth:`~GpuAdImageProcessor.setBackend` first. Ring options:
``gpuSlots`` (4), ``gpuSlotBytes`` (0 = from the first frame),
``gpuStreams`` (2).
"""
from __future__ import annotations

import numpy as np

from ..errors import BatchFramesError, ConfigurationError
from ..hpc.ad_image_processor import AdImageProcessor
from .backend import Backend, numpy_backend, select_backend
from .device import device_for
from .pipeline import FrameBatch, FramePipeline, unique_id
from .results import ResultValues
from .staging import DEFAULT_SLOTS, DEFAULT_STREAMS

__all__ = ["GpuAdImageProcessor", "FrameBatch", "GPU_STATS_TYPES", "processor_stats",
           "processor_stats_types", "reset_processor_stats"]

#: the GPU statistics: key -> p4p type code
GPU_STATS_TYPES = {
    "gpuBackend": "s", "gpuDevice": "s", "nGpuFrames": "I", "bytesToDevice": "L",
    "decodeTimeMs": "d", "kernelTimeMs": "d", "ringSlots": "I", "ringOccupancy": "I",
    "nRingOverruns": "I", "nDeviceDecodes": "I", "nHostDecodes": "I", "nPending": "I",
}


#: GpuAdImageProcessor's configuration keys (the backend and the staging ring)
GPU_CONFIG_KEYS = frozenset({"gpu", "gpuSlots", "gpuSlotBytes", "gpuStreams"})


class GpuAdImageProcessor(AdImageProcessor):
    """Base class of GPU processors (see the module docstring)."""

    def __init__(self, configDict=None):
        configDict = dict(configDict or {})
        AdImageProcessor.__init__(self, configDict)
        self.gpuSpec = configDict.get("gpu", "auto")
        self.gpuSlots = int(configDict.get("gpuSlots", DEFAULT_SLOTS))
        self.gpuSlotBytes = int(configDict.get("gpuSlotBytes", 0))
        self.gpuStreams = int(configDict.get("gpuStreams", DEFAULT_STREAMS))
        self.backend = None
        self.xp = np
        #: the frame pipeline (:class:`~.pipeline.FramePipeline`); None until
        #: a backend is set
        self.pipeline = None
        self._results = ResultValues(self.getOutputFieldTypes, self.DESCRIPTOR)

    # -- backend ------------------------------------------------------------------

    def setBackend(self, backend: Backend, device=None) -> None:
        """Use ``backend`` (the runtime calls this, or ``start()`` selects
        one); ``device``: its device interface (default: the backend's)."""
        if self.pipeline is not None:
            self.pipeline.flush(wait=True)
        self.backend = backend
        self.xp = backend.xp
        device = device or device_for(backend)
        # streams and buffers belong to the device current when they are made
        with device.activate():
            self.pipeline = FramePipeline(
                device, device.decoder(), self._results,
                lambda value: self.updateOutputChannel(value),
                self.gpuSlots, self.gpuSlotBytes, self.gpuStreams)
        self.logger.info("backend: %s", backend.describe())

    def _pipeline(self) -> FramePipeline:
        if self.pipeline is None:
            self.setBackend(numpy_backend("no backend selected before the first frame"))
        return self.pipeline

    def start(self):
        if self.backend is None:
            self.setBackend(select_backend(self.gpuSpec))
        try:
            self.pipeline.warm_up()
        except Exception as exc:  # noqa: BLE001 - any compile or launch failure
            raise ConfigurationError(
                f"the bit-unshuffle kernel does not run on {self.backend.describe()} "
                f"({type(exc).__name__}: {exc}); check the numba-cuda install, or run "
                f"with --gpu none") from exc

    def stop(self):
        self.flush(wait=True)

    # -- the frame path: entry points of the runtime ------------------------------

    def process(self, pvObject):
        """One frame: decode it and call :meth:`processFrame` (the pipeline);
        RingOverrunError when the staging ring had no room for it."""
        if len(pvObject["dimension"]) == 0:
            return pvObject
        self._pipeline().run_frame(pvObject, self.processFrame)
        return pvObject

    def processBatch(self, values):
        """Frames accumulated by the runtime: stacked into FrameBatches for
        :meth:`processFrameBatch` when the class defines it, else one at a
        time through :meth:`processFrame`. Frames that fail are left out;
        BatchFramesError afterwards names them."""
        pipeline = self._pipeline()
        if type(self).processFrameBatch is not GpuAdImageProcessor.processFrameBatch:
            return pipeline.run_batches(values, self.processFrameBatch)
        failures = []
        for value in values:
            try:
                self.process(value)
            except Exception as exc:  # noqa: BLE001 - counted per frame by the runtime
                failures.append((unique_id(value), exc))
        if failures:
            raise BatchFramesError(failures, len(values) - len(failures))
        return None

    def decodeFrame(self, pvObject):
        """The :class:`~pvagpu.ntnda.Frame` of an NTNDArray on the backend,
        usable on the current stream (None for a frame the staging ring had
        no room for; counted)."""
        return self._pipeline().decode_frame(pvObject)

    def flush(self, wait: bool = False) -> None:
        """Publish the results whose device-to-host copy has completed (all
        of them with ``wait``), in order."""
        if self.pipeline is not None:
            self.pipeline.flush(wait)

    # -- the user's hooks -----------------------------------------------------------

    def processFrame(self, frame):
        """Override: process one decoded frame; return an image, a dict or None."""
        return None

    def processFrameBatch(self, batch: FrameBatch):
        """Override to process a stacked batch; return a list (one result per
        frame) or one result. This default processes the frames one by one."""
        return [self.processFrame(frame) for frame in batch.frames]

    def getOutputFieldTypes(self):
        """Override when ``processFrame`` returns dicts: ``{key: type}`` with
        pvapy-style constants (``pva.DOUBLE``) or p4p codes (``'d'``)."""
        return {}

    def getOutputPvObjectType(self, pvObject):
        """The scalar structure when :meth:`getOutputFieldTypes` declares
        fields, else pvagpu's NTNDArray type."""
        return self._results.output_type()

    # -- the framework's statistics ---------------------------------------------------

    def getGpuStats(self) -> dict:
        """The GPU statistics (:data:`GPU_STATS_TYPES`)."""
        backend = self.backend or numpy_backend()
        stats = {"gpuBackend": backend.name, "gpuDevice": backend.describe()}
        if self.pipeline is None:
            stats.update(nGpuFrames=0, nPending=0, bytesToDevice=0, decodeTimeMs=0.0,
                         kernelTimeMs=0.0, ringSlots=0, ringOccupancy=0, nRingOverruns=0,
                         nDeviceDecodes=0, nHostDecodes=0)
        else:
            stats.update(self.pipeline.stats())
        return stats

    def getGpuStatsPvaTypes(self) -> dict:
        return dict(GPU_STATS_TYPES)

    def resetGpuStats(self) -> None:
        if self.pipeline is not None:
            self.pipeline.reset_stats()


# -- what the runtime calls: the framework's statistics merged with the user's --------

def processor_stats(processor) -> dict:
    """The statistics of any processor for the status channel's userStats:
    the user's ``getStats()``, after the GPU statistics of a
    GpuAdImageProcessor (a user's key wins)."""
    user = processor.getStats() or {}
    if isinstance(processor, GpuAdImageProcessor):
        return {**processor.getGpuStats(), **user}
    return user


def processor_stats_types(processor) -> dict:
    """The PVA types of :func:`processor_stats`' keys."""
    user = processor.getStatsPvaTypes() or {}
    if isinstance(processor, GpuAdImageProcessor):
        return {**processor.getGpuStatsPvaTypes(), **user}
    return user


def reset_processor_stats(processor) -> None:
    """Reset the GPU statistics of a GpuAdImageProcessor, then the user's."""
    if isinstance(processor, GpuAdImageProcessor):
        processor.resetGpuStats()
    processor.resetStats()
