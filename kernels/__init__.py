"""CUDA kernels written with numba.cuda, installed as ``pvagpu.kernels``.

Every kernel here has a CPU reference; CI runs each kernel under the CUDA
simulator against that reference and compiles it to PTX for sm_80 and sm_90.
"""
