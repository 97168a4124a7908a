"""What machine a benchmark ran on: a dict for the JSON and a one-line summary.

Used by every benchmark so that results can be compared only where the
machine is the same. Nothing here needs a GPU; without ``nvidia-smi`` the
GPU entry says "no GPU".
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") or line.startswith("Model"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _memory_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _gpus() -> list:
    """One dict per GPU from nvidia-smi; empty without one."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for row in out.strip().splitlines():
        name, driver, memory = (field.strip() for field in row.split(",", 2))
        gpus.append({"name": name, "driver": driver, "memory": memory})
    return gpus


def describe(**extra) -> dict:
    """The machine as a dict; ``extra`` (e.g. library versions) is added."""
    info = {
        "cpu": _cpu_model(),
        "cores": _usable_cores(),
        "logical_cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "gpus": _gpus(),
    }
    try:
        import numpy
        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    info.update(extra)
    return info


def line(info: dict | None = None) -> str:
    """A one-line summary of :func:`describe`'s dict."""
    info = info or describe()
    gpus = info.get("gpus") or []
    gpu = "; ".join(f"{g['name']} (driver {g['driver']}, {g['memory']})" for g in gpus) or "no GPU"
    fixed = ("cpu", "cores", "logical_cpus", "memory_gib", "os", "python", "gpus")
    rest = ", ".join(f"{k} {v}" for k, v in info.items() if k not in fixed)
    return (f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, "
            f"{gpu}; Python {info['python']}" + (f", {rest}" if rest else ""))


if __name__ == "__main__":
    print(line())
    sys.exit(0)
