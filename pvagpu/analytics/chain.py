"""Chain: several analytics steps in sequence, on the device (or the CPU)
without returning to the host between them.

Run::

    pvagpu-consumer -ic det:image -oc _ -sc _ -pc pvagpu.analytics:Chain -pa '{"steps": [
        {"type": "Corrections", "dark": "dark.npy"},
        {"type": "Roi", "x": 0, "y": 0, "width": 1024, "height": 1024},
        {"type": "AzimuthalIntegrator", "poni": "LaB6.poni", "npt": 500}]}'

``steps``: a list of step objects, each ``{"type": NAME, <NAME's
arguments>}`` with NAME one of :data:`STEPS` (the processors of
:mod:`pvagpu.analytics`). Each step's output image is the next step's
input; a step that gives fields (FrameStatistics, PeakFinder,
AzimuthalIntegrator) must be the last; a step that gives nothing for a
frame (Accumulation between publications) ends the chain for that frame.
What the last step gives is published.

``configure`` with ``{"steps": [...]}``: a list of the same length whose
entries have the running step's type (or no ``type``) updates those steps'
arguments (``[{}, {"threshold": 50}]`` changes only the second step);
other lists replace the chain. Steps whose arguments do not change keep
their state (an Accumulation's running sum). Statistics: each step's, as
``step<i>_<name>`` (i from 1).
"""
from __future__ import annotations

from ..errors import ConfigurationError
from .accumulation import AccumulationStep
from .azimuthal import AzimuthalStep
from .base import AnalyticsProcessor, Step
from .binning import BinningStep
from .corrections import CorrectionsStep
from .peaks import PeakFinderStep
from .roi import RoiStep
from .rotation import RotationStep
from .statistics import FrameStatisticsStep

#: step type name -> Step class
STEPS = {cls.NAME: cls for cls in (
    CorrectionsStep, RoiStep, BinningStep, RotationStep, AccumulationStep,
    FrameStatisticsStep, PeakFinderStep, AzimuthalStep)}
STEPS["RegionOfInterest"] = RoiStep


def _step_list(args: dict) -> list:
    steps = args.get("steps")
    unknown = sorted(set(args) - {"steps"})
    if unknown:
        raise ConfigurationError(f"Chain: unknown argument(s) {', '.join(unknown)}; give "
                                 f"{{\"steps\": [{{\"type\": ..., ...}}, ...]}}")
    if not isinstance(steps, list) or not steps:
        raise ConfigurationError(f"Chain: 'steps' must be a non-empty list of steps "
                                 f"({{\"type\": NAME, ...}}; NAME one of "
                                 f"{', '.join(STEPS)}), got {steps!r}")
    for i, step in enumerate(steps, 1):
        if not isinstance(step, dict):
            raise ConfigurationError(f"Chain: step {i} must be an object, got {step!r}")
    return steps


class ChainStep(Step):
    """The steps of a Chain as one step. ``previous``: the running chain,
    whose steps are reused where their arguments do not change."""

    NAME = "Chain"
    MONO = False

    def __init__(self, args: dict, previous: "ChainStep | None" = None):
        self.args = {"steps": _step_list(args)}
        old = previous.steps if previous is not None else []
        merge = len(old) == len(self.args["steps"]) and all(
            spec.get("type", step.NAME) == step.NAME
            for spec, step in zip(self.args["steps"], old))
        self.steps, specs = [], []
        for i, spec in enumerate(self.args["steps"]):
            if merge:
                spec = {**old[i].args, "type": old[i].NAME,
                        **{k: v for k, v in spec.items() if k != "type"}}
            kind = spec.get("type")
            if kind not in STEPS:
                raise ConfigurationError(f"Chain: step {i + 1} has type {kind!r}; types: "
                                         f"{', '.join(STEPS)}")
            own = {k: v for k, v in spec.items() if k != "type"}
            specs.append(spec)
            if merge and own == old[i].args:
                self.steps.append(old[i])
                continue
            try:
                self.steps.append(STEPS[kind](own))
            except ConfigurationError as exc:
                raise ConfigurationError(f"Chain step {i + 1}: {exc}") from None
        self.args["steps"] = specs
        for i, step in enumerate(self.steps[:-1]):
            if step.PRODUCES != "image":
                raise ConfigurationError(f"Chain: step {i + 1} ({step.NAME}) gives fields, "
                                         f"not an image: it can only be the last step")
        self.PRODUCES = self.steps[-1].PRODUCES
        self.xp = None
        self.fast = True

    def output_shape(self, shape):
        for i, step in enumerate(self.steps):
            try:
                shape = step.output_shape(shape)
            except ConfigurationError as exc:
                raise ConfigurationError(f"Chain step {i + 1}: {exc}") from None
        return shape

    def field_types(self):
        return self.steps[-1].field_types()

    def result_attributes(self, attributes, shape):
        *first, last = self.steps
        for step in first:
            shape = step.output_shape(shape)
        return last.result_attributes(attributes, shape)

    def bind(self, xp):
        for step in self.steps:
            if step.xp is not xp or not getattr(step, "_bound", False):
                step.bind(xp)
                step._bound = True
        self.xp = xp

    def check_frame(self, image):
        self.steps[0].check_frame(image)

    def apply(self, image):
        result = image
        for i, step in enumerate(self.steps):
            if i:
                step.check_frame(result)
                step.accepts(result.shape)
            result = step.apply(result)
            if result is None:
                return None
        return result

    def reset(self):
        for step in self.steps:
            step.reset()

    def stats(self):
        return {f"step{i}_{k}": v for i, step in enumerate(self.steps, 1)
                for k, v in step.stats().items()}

    def stats_types(self):
        return {f"step{i}_{k}": t for i, step in enumerate(self.steps, 1)
                for k, t in step.stats_types().items()}

    def reset_stats(self):
        for step in getattr(self, "steps", []):
            step.reset_stats()


class Chain(AnalyticsProcessor):
    """Analytics steps in sequence (see the module docstring)."""

    def build(self, args):
        return ChainStep(args, getattr(self, "step", None))
