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
"""
from __future__ import annotations

import logging
import time

from p4p import Type, Value
from p4p.server.thread import SharedPV

from ..ntnda import TIME_T, TimeStamp

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

CONTROL_FIELDS = [
    ("consumerId", "I"),
    ("objectTime", "d"),
    ("objectTimestamp", TIME_T),
    ("command", "s"),
    ("args", "s"),
    ("statusMessage", "s"),
]
CONTROL_TYPE = Type(CONTROL_FIELDS)


class ControlChannel:
    """The control record; ``handler(command, args)`` is called (in the PVA
    server's thread, so it must only hand the command on) for each accepted
    command, and the outcome is given back with :meth:`reply`."""

    def __init__(self, server, name: str, consumer_id: int, handler):
        self.name = name
        self.handler = handler
        self.pv = SharedPV(initial=Value(CONTROL_TYPE, {"consumerId": consumer_id}))
        self.pv.put(self._on_put)
        server.add(name, self.pv)

    def _on_put(self, pv, op) -> None:
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
            log.info("control channel %s: %s %s", self.name, command, args)
            self.handler(command, args)
        else:
            log.warning("control channel %s: %s", self.name, message)

    def reply(self, message: str) -> None:
        """Set statusMessage to the outcome of the last command."""
        self.pv.post(Value(CONTROL_TYPE, {"statusMessage": message}))
