"""Channel Access metadata PVs of the simulated detector: an embedded IOC.

``pvagpu-sim-server -mpv NAME`` (a bare name or ``ca://NAME``) serves
``NAME`` as an ``ao`` record of an IOC inside the sim server's process, as
``pvapy-ad-sim-server`` does with its own IOC. The IOC is pythonSoftIOC
(the ``softioc`` package, an optional dependency: ``pip install
'pvagpu[ioc]'``); only its Channel Access server is started (its PV Access
server stays off, so the metadata PVs are not also served next to the
image channel).

Each frame, :meth:`CaMetadataIoc.post` puts one value per PV just before
the frame is stamped and posted; the record is processed in the caller's
thread (``dbPutField``), so its time stamp is the time of the put: a few
microseconds before the frame's, as with pvapy. The cost is about 0.1 ms
per PV and frame, which bounds the frame rate with CA metadata to a few
thousand per second.

EPICS allows one IOC per process, started once, with all its records
defined first: a process can serve one set of CA metadata PVs, and they
stay up until the process ends (a second :class:`SimServer` in the same
process may reuse the same names). The IOC reads the usual EPICS_CA* /
EPICS_CAS* settings (port, interfaces, beacons) when it starts.
"""
from __future__ import annotations

import threading
from typing import Dict, List, Sequence

from ..errors import ConfigurationError

#: the optional-dependency extra that brings the IOC
EXTRA = "ioc"

#: epicsdbbuilder's record name limit
MAX_NAME = 61

_lock = threading.Lock()
#: the records of this process's IOC, by name, once it is started
_records: Dict[str, object] = {}


def _softioc():
    try:
        from softioc import builder, softioc  # noqa: PLC0415 - optional, heavy
    except ImportError as exc:
        raise ConfigurationError(
            f"CA metadata PVs need an embedded IOC from the softioc package: "
            f"pip install 'pvagpu[{EXTRA}]' (or pip install softioc); or serve them over "
            f"PV Access as pva://NAME. Importing softioc failed: {exc}") from None
    return builder, softioc


def check(names: Sequence[str]) -> None:
    """ConfigurationError unless CA PVs ``names`` can be served in this process."""
    if not names:
        return
    _softioc()
    for name in names:
        if len(name) > MAX_NAME:
            raise ConfigurationError(f"CA metadata PV {name!r}: names are at most "
                                     f"{MAX_NAME} characters")
        if any(c.isspace() or c in "\"'$(){}," for c in name):
            raise ConfigurationError(f"CA metadata PV {name!r}: not a valid record name")
    with _lock:
        if _records and set(names) != set(_records):
            raise ConfigurationError(
                f"this process already serves CA metadata PVs {sorted(_records)}; EPICS runs "
                f"one IOC per process and cannot add {sorted(set(names) - set(_records))}")


class CaMetadataIoc:
    """The ``ao`` records of CA metadata PVs ``names`` in this process's IOC."""

    def __init__(self, names: Sequence[str]):
        self.names: List[str] = list(names)
        check(self.names)
        with _lock:
            if not _records:
                builder, softioc = _softioc()
                for name in self.names:
                    _records[name] = builder.aOut(name, initial_value=0.0, PREC=6)
                builder.LoadDatabase()
                # no record here has an on_update callback, so the dispatcher is never used
                softioc.iocInit(dispatcher=_call, enable_pva=False)
        self._records = [_records[name] for name in self.names]

    def post(self, values: Sequence[float]) -> None:
        """Put ``values`` (one per name, in order); each record is processed now."""
        for record, value in zip(self._records, values):
            record.set(value)

    def __len__(self) -> int:
        return len(self._records)


def _call(func, func_args=(), completion=None, completion_args=()):
    """softioc's dispatcher interface, run in the caller's thread."""
    func(*func_args)
    if completion is not None:
        completion(*completion_args)
