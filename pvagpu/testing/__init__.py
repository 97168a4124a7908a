"""Test support shipped with pvagpu: code that only tests use, kept out of
the modules that run in production (so a reader of those never meets it),
but importable from an installed pvagpu, for the project's tests and for
users testing their own processors.

* :mod:`pvagpu.testing.cudasim`: the warp shuffle for numba's CUDA
  simulator, so the kernels of :mod:`pvagpu.kernels` run under
  ``NUMBA_ENABLE_CUDASIM=1``.
"""
