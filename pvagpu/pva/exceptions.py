"""pvapy's exception names (``pvaccess.InvalidArgument`` and friends), so
that a ported processor's ``except pva.InvalidArgument:`` lines run
unchanged after ``from pvagpu import pva``.

Each is a :class:`PvaException` and also the pvagpu error or built-in
exception that means the same, so pvagpu code and the runtime's error
counting see them as they see their own errors: a malformed input object
(:class:`InvalidArgument`, :class:`FieldNotFound`, :class:`InvalidDataType`)
is a :class:`~pvagpu.errors.FrameError`; ``pva.ConfigurationError`` is
:class:`pvagpu.errors.ConfigurationError`; ``pva.QueueEmpty`` and
``pva.QueueFull`` are :mod:`queue`'s (metadata queues raise them).
"""
from queue import Empty as QueueEmpty
from queue import Full as QueueFull

from ..errors import ConfigurationError, FrameError, PvagpuError


class PvaException(PvagpuError):
    """Base of pvapy's PV Access exceptions."""


class InvalidArgument(PvaException, FrameError):
    """An argument (usually the input object) is not what the call needs."""


class FieldNotFound(InvalidArgument, KeyError):
    """The object has no field of that name."""

    def __str__(self):              # KeyError would quote the message
        return Exception.__str__(self)


class InvalidDataType(InvalidArgument, TypeError):
    """A field holds a type the call cannot use."""


class InvalidRequest(PvaException, ValueError):
    """A request the server or the client cannot carry out."""


class InvalidState(PvaException, RuntimeError):
    """The object is not in a state that allows the call."""


class ObjectAlreadyExists(PvaException, ValueError):
    """A record or channel of that name exists already."""


class ObjectNotFound(PvaException, LookupError):
    """No record or channel of that name."""


__all__ = ["PvaException", "InvalidArgument", "FieldNotFound", "InvalidDataType",
           "InvalidRequest", "InvalidState", "ObjectAlreadyExists", "ObjectNotFound",
           "ConfigurationError", "QueueEmpty", "QueueFull"]
