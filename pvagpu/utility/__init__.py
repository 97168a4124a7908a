"""pvapy.utility's names for processors ported from pvapy.

``from pvapy.utility.floatWithUnits import FloatWithUnits`` (and
``adImageUtility``, ``intWithUnits``, ``timeUtility``, ``loggingManager``)
become ``from pvagpu.utility import FloatWithUnits, ...``; the classes have
pvapy's names, methods and behaviour.
"""
from .ad_image_utility import AdImageUtility
from .logging_manager import LoggingManager
from .time_utility import TimeUtility
from .units import FloatWithUnits, IntWithUnits

__all__ = ["AdImageUtility", "FloatWithUnits", "IntWithUnits", "LoggingManager", "TimeUtility"]
