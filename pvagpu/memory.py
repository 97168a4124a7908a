"""Process-wide memory tuning for streaming large frames.

Above glibc's mmap threshold (128 KiB to start with) every frame-sized
buffer gets fresh pages from the kernel, page-faulted and zeroed, and goes
back to the kernel when freed. p4p allocates such a buffer for every frame
it sends (pvxs serialises each update) and every frame it receives. Raising
the mmap and trim thresholds keeps those blocks in the heap for reuse:

* sending 512x512 uint8 frames at full speed over loopback: +20-35 % frames/s
  (benchmarks/sim_server.py);
* receiving 2048x2048 uint16 frames: minor faults per frame from ~200 to ~30,
  ~10 % less CPU (benchmarks/throughput.py).

The cost is that up to ``trim_threshold`` of freed memory stays with the
process. Both command-line tools call :func:`tune_malloc` at start-up; it is
process-wide, so the library never calls it on its own. ``PVAGPU_MALLOPT=0``
in the environment turns it off.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc malloc.h mallopt parameters
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_malloc(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20,
                top_pad: int = 16 << 20) -> bool:
    """Serve blocks of up to ``mmap_threshold`` bytes (32 MiB is the most
    glibc accepts) from the heap and keep up to ``trim_threshold`` bytes of
    freed heap. False (nothing changed) without glibc or with
    ``PVAGPU_MALLOPT=0``."""
    if os.environ.get("PVAGPU_MALLOPT", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))
    ok &= mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))
    ok &= mallopt(_M_TOP_PAD, int(top_pad))
    return bool(ok)
