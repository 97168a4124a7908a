"""Helpers of the analytics tests: run a processor on the NumPy backend
over frames and read back what it published."""
import numpy as np

from gpu.fakes import started
from pvagpu import ntnda

RNG = np.random.default_rng(12)


def run(cls, config, images, first_id=1):
    """The processor (started, NumPy backend) after processing ``images``,
    and the Values it published."""
    p = started(cls, config)
    for i, image in enumerate(images, first_id):
        p.process(ntnda.value_from_image(np.ascontiguousarray(image), i))
    p.flush(wait=True)
    return p, p.dataPublisher.values


def image_of(value):
    return ntnda.frame_from_value(value).image


def both_paths(config):
    """The configuration with the numba kernels (CPU) and without (the array
    code that the device runs, on NumPy)."""
    return [dict(config, numba=True), dict(config, numba=False)]
