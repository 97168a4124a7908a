"""The CUDA kernels of pvagpu.kernels, checked without a GPU (issue 5):

* under numba's CUDA simulator, in a subprocess that sets
  NUMBA_ENABLE_CUDASIM=1 before numba is imported (this pytest process keeps
  the real CUDA target), bit for bit against the bitshuffle library and the
  CPU reference (tests/_kernel_sim_cases.py);
* compiled to PTX for sm_80 and sm_90 with numba.cuda.compile_ptx, which
  needs NVVM (the nvidia-nvvm wheel that numba-cuda[cu13] pulls in through
  cuda-toolkit[nvvm], found by cuda-pathfinder) but no device;
* the CPU reference, against bitshuffle, on more sizes than the simulator
  can afford.
"""
import contextlib
import os
import subprocess
import sys

import bitshuffle
import numpy as np
import pytest

from pvagpu.kernels import bitunshuffle as bu

HERE = os.path.dirname(os.path.abspath(__file__))


def test_kernels_under_the_cuda_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, os.path.join(HERE, "_kernel_sim_cases.py")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "ALL OK" in proc.stdout, proc.stdout + proc.stderr


def test_this_process_is_not_simulated():
    from numba import config
    assert not config.ENABLE_CUDASIM


class _Target:
    """Stands in for the current device while compiling to PTX: numba-cuda
    compiles a kernel's ``cuda.jit(device=True)`` callees for the current
    device's compute capability, which without a GPU does not exist."""

    def __init__(self, cc):
        self.compute_capability = cc


@contextlib.contextmanager
def _compiling_for(cc):
    import numba.cuda.dispatcher as dispatcher
    saved = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: _Target(cc)
    try:
        yield
    finally:
        dispatcher.get_current_device = saved


def _ptx_cases():
    for kernel, signatures in bu.PTX_SIGNATURES:
        for sig in signatures:
            yield pytest.param(kernel, sig, id=f"{kernel.py_func.__name__}{sig[4:]}")


@pytest.mark.parametrize("cc", [(8, 0), (9, 0)], ids=["sm_80", "sm_90"])
@pytest.mark.parametrize("kernel, sig", list(_ptx_cases()))
def test_kernels_compile_to_ptx(kernel, sig, cc):
    from numba import cuda
    with _compiling_for(cc):
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    if kernel is bu.bitunshuffle_kernel:
        assert "shfl.sync.bfly.b32" in ptx          # the warp transpose
        assert "st.local" not in ptx                # accumulators stay in registers


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.float32,
                                   np.int64, np.float64])
@pytest.mark.parametrize("n", [0, 3, 8, 100, 1029, 4096, 8192 + 77, 20000])
def test_cpu_reference_matches_bitshuffle(dtype, n):
    rng = np.random.default_rng(n)
    e = np.dtype(dtype).itemsize
    data = rng.integers(0, 256, n * e, dtype=np.uint8).view(dtype)
    shuffled = bitshuffle.bitshuffle(data).view(np.uint8)
    assert np.array_equal(bu.bitunshuffle_reference(shuffled, n, e), data.view(np.uint8))


@pytest.mark.parametrize("block", [8, 64, 1000, 1024, 3000])
def test_cpu_reference_with_other_block_sizes(block):
    rng = np.random.default_rng(block)
    data = rng.integers(0, 2**16, 5003, dtype=np.uint16)
    shuffled = bitshuffle.bitshuffle(data, block).view(np.uint8)
    assert np.array_equal(bu.bitunshuffle_reference(shuffled, data.size, 2, block),
                          data.view(np.uint8))


def test_bslz4_payload_decodes_through_the_reference():
    """Decompress the LZ4 blocks of a real bslz4 payload on the host and
    unshuffle with the reference: the device decode's structure."""
    from pvagpu.gpu.decode import bslz4_blocks, lz4_blocks_on_host
    rng = np.random.default_rng(3)
    image = rng.poisson(3, (37, 101)).astype(np.uint16)
    payload = bitshuffle.compress_lz4(image.reshape(-1)).view(np.uint8)
    plan = bslz4_blocks(payload, image.dtype, image.nbytes)
    shuffled = lz4_blocks_on_host(payload, plan)
    out = bu.bitunshuffle_reference(shuffled, image.size, 2)
    assert np.array_equal(out.view(np.uint16).reshape(image.shape), image)


def test_bad_arguments():
    with pytest.raises(ValueError):
        bu.bitunshuffle_reference(np.zeros(8, np.uint8), 4, 3)
    with pytest.raises(ValueError):
        bu.bitunshuffle_reference(np.zeros(8, np.uint8), 8, 1, block=12)
    with pytest.raises(ValueError):
        bu.bitunshuffle_reference(np.zeros(4, np.uint8), 8, 1)
