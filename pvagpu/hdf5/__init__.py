"""Streaming HDF5 output that keeps the detector's compression.

``chunks``: how a frame becomes a chunk (direct chunk framings of the
areaDetector codecs); ``file``: one open SWMR frame file and its NeXus
layout; ``writer``: the writer thread behind a bounded queue. The processor
that uses them is :class:`pvagpu.hpc.Hdf5OutputProcessor`.
"""
