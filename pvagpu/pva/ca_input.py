"""Channel Access input (``-im ca``): a CA PV as the consumer's input channel.

pvapy's consumer monitors its input channel over Channel Access with ``-im
ca`` (its CA provider); so does pvagpu, with :class:`CaReceiver`. Each CA
update becomes a p4p Value (:mod:`pvagpu.pva.ca_monitor`): an NTScalar, or
an NTScalarArray for a waveform, with ``value``, ``alarm``, ``timeStamp``
(the CA time stamp, POSIX seconds), ``display``, and for scalars
``control`` and ``valueAlarm``; an enum is an NTEnum. That is what the
processor's ``process(pvObject)`` gets (``pvObject['value']``,
``pvObject['timeStamp.secondsPastEpoch']``, ...), and what the default
pass-through republishes on the output channel.

The receiver counts and hands on updates exactly as the monitor
:class:`~pvagpu.pva.receiver.Receiver` does (it is a
:class:`~pvagpu.pva.frame_intake.FrameIntake`): the first ``-siu`` updates
(the value at connect) are skipped, a delivery without room is an overrun,
connects and disconnects are counted. Each update counts as a frame. CA
updates have no uniqueId: missed-frame accounting is off unless the object
id field (-oif) names a field that the Value has (said once at start).

What does not apply over Channel Access, and is said at start when given:
the monitor queue (-sqs; CA has none), the distributor (-dg/-ds/-dt/-du)
and a field request (-fr). Channel Access needs pyepics (the ``ca`` extra);
waveforms over 16 kB need ``EPICS_CA_MAX_ARRAY_BYTES`` raised, as for any CA
client.

Updates arrive on libca's thread, and with inline delivery (the default)
the processor runs there: a processor that itself waits for Channel Access
(caget, a ``ca://`` metadata channel from the same IOC) should run on a
processing thread (-rqs N).
"""
from __future__ import annotations

import logging
import threading

from p4p import Value

from ..stats import ErrorLog
from .ca_monitor import CaMonitor
from .frame_intake import FrameIntake

log = logging.getLogger(__name__)

#: what the log says instead of a monitor request
CA_REQUEST = "Channel Access monitor (value and alarm changes, with the PV's properties)"


class CaReceiver(FrameIntake):
    """Monitor CA PV ``channel``; hand each update to ``deliver(objectId, value)``
    (see :class:`~pvagpu.pva.frame_intake.FrameIntake`; :meth:`start` needs it).
    ConfigurationError without pyepics."""

    def __init__(self, channel: str, *, oid_field: str = "uniqueId", oid_offset: int = 1,
                 skip_initial_updates: int = 1, deliver=None, sequential_updates: int = 1):
        super().__init__(channel, oid_field=oid_field, oid_offset=oid_offset,
                         skip_initial_updates=skip_initial_updates, deliver=deliver,
                         sequential_updates=sequential_updates)
        self._monitor = CaMonitor(channel, on_value=self._take, on_error=self._bad_update,
                                  on_connection=self._on_connection, properties=True,
                                  needs="-im ca (a Channel Access input channel) needs")
        #: what the consumer's start line reports (no distributor over CA)
        self.distributor: dict = {}
        self.distributor_plugin = ""
        #: ``f(text)`` for the notes at start (set by the command line); None: logged
        self.on_note = None
        self._lock = threading.Lock()
        self._stopped = True
        self._errors = ErrorLog(log)

    @classmethod
    def for_consumer(cls, config, deliver) -> "CaReceiver":
        """The receiver of a consumer's ``config`` (ConsumerConfig); the
        flags that do not apply over Channel Access are named in a warning."""
        ignored = [flag for flag, given in (
            ("-sqs (CA has no monitor queue)", config.server_queue_size > 0),
            ("-dg/-ds/-dt/-du (the distributor is a PV Access plugin)", config.distributor),
            ("-fr (a CA channel has one value)", config.field_request)) if given]
        if ignored:
            log.warning("%s: ignored with -im ca: %s", config.input_name, "; ".join(ignored))
        return cls(config.input_name, oid_field=config.oid_field,
                   oid_offset=config.object_id_offset,
                   skip_initial_updates=config.skip_initial_updates, deliver=deliver,
                   sequential_updates=config.sequential_updates)

    @property
    def request(self) -> str:
        """What the log says instead of a monitor request."""
        return CA_REQUEST

    def start(self) -> None:
        if self.deliver is None:
            raise ValueError(f"CA receiver of {self.channel}: nothing to deliver the updates to")
        with self._lock:
            if not self._stopped:
                return
            self._stopped = False
        self._monitor.open()
        if self.oid_of(Value(self._monitor.values.type_for("d"))) is None:
            self._warned_no_oid = True   # said here, once, instead of at the first update
            self._note(f"CA updates have no field {self.oid_field!r}: each update counts as a "
                       f"frame, missed frames are not counted")

    def stop(self) -> None:
        """Close the monitor; nothing is delivered after this returns."""
        with self._lock:              # waits for an update being handed on
            if self._stopped:
                return
            self._stopped = True
        self._monitor.close()
        self.connected = False

    def _note(self, text: str) -> None:
        log.info("%s: %s", self.channel, text)
        if self.on_note is not None:
            try:
                self.on_note(text)
            except Exception as exc:  # noqa: BLE001 - a display problem only
                log.warning("%s: on_note failed: %s", self.channel, exc)

    # -- libca's thread ----------------------------------------------------------

    def _take(self, value) -> None:
        with self._lock:
            if not self._stopped:
                self._on_value(value)

    def _bad_update(self, why: str) -> None:
        """An update that could not be converted: received, and a receiver error."""
        with self._lock:
            if self._stopped:
                return
            self.counters.n_received += 1
            self.counters.n_errors += 1
        self._errors("ca", "%s: %s", self.channel, why)

    def _on_connection(self, connected: bool) -> None:
        """A connect is counted at its first update (FrameIntake); a
        disconnect here. libca reconnects by itself."""
        if connected:
            log.info("%s: Channel Access connected", self.channel)
        elif self.connected and not self._stopped:
            self.connected = False
            self.counters.n_disconnects += 1
            self._resync = True
            log.warning("%s: disconnected; waiting for the IOC to come back", self.channel)
