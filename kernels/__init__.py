"""CUDA kernels written with numba.cuda.

This directory sits at the repository root (the project's layout asks for
it there) and is installed as the subpackage ``pvagpu.kernels`` (the
``package-dir`` mapping in pyproject.toml): import it as ``pvagpu.kernels``.

Every kernel here has a CPU reference; CI runs each kernel under the CUDA
simulator against that reference (the simulator's warp-shuffle emulation
is test code, in :mod:`pvagpu.testing.cudasim`) and compiles it to PTX for
sm_80 and sm_90.
"""
