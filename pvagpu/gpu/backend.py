"""The array backend: CuPy on a CUDA device, or NumPy.

``--gpu auto|none|N`` is parsed by :func:`parse_gpu_spec`, the one parser
of that flag (the CLI validates the flag with it, the processor's start()
reads its ``configDict['gpu']`` with it), and resolved once, at start, by
:func:`select_backend`:

* ``none``: NumPy.
* ``auto``: CuPy on device 0 when CuPy imports and sees a device, otherwise
  NumPy; :attr:`Backend.reason` says why NumPy was chosen.
* ``N``: CuPy on device N; :class:`~pvagpu.errors.ConfigurationError` when
  CuPy is missing or there is no device N (an explicit request never falls
  back silently).

Processors get ``backend.xp`` (``numpy`` or ``cupy``) as ``self.xp``, so
they never import CuPy themselves. The only code here that needs a device is
:func:`_probe_cupy`; tests replace it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Optional

import numpy as np

from ..errors import ConfigurationError

AUTO = "auto"
NONE = "none"


def parse_gpu_spec(spec) -> str | int:
    """``'auto'``, ``'none'`` or a device number from a flag value."""
    if spec is None:
        return AUTO
    if isinstance(spec, bool):
        return AUTO if spec else NONE
    if isinstance(spec, int):
        if spec < 0:
            raise ConfigurationError(f"--gpu: device number must be >= 0, got {spec}")
        return spec
    text = str(spec).strip().lower()
    if text in (AUTO, ""):
        return AUTO
    if text in (NONE, "no", "off", "cpu", "numpy"):
        return NONE
    try:
        number = int(text)
    except ValueError:
        raise ConfigurationError(
            f"--gpu takes auto, none or a device number, got {spec!r}") from None
    return parse_gpu_spec(number)


@dataclass
class Backend:
    """The backend in use: ``name`` is ``'numpy'`` or ``'cupy'``."""
    name: str
    xp: ModuleType
    device_id: Optional[int] = None
    device_name: str = "CPU"
    compute_capability: str = ""
    reason: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def is_gpu(self) -> bool:
        return self.name == "cupy"

    def describe(self) -> str:
        """One line for logs, the live table and the status channel."""
        if self.is_gpu:
            cc = f", sm_{self.compute_capability}" if self.compute_capability else ""
            return f"cupy on GPU {self.device_id} ({self.device_name}{cc})"
        return "numpy (CPU)" + (f": {self.reason}" if self.reason else "")

    def asnumpy(self, array) -> np.ndarray:
        """``array`` on the host (no copy for a NumPy array)."""
        if self.is_gpu and not isinstance(array, np.ndarray):
            return self.xp.asnumpy(array)
        return np.asarray(array)


def numpy_backend(reason: str = "") -> Backend:
    return Backend("numpy", np, reason=reason)


def _probe_cupy():
    """``(cupy module, device count)`` or ``(None, reason)``. Device-only."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        return None, f"cupy is not available ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # cupy.cuda.runtime.CUDARuntimeError: no driver / no device
        return None, f"no CUDA device ({type(exc).__name__}: {exc})"
    if count <= 0:
        return None, "no CUDA device"
    return cupy, count


def _device_info(cupy, device_id: int) -> tuple[str, str]:
    props = cupy.cuda.runtime.getDeviceProperties(device_id)
    name = props.get("name", b"")
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    return name, f"{props.get('major', '')}{props.get('minor', '')}"


def select_backend(spec=AUTO) -> Backend:
    """Resolve ``--gpu`` (see the module docstring)."""
    spec = parse_gpu_spec(spec)
    if spec == NONE:
        return numpy_backend("--gpu none")
    cupy, info = _probe_cupy()
    if cupy is None:
        if spec == AUTO:
            return numpy_backend(info)
        raise ConfigurationError(f"--gpu {spec}: {info}")
    count = info
    device_id = 0 if spec == AUTO else spec
    if device_id >= count:
        raise ConfigurationError(
            f"--gpu {spec}: no CUDA device {device_id} (this machine has {count})")
    cupy.cuda.Device(device_id).use()
    name, cc = _device_info(cupy, device_id)
    return Backend("cupy", cupy, device_id=device_id, device_name=name, compute_capability=cc)
