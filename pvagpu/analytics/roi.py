"""RegionOfInterest (Roi): a rectangle of each frame.

Run::

    pvagpu-consumer -ic det:image -oc _ -pc pvagpu.analytics:Roi \\
        -pa '{"x": 100, "y": 200, "width": 512, "height": 256}'

Arguments: ``x``, ``y`` (first column and row, 0), ``width``, ``height``
(required). A rectangle outside the frames is a ConfigurationError at
``configure`` (once frames have been seen) and each frame it does not fit
is counted and skipped. Colour frames keep their planes. The output is a
copy of the rectangle (the frame's buffer is reused by the receiver).
"""
from __future__ import annotations

from ..errors import ConfigurationError
from .base import AnalyticsProcessor, Step


class RoiStep(Step):
    NAME = "Roi"
    MONO = False

    def parse(self, opts):
        self.x = opts.integer("x", 0, minimum=0)
        self.y = opts.integer("y", 0, minimum=0)
        self.width = opts.integer("width", None, minimum=1)
        self.height = opts.integer("height", None, minimum=1)
        if self.width is None or self.height is None:
            raise ConfigurationError("Roi: give 'width' and 'height' (and 'x', 'y': the "
                                     "first column and row), e.g. {\"x\": 10, \"y\": 20, "
                                     "\"width\": 256, \"height\": 128}")

    def output_shape(self, shape):
        ny, nx = shape[:2]
        if self.x + self.width > nx or self.y + self.height > ny:
            raise ConfigurationError(
                f"Roi: columns {self.x}..{self.x + self.width - 1}, rows "
                f"{self.y}..{self.y + self.height - 1} are outside a frame of {nx} x {ny} "
                f"(width x height)")
        return (self.height, self.width) + tuple(shape[2:])

    def apply(self, image):
        view = image[self.y:self.y + self.height, self.x:self.x + self.width]
        return view.copy()          # C-contiguous on both backends


class Roi(AnalyticsProcessor):
    """A region of interest (see the module docstring)."""
    STEP = RoiStep


#: the long name
RegionOfInterest = Roi
