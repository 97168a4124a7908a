"""The consumer's PVA server and its output channel.

:class:`LocalServer` is the one p4p server of a consumer: it hosts the
output, status and control channels (and records that processors add, with
pvapy's ``addRecord`` / ``update`` / ``removeRecord`` names, so that it can be
a processor's ``pvaServer``). It binds its port only when the first record is
added.

:class:`Publisher` is the output channel: the object a processor's
``dataPublisher`` is, with ``updateOutputChannel(value)``. Its record is
created from the first object (the processor's ``getOutputPvObjectType``
of the first input, as pvapy does) and every later object is posted to it;
posting a received ``Value`` shares its arrays, it copies no pixels.

p4p posts only Values of the very Type object the record was opened with;
a Value whose structure is equal but whose Type was built elsewhere (an
NTNDArray a processor built itself, pvapy's ``NtNdArray(extraFields)``
against tiles from ``generateNtNdArray2D``) is refused by p4p. The
publisher then posts it converted to the open type (``_p4p_compat.as_type``): p4p copies the fields
into the open type, sharing the arrays (no pixel copy: about 30 us more
than a plain post for a 2048x2048 uint16 frame, benchmarks/publisher_convert.py),
and clients see nothing of it (``n_converted`` counts these posts). Equal means the
same field names, order and types; type ids (labels) are not compared.

A Value of a different structure (another field set) is refused once the
record has published anything: counted as a publish error
(``publisherStats.nErrors``) and logged (rate-limited), as pvapy refuses it
("structure definitions do not match"). PV Access cannot change a
channel's type under a subscription, so the alternative, re-opening the
record, would make clients reconnect and miss updates without knowing. The
one exception is the record's first publication: a record opened from a
type or from the input's snapshot (pvapy's ``getOutputPvObjectType``) that
has published nothing yet is re-opened with the first object's structure
(counted in ``n_type_changes``, logged): no client can have missed
anything then. A processor should publish one structure (return it from
``getOutputPvObjectType``).
"""
from __future__ import annotations

import logging
import threading

from p4p import Type, Value
from p4p.server import Server, StaticProvider
from p4p.server.thread import SharedPV

from ..stats import ErrorLog, PublisherCounters
from ._p4p_compat import as_type, is_type_mismatch

log = logging.getLogger(__name__)


class StructureMismatch(ValueError):
    """An object of another structure than the open record's, after the record published."""


def _unlabelled(spec):
    """A p4p type spec without its type ids (what "equal structure" compares)."""
    if isinstance(spec, tuple) and len(spec) == 3 and isinstance(spec[0], str):
        return (spec[0], [(name, _unlabelled(sub)) for name, sub in spec[2]])
    return spec


def _as_value(obj) -> Value:
    """A p4p Value for a record's first object: a Value, a Type, or a list of
    (name, type code) pairs."""
    if isinstance(obj, Value):
        return obj
    if isinstance(obj, Type):
        return Value(obj, {})
    return Value(Type(list(obj)), {})


class LocalServer:
    """The consumer's p4p server (started on the first record)."""

    def __init__(self, name: str = "pvagpu"):
        self._provider = StaticProvider(name)
        self._server = None
        self._pvs = {}
        self._lock = threading.Lock()

    def add(self, name: str, pv: SharedPV) -> SharedPV:
        """Serve ``pv`` as ``name``."""
        with self._lock:
            if name in self._pvs:
                raise ValueError(f"channel {name!r} is already served by this consumer")
            self._provider.add(name, pv)
            self._pvs[name] = pv
            if self._server is None:
                self._server = Server(providers=[self._provider])
        return pv

    def remove(self, name: str) -> None:
        with self._lock:
            pv = self._pvs.pop(name, None)
            if pv is not None:
                self._provider.remove(name)
                pv.close()

    @property
    def channels(self) -> list:
        return sorted(self._pvs)

    def stop(self) -> None:
        with self._lock:
            for name, pv in list(self._pvs.items()):
                self._provider.remove(name)
                pv.close()
            self._pvs.clear()
            if self._server is not None:
                self._server.stop()
                self._server = None

    # pvapy PvaServer names, for processors that add their own records
    def addRecord(self, name, pvObject, onWriteCallback=None):
        pv = SharedPV(initial=_as_value(pvObject))
        if onWriteCallback is not None:
            @pv.put
            def _on_put(shared, op):
                try:
                    shared.post(op.value())
                    onWriteCallback(shared.current())
                    op.done()
                except Exception as exc:  # reported to the client
                    op.done(error=str(exc))
        self.add(name, pv)

    def removeRecord(self, name):
        self.remove(name)

    def hasRecord(self, name):
        return name in self._pvs

    def update(self, name, pvObject):
        self._pvs[name].post(pvObject)


class Publisher:
    """The output channel; ``updateOutputChannel(value)`` publishes."""

    def __init__(self, server: LocalServer, channel: str):
        self.server = server
        self.channel = channel
        self.counters = PublisherCounters()
        self._pv = None
        self._type = None
        self._spec = None         # the open type's aspy() and its unlabelled form
        self._shape = None
        self.n_type_changes = 0
        self.n_converted = 0
        self._posted = False      # the record has published an object
        self._errors = ErrorLog(log)

    @property
    def is_open(self) -> bool:
        return self._pv is not None

    def open(self, first) -> None:
        """Create the record from ``first`` (a Value, a Type or a field list)."""
        if self._pv is not None:
            return
        initial = _as_value(first)
        self._set_type(initial.type())
        try:
            pv = SharedPV(initial=initial)
        except (RuntimeError, ValueError, TypeError):
            # e.g. an NTNDArray whose value union is still unselected (a
            # source's empty initial record): the record starts empty
            pv = SharedPV(initial=Value(self._type, {}))
        self._pv = self.server.add(self.channel, pv)
        log.info("serving output channel %s", self.channel)

    def updateOutputChannel(self, value) -> None:
        """Publish ``value`` (a Value, or a dict of fields of the record)."""
        try:
            if self._pv is None:
                self.open(value)
            elif not isinstance(value, Value):
                value = Value(self._type, value)
            try:
                self._pv.post(value)
            except RuntimeError as exc:
                if not is_type_mismatch(exc):
                    raise
                self._post_other_type(value)
            self._posted = True
            self.counters.n_published += 1
        except Exception as exc:  # counted, the stream goes on
            self.counters.n_errors += 1
            self._errors("publish", "output channel %s: cannot publish: %s: %s",
                         self.channel, type(exc).__name__, exc)

    def _set_type(self, value_type: Type) -> None:
        self._type = value_type
        self._spec = value_type.aspy()
        self._shape = _unlabelled(self._spec)

    def _post_other_type(self, value: Value) -> None:
        """Post a Value whose Type object is not the record's: converted if
        its structure is equal; else, before the record's first
        publication, the record is re-opened with its type, and after it
        the object is refused (see the module docstring)."""
        spec = value.type().aspy()
        if spec == self._spec or _unlabelled(spec) == self._shape:
            self._pv.post(as_type(value, self._type))
            self.n_converted += 1
            return
        old = {name for name, _ in self._spec[2]}
        new = {name for name, _ in spec[2]}
        change = (f"fields added: {sorted(new - old) or 'none'}; removed: "
                  f"{sorted(old - new) or 'none'}; or field types changed")
        if self._posted:
            raise StructureMismatch(
                f"an object of another structure than the record's ({change}); refused, as "
                "pvapy refuses it: publish one structure, e.g. return it from "
                "getOutputPvObjectType")
        self._pv.close()
        self._pv.open(value)
        self._set_type(value.type())
        self.n_type_changes += 1
        log.info("output channel %s: re-opened before its first publication for the first "
                 "object's structure (%s)", self.channel, change)

    def reset_stats(self) -> None:
        self.counters.reset()

    def close(self) -> None:
        if self._pv is not None:
            self.server.remove(self.channel)
            self._pv = None
