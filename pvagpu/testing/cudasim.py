"""Warp shuffles for numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).

numba-cuda's simulator (0.30) implements ``syncthreads`` but none of the
warp intrinsics, so a kernel that calls ``cuda.shfl_xor_sync`` cannot run
in it unchanged. :func:`install` adds ``shfl_xor_sync`` to the simulator's
fake ``cuda`` module, emulated with the simulator's block barrier: every
live thread of the block posts its value, waits, reads its partner's, and
waits again. That is exact for kernels whose shuffles are reached by all
live threads of a block the same number of times (threads that returned
earlier do not take part in simulator barriers); pvagpu's kernels are
written so. Only for tests: it does nothing unless the simulator is on.
"""
from __future__ import annotations

import threading


def install() -> bool:
    """Add the warp shuffle to the simulator; False when it is not active."""
    from numba import config
    if not config.ENABLE_CUDASIM:
        return False
    from numba.cuda.simulator import kernelapi
    module = kernelapi.FakeCUDAModule
    if getattr(module, "_pvagpu_shuffles", False):
        return True

    def shfl_xor_sync(self, mask, value, lane_mask):
        thread = threading.current_thread()
        manager = thread._manager
        board = manager.__dict__.setdefault("_pvagpu_board", {})
        tid = thread.thread_id
        board[tid] = value
        thread.syncthreads()
        partner = (tid & ~31) | ((tid & 31) ^ int(lane_mask))
        result = board[partner]
        thread.syncthreads()
        return type(value)(result)

    module.shfl_xor_sync = shfl_xor_sync
    module._pvagpu_shuffles = True
    return True
