"""PV Access: type constants here; p4p I/O (receiver, publisher, status and
control channels) in the submodules.

The constants ``BOOLEAN``, ``BYTE``, ``UBYTE``, ... ``DOUBLE``, ``STRING`` have
the values of pvapy's ``pvaccess`` constants, so a processor ported from pvapy
keeps its ``getStatsPvaTypes()`` unchanged after replacing
``import pvaccess as pva`` with ``from pvagpu import pva``.
"""
from ..ntnda import PvType

# One constant per pvData scalar type, taken from the table in pvagpu.ntnda.
globals().update(PvType.__members__)

__all__ = list(PvType.__members__)

# pvapy processors catch ``pva.QueueEmpty`` around metadataQueueMap[...].get();
# pvagpu's metadata queues raise queue.Empty, exported under the same name.
from queue import Empty as QueueEmpty  # noqa: E402,F401  (re-exported)

__all__.append("QueueEmpty")
