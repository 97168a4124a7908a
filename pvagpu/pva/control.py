"""The control channel: commands to a running consumer, as pvapy's.

Structure (INTEROP 3.7): consumerId uint32, objectTime double,
objectTimestamp time_t, command string, args string, statusMessage string.

Protocol: a client PUTs ``command`` (and ``args``). Before the PUT
completes the record shows the command, its args and ``statusMessage``
"Command successful" (or "Ignoring invalid request (...)" for a missing or
unknown command), with objectTime/objectTimestamp set to now. The command
then runs and its outcome replaces ``statusMessage``:

=============  ===============================================================
configure      args is a JSON object; "Configuration successful" or
               "Configuration failed: <reason>"
reset_stats    "Stats reset successful"
get_stats      statistics reported and published; "Stats update successful"
stop           "Stop flag set"; the consumer stops
=============  ===============================================================

Access: a PUT from a client that the channel's allow list
(:class:`~pvagpu.pva.access.ControlAccess`; by default the account running
the consumer, from this host) does not name fails with "Access denied"; the
record is left as it was, the refusal is counted (:attr:`ControlChannel.n_rejected`)
and logged at most once per 5 s.
"""
from __future__ import annotations

import logging
import time

from p4p import Type, Value
from p4p.server.thread import SharedPV

from ..ntnda import TIME_T, TimeStamp
from ..stats import ErrorLog
from .access import ControlAccess

log = logging.getLogger(__name__)

CONFIGURE, RESET_STATS, GET_STATS, STOP = "configure", "reset_stats", "get_stats", "stop"
COMMANDS = (CONFIGURE, RESET_STATS, GET_STATS, STOP)

#: The status messages of each command's outcome (pvapy's texts).
SUCCESS = {
    CONFIGURE: "Configuration successful",
    RESET_STATS: "Stats reset successful",
    GET_STATS: "Stats update successful",
    STOP: "Stop flag set",
}
ACCEPTED = "Command successful"
DENIED = "Access denied"

CONTROL_FIELDS = [
    ("consumerId", "I"),
    ("objectTime", "d"),
    ("objectTimestamp", TIME_T),
    ("command", "s"),
    ("args", "s"),
    ("statusMessage", "s"),
]
CONTROL_TYPE = Type(CONTROL_FIELDS)


#: The control channel's statistics (the status record's ``controlStats``).
CONTROL_STATS_TYPES = (("nCommands", "I"), ("nRejected", "I"))


class ControlChannel:
    """The control record; ``handler(command, args)`` is called (in the PVA
    server's thread, so it must only hand the command on) for each accepted
    command, and the outcome is given back with :meth:`reply`.
    ``access``: who may send commands (:class:`~pvagpu.pva.access.ControlAccess`
    or its ``--control-allow`` text); None: the account running this
    process, from this host. :attr:`n_commands` counts the accepted
    commands, :attr:`n_rejected` the PUTs refused for access."""

    def __init__(self, server, name: str, consumer_id: int, handler, access=None,
                 id_field: str = "consumerId"):
        self.name = name
        self.handler = handler
        self.access = access if isinstance(access, ControlAccess) else ControlAccess.parse(access)
        self.n_commands = 0
        self.n_rejected = 0
        self._denials = ErrorLog(log)
        # a collector's record names its id collectorId, as pvapy's does
        kind = CONTROL_TYPE if id_field == CONTROL_FIELDS[0][0] else Type(
            [(id_field, CONTROL_FIELDS[0][1])] + CONTROL_FIELDS[1:])
        self.pv = SharedPV(initial=Value(kind, {id_field: consumer_id}))
        self.pv.put(self._on_put)
        server.add(name, self.pv)

    def counts(self) -> dict:
        """The control channel's statistics: accepted and refused commands."""
        return {"nCommands": self.n_commands, "nRejected": self.n_rejected}

    def _allowed(self, op) -> bool:
        try:
            account, peer, roles = op.account(), op.peer(), op.roles()
        except Exception:   # noqa: BLE001 - no credentials: not allowed
            account, peer, roles = "", "", ()
        if self.access.check(account, peer, roles):
            return True
        self.n_rejected += 1
        self._denials("denied", "control channel %s: command from account %r at %s refused "
                      "(not in the allow list: %s); %d refused so far", self.name, account, peer,
                      self.access.describe(), self.n_rejected)
        op.done(error=f"{DENIED}: account {account!r} at {peer} may not command {self.name}")
        return False

    def _on_put(self, pv, op) -> None:
        if not self._allowed(op):
            return
        request = op.value()
        changed = request.changedSet()
        command = request["command"] if "command" in changed else ""
        args = request["args"] if "args" in changed else ""
        now = time.time()
        if not command:
            message = "Ignoring invalid request (no command specified)"
        elif command not in COMMANDS:
            message = (f"Ignoring invalid request (unrecognized command specified): {command!r}; "
                       f"commands: {', '.join(COMMANDS)}")
        else:
            message = ACCEPTED
        pv.post(Value(CONTROL_TYPE, {"objectTime": now, "objectTimestamp": TimeStamp.from_seconds(now)._asdict(),
                                     "command": command, "args": args,
                                     "statusMessage": message}))
        op.done()
        if message is ACCEPTED:
            self.n_commands += 1
            log.info("control channel %s: %s %s", self.name, command, args)
            self.handler(command, args)
        else:
            log.warning("control channel %s: %s", self.name, message)

    def reply(self, message: str) -> None:
        """Set statusMessage to the outcome of the last command."""
        self.pv.post(Value(CONTROL_TYPE, {"statusMessage": message}))
