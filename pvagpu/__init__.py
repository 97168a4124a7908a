"""pvagpu: GPU-accelerated processing of EPICS PV Access area-detector streams.

Processors mirror pvapy.hpc (``pvagpu.hpc``); NTNDArray conversion lives in
``pvagpu.ntnda``, areaDetector codecs in ``pvagpu.codecs``, PVA type
constants in ``pvagpu.pva``.
"""
__version__ = "0.1.0"
