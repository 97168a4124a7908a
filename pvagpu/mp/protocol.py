"""The command protocol between a worker controller and its worker process.

A request is a dict ``{'requestId': int, 'command': str, ...}`` (``configDict``
for ``configure``) put on the command request queue; the worker answers on
the response queue with ``{'requestId', 'returnCode'}`` plus ``returnValue``
(statistics, for ``get_stats`` and ``stop``) or ``error`` (text). These are
pvapy's names and values (pvapy.hpc.hpcController), so both sides speak the
same protocol.
"""
WAIT_TIME = 1.0                 # seconds a controller waits for a response
MIN_STATUS_UPDATE_PERIOD = 10.0
COMMAND_EXEC_DELAY = 0.1

SUCCESS_RETURN_CODE = 0
ERROR_RETURN_CODE = 1

GET_STATS_COMMAND = "get_stats"
RESET_STATS_COMMAND = "reset_stats"
CONFIGURE_COMMAND = "configure"
STOP_COMMAND = "stop"
