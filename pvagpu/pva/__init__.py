"""PV Access: type constants here; p4p I/O (receiver, publisher, status and
control channels, metadata channels, the simulated detector) in the submodules.

The constants ``BOOLEAN``, ``BYTE``, ``UBYTE``, ... ``DOUBLE``, ``STRING`` have
the values of pvapy's ``pvaccess`` constants, so a processor ported from pvapy
keeps its ``getStatsPvaTypes()`` unchanged after replacing
``import pvaccess as pva`` with ``from pvagpu import pva``. They are the
members of :class:`pvagpu.ntnda.PvType` (THE table of scalar types), named
here one by one so that readers and editors see them.

pvapy's object constructors (``PvObject``, ``NtNdArray``, ``NtAttribute``,
``PvInt`` and friends, ``PvTimeStamp``, ``PvDimension``, ``PvCodec``,
``PvAlarm``) are here too, as builders of p4p Values
(:mod:`pvagpu.pva.objects`), and so are its exception names
(``pva.InvalidArgument``, ``pva.QueueEmpty``, ...: :mod:`pvagpu.pva.exceptions`).
"""
from ..ntnda import PvType
# pvapy's exception names; pva.QueueEmpty is queue.Empty, which the metadata
# queues raise (pvapy processors catch it around metadataQueueMap[...].get())
from .exceptions import (ConfigurationError, FieldNotFound, InvalidArgument, InvalidDataType,
                         InvalidRequest, InvalidState, ObjectAlreadyExists, ObjectNotFound,
                         PvaException, QueueEmpty, QueueFull)
from .objects import (NtAttribute, NtNdArray, PvAlarm, PvBoolean, PvByte, PvCodec, PvDimension,
                      PvDouble, PvFloat, PvInt, PvLong, PvObject, PvScalar, PvShort, PvString,
                      PvTimeStamp, PvUByte, PvUInt, PvULong, PvUShort)

BOOLEAN = PvType.BOOLEAN
BYTE = PvType.BYTE
SHORT = PvType.SHORT
INT = PvType.INT
LONG = PvType.LONG
UBYTE = PvType.UBYTE
USHORT = PvType.USHORT
UINT = PvType.UINT
ULONG = PvType.ULONG
FLOAT = PvType.FLOAT
DOUBLE = PvType.DOUBLE
STRING = PvType.STRING

__all__ = ["BOOLEAN", "BYTE", "SHORT", "INT", "LONG", "UBYTE", "USHORT", "UINT", "ULONG",
           "FLOAT", "DOUBLE", "STRING",
           "PvaException", "InvalidArgument", "FieldNotFound", "InvalidDataType",
           "InvalidRequest", "InvalidState", "ObjectAlreadyExists", "ObjectNotFound",
           "ConfigurationError", "QueueEmpty", "QueueFull",
           "PvObject", "PvScalar", "PvBoolean", "PvByte", "PvUByte", "PvShort", "PvUShort",
           "PvInt", "PvUInt", "PvLong", "PvULong", "PvFloat", "PvDouble", "PvString",
           "PvTimeStamp", "PvDimension", "PvCodec", "PvAlarm", "NtAttribute", "NtNdArray"]
