"""The common frame of the analytics processors: a :class:`Step` (one
operation on an image, on either backend) run by an
:class:`AnalyticsProcessor` (a GpuAdImageProcessor).

A step is built from its JSON arguments on the CPU (files read, matrices
built, everything checked: a bad argument is a ConfigurationError), then
*bound* to the backend on the frame path (:meth:`Step.bind`: its arrays
are uploaded to the device), and applied to each frame
(:meth:`Step.apply`: an image in, an image, a dict of fields or None out).
On the NumPy backend a step uses its numba kernels where it has them
(``"numba": false`` runs the array-module code that the device runs,
on NumPy, which is how the tests check the device code without a GPU).

Reconfiguration (``configure``, the control channel's command, on the
control thread): the new arguments are merged into the running ones and a
new step is built and checked there; if that fails, ConfigurationError
goes back to the caller and the running step stays. Otherwise the new step
waits in ``_pending`` until the next frame takes it (the frame path binds
it). The step it replaces is kept until an event recorded after the work
already queued has completed, so device memory that earlier frames'
kernels may still read is never freed under them.

A frame that does not fit the step (its shape, a colour frame where an
image of one plane is needed) raises :class:`~pvagpu.errors.FrameError`:
the runtime counts it and goes on with the next frame.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigurationError, FrameError
from ..gpu.processor import GpuAdImageProcessor
from .config import Options, step_args


def to_host(array):
    """A NumPy array of a device (or host) array."""
    return array.get() if hasattr(array, "get") and not isinstance(array, np.ndarray) else \
        np.asarray(array)


class Step:
    """One operation; subclasses set ``NAME``, ``PRODUCES`` ("image" or
    "fields") and implement :meth:`parse`, :meth:`apply` and, where the
    output shape differs or the step needs a shape, :meth:`output_shape`."""

    NAME = "Step"
    PRODUCES = "image"
    #: True: a colour frame is refused (the step needs one plane)
    MONO = True

    def __init__(self, args: dict):
        self.args = dict(args)
        opts = Options(self.args, self.NAME)
        self.numba = opts.boolean("numba", True)
        self.parse(opts)
        opts.done()
        self.xp = np
        self.fast = self.numba
        self.reset_stats()

    # -- to implement ---------------------------------------------------------------

    def parse(self, opts: Options) -> None:
        """Read and check the arguments (ConfigurationError)."""

    def output_shape(self, shape: tuple) -> tuple | None:
        """The shape of the image made from an input of ``shape`` (None for
        a fields step); ConfigurationError when ``shape`` does not fit."""
        return None if self.PRODUCES == "fields" else tuple(shape)

    def upload(self, xp) -> None:
        """Put the step's arrays on the backend of ``xp`` (frame path)."""

    def apply(self, image):
        """The result for ``image`` (a backend array)."""
        raise NotImplementedError

    def field_types(self) -> dict:
        """The output fields (``PRODUCES == "fields"``): name -> p4p code;
        ``"a"`` + code is an array."""
        return {}

    def result_attributes(self, attributes, shape: tuple):
        """The NTNDArray attributes of the image made from an input of
        ``shape`` whose attributes are ``attributes``; None: unchanged (the
        default). The cake adds its axes here."""
        return None

    def reset(self) -> None:
        """Drop accumulated state (a configure with ``{"reset": true}``)."""

    def stats(self) -> dict:
        return {}

    def stats_types(self) -> dict:
        return {}

    def reset_stats(self) -> None:
        pass

    # -- framework ----------------------------------------------------------------------

    def bind(self, xp) -> None:
        self.xp = xp
        self.fast = self.numba and xp is np
        self.upload(xp)

    def check_frame(self, image) -> None:
        """FrameError for an image that this step cannot take."""
        if self.MONO and image.ndim != 2:
            raise FrameError(f"{self.NAME}: needs a one-plane (Mono) image, got shape "
                             f"{tuple(image.shape)}")

    def accepts(self, shape) -> tuple | None:
        """:meth:`output_shape`, with its ConfigurationError as FrameError."""
        try:
            return self.output_shape(tuple(shape))
        except ConfigurationError as exc:
            raise FrameError(str(exc)) from None


class AnalyticsProcessor(GpuAdImageProcessor):
    """A GpuAdImageProcessor that runs a step built by :meth:`build`."""

    #: the Step class (processors with one step)
    STEP: type = Step

    def __init__(self, configDict=None):
        GpuAdImageProcessor.__init__(self, configDict)
        self.args = step_args(configDict)
        self.step = self.build(self.args)
        self._pending = None
        self._reset_requested = False
        self._retired = []          # (event, step) kept until the event completed
        self._bound = False
        self._shape = None          # the last input shape the step accepted
        self.nFrames = 0

    def build(self, args: dict):
        """A new step (or chain) for ``args``; ConfigurationError if they are bad."""
        return self.STEP(args)

    # -- configuration -----------------------------------------------------------------

    def configure(self, configDict):
        """Merge ``configDict`` into the running arguments and build the new
        step (checked here; ConfigurationError keeps the running one); the
        next frame takes it. ``{"reset": true}`` drops accumulated state."""
        args = step_args(configDict)
        reset = args.pop("reset", False)
        if not isinstance(reset, bool):
            raise ConfigurationError(f"'reset' must be true or false, got {reset!r}")
        if args:
            merged = {**self.args, **args}
            step = self.build(merged)
            current = self._pending or self.step
            if self._shape is not None:
                step.output_shape(self._shape)
            if self.nFrames and (step.PRODUCES != current.PRODUCES
                                 or step.field_types() != current.field_types()):
                raise ConfigurationError(
                    f"{type(self).__name__}: the new configuration changes what is published "
                    f"({current.PRODUCES} -> {step.PRODUCES}) while frames flow; start a new "
                    f"consumer for it")
            self.args = merged
            self._pending = step
        if reset:
            self._reset_requested = True

    def _current(self):
        """The step for this frame (frame path): takes a pending step."""
        device = self.pipeline.device
        while self._retired and device.event_done(self._retired[0][0]):
            self._retired.pop(0)
        pending = self._pending
        if pending is not None:
            self._pending = None
            old = self.step
            pending.bind(self.xp)
            self.step = pending
            self._shape = None          # the next frame is checked against it
            self._retired.append((device.record_event(device.current_stream()), old))
            self._bound = True
        elif not self._bound:
            self.step.bind(self.xp)
            self._bound = True
        if self._reset_requested:
            self._reset_requested = False
            self.step.reset()
        return self.step

    def setBackend(self, backend, device=None):
        GpuAdImageProcessor.setBackend(self, backend, device)
        self._bound = False

    # -- the frame path ---------------------------------------------------------------

    def processFrame(self, frame):
        step = self._current()
        image = frame.image
        step.check_frame(image)
        if tuple(image.shape) != self._shape:
            step.accepts(image.shape)
            self._shape = tuple(image.shape)
        result = step.apply(image)
        self.nFrames += 1
        if result is not None and step.PRODUCES == "image":
            attributes = step.result_attributes(frame.attributes, tuple(image.shape))
            if attributes is not None:
                frame.attributes = attributes
        return result

    def getOutputFieldTypes(self):
        step = self._pending or self.step
        return step.field_types() if step.PRODUCES == "fields" else {}

    # -- statistics -----------------------------------------------------------------------

    def getStats(self):
        return {"nFrames": self.nFrames, **self.step.stats()}

    def getStatsPvaTypes(self):
        return {"nFrames": "L", **self.step.stats_types()}

    def resetStats(self):
        self.nFrames = 0
        self.step.reset_stats()
