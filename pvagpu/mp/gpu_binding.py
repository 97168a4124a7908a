"""Binding a worker process to one GPU, before it makes any CUDA call.

:func:`bind_gpu` runs first thing in the worker process (its ``run()``,
before the user processor is even unpickled, so before any import of user
code): it sets ``CUDA_VISIBLE_DEVICES`` to the one physical device, so that
every CUDA library in the process (CuPy, numba, nvcomp) sees it as device 0.
Device numbers count the devices the parent sees: with
``CUDA_VISIBLE_DEVICES=2,3`` in the parent, GPU 1 is physical device 3.
If CuPy was already imported in the child (by the main module of a spawned
process), device 0 is also made CuPy's current device.

A forked child inherits its parent's CUDA state, which cannot be used after
a fork, so GPU workers are spawned (see ``UserMpWorker``).
"""
from __future__ import annotations

import os
import sys

from ..errors import ConfigurationError


def physical_device(gpu: int, visible: str | None) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` entry of device ``gpu`` as the parent sees it."""
    if int(gpu) < 0:
        raise ConfigurationError(f"gpu must be a device number >= 0, got {gpu}")
    if visible is None or not visible.strip():
        return str(int(gpu))
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if int(gpu) >= len(entries):
        raise ConfigurationError(f"gpu {gpu}: CUDA_VISIBLE_DEVICES={visible!r} shows only "
                                 f"{len(entries)} device(s)")
    return entries[int(gpu)]


def bind_gpu(gpu: int, parent_visible: str | None) -> str:
    """Make device ``gpu`` (numbered as the parent saw them) this process's only
    device; returns its CUDA_VISIBLE_DEVICES entry."""
    entry = physical_device(gpu, parent_visible)
    os.environ["CUDA_VISIBLE_DEVICES"] = entry
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        cupy.cuda.Device(0).use()
    return entry
