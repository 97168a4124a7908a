"""A Channel Access PV monitored through pyepics, each update as a p4p Value.

pvagpu speaks Channel Access in two places, the ``ca://`` metadata channels
(:mod:`pvagpu.pva.metadata_subscriptions`) and the CA input mode
(``-im ca``, :mod:`pvagpu.pva.ca_input`); both go through this module, so
that a CA update looks the same wherever a processor meets it.

pyepics is an optional dependency (the ``ca`` extra: ``pip install
'pvagpu[ca]'``, or ``pip install pyepics``; its wheel ships libca, no EPICS
installation needed). :func:`import_pyepics` imports it or raises
:class:`~pvagpu.errors.ConfigurationError` naming the extra.

:class:`CaValues` turns one update (the keywords of a pyepics callback)
into a normative-type Value:

* NTScalar (NTScalarArray for a waveform: a channel of more than one
  element) with ``value``, ``alarm`` (``severity``; ``status`` the CA alarm
  condition number; ``message`` its name, e.g. ``UDF``, empty for none) and
  ``timeStamp`` (the CA time stamp in POSIX seconds, :func:`ca_time_stamp`).
  CA element types map to p4p codes: DOUBLE 'd', FLOAT 'f', LONG 'i',
  SHORT 'h', CHAR 'B', ENUM 'H' (the index), STRING 's'; arrays get the
  'a' prefix.
* With ``properties=True`` (the input mode) the PV's properties are added
  as pvapy's CA provider gives them: ``display`` (limits, units, ``format``
  as printf text from the precision), and for numeric scalars ``control``
  (limits) and ``valueAlarm`` (the four alarm limits; CA gives no
  severities, they are 0); an ENUM becomes an NTEnum (``value.index``,
  ``value.choices``). The properties are read once per connection, before
  the monitor starts (CA sends them with a GET of the DBR_CTRL type, not
  with each update), so every update carries them and the structure never
  changes.

:class:`CaMonitor` is the subscription: a pyepics ``PV`` (DBR_TIME, value
and alarm changes) whose updates go through :class:`CaValues` to
``on_value``; ``on_connection(bool)`` hears of connects and disconnects
(pyepics/libca reconnect by themselves). Callbacks run on libca's thread.
"""
from __future__ import annotations

import logging
import math
import threading
from typing import Callable

import numpy as np
from p4p import Type, Value

from ..errors import ConfigurationError
from .subscription import later

log = logging.getLogger(__name__)

#: the optional-dependency extra that brings pyepics
EXTRA = "ca"

#: CA DBR element type (pyepics' type name without time_/ctrl_) -> p4p code
CA_CODES = {"double": "d", "float": "f", "long": "i", "int": "h", "short": "h",
            "char": "B", "enum": "H", "string": "s"}

#: seconds a GET of a PV's properties may take at each connect
PROPERTIES_TIMEOUT = 5.0


def import_pyepics(needs: str):
    """The ``epics`` module; ConfigurationError naming the extra if it is
    missing. ``needs``: what needs it, with its verb ("... need")."""
    try:
        import epics  # noqa: PLC0415 - optional dependency, imported on first use
    except ImportError as exc:
        raise ConfigurationError(
            f"{needs} pyepics: pip install pyepics (or pip install 'pvagpu[{EXTRA}]'); "
            f"importing it failed: {exc}") from None
    return epics


def ca_time_stamp(kw: dict) -> tuple:
    """``(secondsPastEpoch, nanoseconds)`` of a pyepics update, in POSIX
    seconds (pyepics converts the EPICS epoch; its float ``timestamp`` is
    the fallback)."""
    seconds, nanos = kw.get("posixseconds"), kw.get("nanoseconds")
    if seconds is not None and nanos is not None:
        return int(seconds), int(nanos)
    stamp = float(kw.get("timestamp") or 0.0)
    seconds = int(stamp)
    return seconds, int(round((stamp - seconds) * 1e9))


def alarm_message(status: int) -> str:
    """The name of CA alarm condition ``status`` (pyepics' table), '' for none."""
    if not status:
        return ""
    try:
        from epics.dbr import AlarmStatus  # noqa: PLC0415 - pyepics is optional
        return AlarmStatus(int(status)).name
    except (ImportError, ValueError):
        return str(status)


class CaValues:
    """Turns pyepics callback keywords into p4p Values (module docstring);
    ``properties``: add display / control / valueAlarm, enums as NTEnum."""

    def __init__(self, properties: bool = False):
        self.properties = bool(properties)
        self._types: dict = {}

    def _numeric(self, code: str) -> bool:
        """Values of ``code`` carry display limits (properties on, a number)."""
        return self.properties and code.lstrip("a") not in ("s", "H")

    def type_for(self, code: str) -> Type:
        """The Value type of p4p code ``code`` ('d', 'ai', ...; 'H' is an enum)."""
        typ = self._types.get(code)
        if typ is None:
            from p4p.nt import NTEnum, NTScalar  # noqa: PLC0415 - loaded on first use
            if code == "H" and self.properties:
                typ = NTEnum.buildType()
            else:
                numeric = self._numeric(code)
                scalar = numeric and not code.startswith("a")
                typ = NTScalar.buildType(code, display=numeric, control=scalar,
                                         valueAlarm=scalar)
            self._types[code] = typ
        return typ

    def __call__(self, kw: dict) -> Value:
        ca_type = str(kw.get("type") or "")
        base = ca_type.split("_", 1)[1] if "_" in ca_type else ca_type
        code = CA_CODES.get(base)
        if code is None:
            raise ValueError(f"unsupported CA type {ca_type!r}")
        value = kw.get("value")
        nelm = kw.get("nelm")
        if isinstance(value, (np.ndarray, list, tuple)) or (isinstance(nelm, int) and nelm > 1):
            code = "a" + code
            if value is None:
                value = []
            elif np.isscalar(value):
                value = [value]
            if code != "as":
                value = np.asarray(value)
        elif value is None:
            raise ValueError("the update has no value")
        seconds, nanos = ca_time_stamp(kw)
        status = int(kw.get("status") or 0)
        fields = {
            "alarm": {"severity": int(kw.get("severity") or 0), "status": status,
                      "message": alarm_message(status)},
            "timeStamp": {"secondsPastEpoch": seconds, "nanoseconds": nanos},
        }
        if code == "H" and self.properties:
            fields["value"] = {"index": int(value), "choices": list(kw.get("enum_strs") or ())}
        else:
            fields["value"] = value
            if self._numeric(code):
                fields.update(_properties(kw, code))
        return Value(self.type_for(code), fields)


def _properties(kw: dict, code: str) -> dict:
    """display (and for scalars control, valueAlarm) from the CTRL keywords."""
    integer = code[-1] not in "fd"

    def limit(key):
        x = kw.get(key)
        if x is None or (isinstance(x, float) and not math.isfinite(x) and integer):
            return 0
        return int(x) if integer else float(x)

    precision = kw.get("precision")
    fmt = f"%.{int(precision)}f" if precision is not None and not integer else ""
    out = {"display": {"limitLow": float(limit("lower_disp_limit")),
                       "limitHigh": float(limit("upper_disp_limit")),
                       "format": fmt, "units": str(kw.get("units") or "")}}
    if not code.startswith("a"):
        out["control"] = {"limitLow": limit("lower_ctrl_limit"),
                          "limitHigh": limit("upper_ctrl_limit")}
        out["valueAlarm"] = {"lowAlarmLimit": limit("lower_alarm_limit"),
                             "lowWarningLimit": limit("lower_warning_limit"),
                             "highWarningLimit": limit("upper_warning_limit"),
                             "highAlarmLimit": limit("upper_alarm_limit")}
    return out


class CaMonitor:
    """A CA monitor of PV ``name`` (module docstring): each update as a
    Value to ``on_value``; ``on_error(text)`` for an update that cannot be
    converted; ``on_connection(connected)``. ``needs``: the start of the
    error without pyepics (:func:`import_pyepics`), raised here."""

    def __init__(self, name: str, *, on_value: Callable, on_error: Callable,
                 on_connection: Callable, properties: bool = False,
                 needs: str = "Channel Access channels need"):
        self.name = name
        self.epics = import_pyepics(needs)
        self.values = CaValues(properties)
        self.on_value, self.on_error, self.on_connection = on_value, on_error, on_connection
        self._pv = None
        self._lock = threading.Lock()

    def open(self) -> None:
        """Connect and monitor; with properties the monitor starts once they are read."""
        with self._lock:
            if self._pv is not None:
                return
            self._pv = self.epics.PV(self.name, form="time",
                                     auto_monitor=not self.values.properties,
                                     callback=self._on_update,
                                     connection_callback=self._on_connection)

    def _on_connection(self, pvname=None, conn=False, pv=None, **_kw) -> None:
        self.on_connection(bool(conn))
        if conn and self.values.properties and pv is not None:
            # a GET must not be made on libca's callback thread
            later(self._read_properties, pv, name=f"pvagpu-ca-{self.name}")

    def _read_properties(self, pv) -> None:
        """Read the PV's properties, then (first connect) start the monitor."""
        with self._lock:       # open() has returned: closed if pv is not ours
            if pv is not self._pv:
                return
        try:
            if pv.get_ctrlvars(timeout=PROPERTIES_TIMEOUT) is None and pv is self._pv:
                log.warning("%s: its display/control properties could not be read; "
                            "they are left empty", self.name)
        except Exception as exc:  # noqa: BLE001 - the values still come
            log.warning("%s: reading its properties failed: %s", self.name, exc)
        with self._lock:
            if pv is self._pv and pv.auto_monitor is not True:
                pv.auto_monitor = True

    def _on_update(self, **kw) -> None:
        try:
            value = self.values(kw)
        except Exception as exc:  # noqa: BLE001 - reported, the stream goes on
            self.on_error(f"cannot convert CA update: {type(exc).__name__}: {exc}")
            return
        self.on_value(value)

    def close(self) -> None:
        """Stop monitoring and close the channel (never raises)."""
        with self._lock:
            pv, self._pv = self._pv, None
        if pv is None:
            return
        chid = pv.chid
        try:
            pv.clear_callbacks()
            pv.disconnect()
            if chid is not None:
                self.epics.ca.clear_channel(chid)
        except Exception as exc:  # noqa: BLE001 - closing must not raise
            log.debug("CA channel %s: error while closing: %s", self.name, exc)
