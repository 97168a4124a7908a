"""Built-in analytics processors for area-detector frames, on the GPU
(CuPy, numba.cuda kernels) and on the CPU (NumPy, numba), with the same
results on both.

Each is a :class:`~pvagpu.gpu.GpuAdImageProcessor`, started with
``pvagpu-consumer -pc pvagpu.analytics:NAME -pa '{...}'`` and
reconfigured while frames flow through the control channel's
``configure`` (checked first; a bad configuration is refused and the
running one stays)::

    FrameStatistics      sum, min, max, mean, std, pixels above a threshold, centroid
    Corrections          dark, flat field, bad-pixel mask
    Binning              N x M sum or mean
    Roi                  region of interest (also RegionOfInterest)
    Rotation             multiples of 90 degrees, flips, transpose
    Accumulation         sum or mean of N frames, published every N frames
    PeakFinder           local maxima (x, y, intensity); hits and hit rate
    AzimuthalIntegrator  1-D radial profile or 2-D cake from a pyFAI PONI geometry
    Chain                several of the above in sequence, on the device

Each module's docstring gives the arguments and an example.
"""
from .accumulation import Accumulation
from .azimuthal import AzimuthalIntegrator
from .binning import Binning
from .chain import Chain
from .corrections import Corrections
from .peaks import PeakFinder
from .roi import RegionOfInterest, Roi
from .rotation import Rotation
from .statistics import FrameStatistics

__all__ = ["FrameStatistics", "Corrections", "Binning", "Roi", "RegionOfInterest", "Rotation",
           "Accumulation", "PeakFinder", "AzimuthalIntegrator", "Chain"]
