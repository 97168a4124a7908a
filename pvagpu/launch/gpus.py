"""The GPUs of this node: which are visible, and their memory and utilisation (NVML).

NVML comes from the ``pynvml`` module (package nvidia-ml-py) when it can
be imported; without it, or without a driver, every figure is None and the
table shows '-' (the GPUs are then counted with ``nvidia-smi -L``). Device numbers are CUDA's (what ``--gpu N`` selects):
with ``CUDA_VISIBLE_DEVICES`` set, CUDA device N is the N-th entry of that
list, which NVML is asked about by index or UUID.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from typing import List, Optional

log = logging.getLogger(__name__)


def _nvml():
    """The initialised pynvml module, or None."""
    try:
        import pynvml
        pynvml.nvmlInit()
        return pynvml
    except Exception:  # noqa: BLE001 - not installed, no driver, no device
        return None


def _cuda_visible() -> Optional[List[str]]:
    text = os.environ.get("CUDA_VISIBLE_DEVICES")
    if text is None:
        return None
    return [item.strip() for item in text.split(",") if item.strip()]


def _smi_count() -> int:
    """GPUs that ``nvidia-smi -L`` lists (0 without it)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def visible_gpus() -> List[int]:
    """CUDA device numbers 0..n-1 of the GPUs this node's consumers can use:
    as many as CUDA_VISIBLE_DEVICES lists (up to the first invalid entry, as
    CUDA reads it), else as NVML counts, else as ``nvidia-smi -L`` lists;
    none without a GPU."""
    listed = _cuda_visible()
    if listed is not None:
        valid = []
        for item in listed:
            if item.startswith("-"):
                break
            valid.append(item)
        return list(range(len(valid)))
    nvml = _nvml()
    if nvml is not None:
        try:
            return list(range(nvml.nvmlDeviceGetCount()))
        except Exception:  # noqa: BLE001
            pass
    return list(range(_smi_count()))


class GpuProbe:
    """Memory and utilisation of CUDA device N through NVML; None for
    every figure when NVML is not there."""

    def __init__(self):
        self.nvml = _nvml()
        self._handles = {}

    @property
    def available(self) -> bool:
        return self.nvml is not None

    def _handle(self, device: int):
        if device in self._handles:
            return self._handles[device]
        listed = _cuda_visible()
        handle = None
        try:
            if listed is None:
                handle = self.nvml.nvmlDeviceGetHandleByIndex(device)
            elif device < len(listed):
                ident = listed[device]
                handle = (self.nvml.nvmlDeviceGetHandleByIndex(int(ident)) if ident.isdigit()
                          else self.nvml.nvmlDeviceGetHandleByUUID(ident))
        except Exception as exc:  # noqa: BLE001
            log.info("NVML has no device %s: %s", device, exc)
        self._handles[device] = handle
        return handle

    def sample(self, device) -> dict:
        """``{'memUsed': bytes, 'memTotal': bytes, 'util': percent}`` of CUDA
        device ``device`` (int or its text); None values when unknown."""
        out = {"memUsed": None, "memTotal": None, "util": None}
        if self.nvml is None or device is None or not str(device).isdigit():
            return out
        handle = self._handle(int(device))
        if handle is None:
            return out
        try:
            mem = self.nvml.nvmlDeviceGetMemoryInfo(handle)
            out["memUsed"], out["memTotal"] = int(mem.used), int(mem.total)
            out["util"] = int(self.nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception as exc:  # noqa: BLE001 - a figure NVML cannot give stays '-'
            log.info("NVML sample of device %s failed: %s", device, exc)
        return out

    def close(self) -> None:
        if self.nvml is not None:
            try:
                self.nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            self.nvml = None
