"""pvagpu-collector: gather several producers' outputs, in object id order.

:class:`Collector` (a consumer whose input is N producer channels),
:class:`CollectorConfig`, and the :class:`OrderingCache` they put objects in.
"""
from .cache import OrderingCache, collector_cache_size
from .collector import Collector, CollectorConfig

__all__ = ["Collector", "CollectorConfig", "OrderingCache", "collector_cache_size"]
