"""pvapy's TimeUtility: an EPICS time stamp as float seconds."""
from __future__ import annotations

from ..errors import FrameError
from ..ntnda import TimeStamp


class TimeUtility:
    """``TimeUtility.getTimeStampAsFloat(pvObject['timeStamp'])`` -> seconds."""

    NANOSECONDS_IN_SECOND = 1000000000.0

    @classmethod
    def getTimeStampAsFloat(cls, pvObject, fieldName: str = "") -> float:
        """Seconds past the POSIX epoch of a time stamp: ``pvObject`` itself
        (a p4p Value, a dict or a :class:`pvagpu.ntnda.TimeStamp`), or its
        field ``fieldName`` (e.g. ``'timeStamp'``). A missing field is a
        :class:`pvagpu.errors.FrameError` naming it."""
        if isinstance(pvObject, TimeStamp):
            return pvObject.seconds
        if fieldName:
            if fieldName not in pvObject:
                raise FrameError(f"input object does not have field {fieldName}")
            stamp = pvObject[fieldName]
        else:
            stamp = pvObject
        for name in ("secondsPastEpoch", "nanoseconds"):
            if name not in stamp:
                raise FrameError(f"time stamp does not contain the {name} field")
        return stamp["secondsPastEpoch"] + stamp["nanoseconds"] / cls.NANOSECONDS_IN_SECOND
