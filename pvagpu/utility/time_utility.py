"""pvapy's TimeUtility: an EPICS time stamp as float seconds."""
from __future__ import annotations

from ..ntnda import TimeStamp
from ..pva.exceptions import InvalidArgument


class TimeUtility:
    """``TimeUtility.getTimeStampAsFloat(pvObject['timeStamp'])`` -> seconds."""

    NANOSECONDS_IN_SECOND = 1000000000.0

    @classmethod
    def getTimeStampAsFloat(cls, pvObject, fieldName: str = "") -> float:
        """Seconds past the POSIX epoch of a time stamp: ``pvObject`` itself
        (a p4p Value, a dict or a :class:`pvagpu.ntnda.TimeStamp`), or its
        field ``fieldName`` (e.g. ``'timeStamp'``). A missing field raises
        ``pva.InvalidArgument`` naming it, as pvapy does (it is also a
        :class:`pvagpu.errors.FrameError`)."""
        if isinstance(pvObject, TimeStamp):
            return pvObject.seconds
        if fieldName:
            if fieldName not in pvObject:
                raise InvalidArgument(f"input object does not have field {fieldName}")
            stamp = pvObject[fieldName]
        else:
            stamp = pvObject
        for name in ("secondsPastEpoch", "nanoseconds"):
            if name not in stamp:
                raise InvalidArgument(f"time stamp does not contain the {name} field")
        return stamp["secondsPastEpoch"] + stamp["nanoseconds"] / cls.NANOSECONDS_IN_SECOND
