"""How many worker processes a consumer runs, and on which GPUs.

``--n-workers N`` and ``--gpus 0,1,...`` (ConsumerConfig ``n_workers``,
``gpus``) are resolved here, once, by :func:`plan_workers`:

* ``--gpus`` lists the devices; worker k is bound to ``gpus[k % len]``.
  Without it, ``--gpu N`` binds every worker to device N, ``--gpu none``
  binds none (NumPy), and otherwise (``--gpu auto`` or not given) the
  workers are bound to the visible GPUs in turn, if there are any.
* ``--n-workers N``: N workers; 0 processes in the receiving process
  (pvagpu's behaviour without workers). Without it: one worker per GPU of
  ``--gpus``; else, for a GPU processor (a GpuAdImageProcessor subclass)
  with ``--gpu auto`` (or not given), one worker per visible GPU; else none.

Every other flag works with workers as without: -mc (each worker subscribes
to the metadata channels itself) and -ao N (each worker hands its processor
N frames at a time), see :mod:`.pool`.

A worker bound to a GPU sees it as its only device (``CUDA_VISIBLE_DEVICES``,
set before any CUDA call), so its processor gets ``configDict['gpu'] = '0'``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ...errors import ConfigurationError

#: most workers one consumer may run
MAX_WORKERS = 256


@dataclass(frozen=True)
class WorkerPlan:
    """``n_workers`` processes; ``gpus[k]`` is worker k+1's device (None: unbound)."""
    n_workers: int
    gpus: tuple

    def gpu_of(self, worker_index: int):
        return self.gpus[worker_index] if self.gpus else None


def parse_gpu_list(spec) -> list | None:
    """``--gpus``: device numbers as ``"0,1,3"`` (or a list); None when not given."""
    if spec is None or spec == "":
        return None
    items = list(spec) if isinstance(spec, (list, tuple, range)) else str(spec).split(",")
    gpus = []
    for item in items:
        text = str(item).strip()
        if not text.isdigit():
            raise ConfigurationError(f"--gpus {spec!r}: expected comma-separated device numbers "
                                     f"such as 0,1,2,3, got {text!r}")
        gpus.append(int(text))
    if not gpus:
        raise ConfigurationError(f"--gpus {spec!r}: names no device")
    return gpus


def visible_gpu_count() -> int:
    """CUDA devices this process can see (0 without CuPy or a driver).
    ``CUDA_VISIBLE_DEVICES`` set empty (or to -1) answers without asking CUDA."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    from ...gpu.backend import _probe_cupy   # the one device probe
    _cupy, count = _probe_cupy()
    return count if isinstance(count, int) else 0


def is_gpu_processor(cls) -> bool:
    """True for a GpuAdImageProcessor subclass."""
    from ...gpu import GpuAdImageProcessor
    return cls is not None and issubclass(cls, GpuAdImageProcessor)


def plan_workers(config, processor_class, gpu_count=visible_gpu_count) -> WorkerPlan:
    """The workers of a consumer (see the module docstring). ``gpu_count``
    is called only when the visible GPUs matter."""
    from ...gpu.backend import AUTO, NONE, parse_gpu_spec
    gpus = parse_gpu_list(config.gpus)
    spec = parse_gpu_spec(config.gpu)
    n = config.n_workers
    if n is not None and not 0 <= int(n) <= MAX_WORKERS:
        raise ConfigurationError(f"--n-workers must be 0..{MAX_WORKERS}, got {n}")
    if gpus is None:
        if isinstance(spec, int):
            gpus = [spec] if n else None
        elif spec == AUTO and (n or (n is None and is_gpu_processor(processor_class))):
            gpus = list(range(gpu_count())) or None
    elif spec == NONE:
        raise ConfigurationError("--gpus binds workers to GPUs, --gpu none asks for none: "
                                 "give one of them")
    if n is None:
        n = len(gpus) if gpus and (config.gpus is not None
                                   or is_gpu_processor(processor_class)) else 0
    n = int(n)
    if n and processor_class is None:
        raise ConfigurationError("--n-workers needs a processor class (-pc, with -pf for a file): "
                                 "each worker loads its own instance")
    return WorkerPlan(n, tuple(gpus[k % len(gpus)] for k in range(n)) if n and gpus else ())
