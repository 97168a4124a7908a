"""Output to a remote record (pva) or RPC service (rpc), pvapy's -om pva / -om rpc.

With the default output mode (pvas) the consumer serves its output channel
(:class:`~pvagpu.pva.publisher.Publisher`). With ``-om pva`` the output
channel is a record that another server hosts (a consumer started with
``-im pvas``, any PVA server with a writable record) and every object the
processor publishes is PUT into it; with ``-om rpc`` it is sent as the
argument of an RPC to a service of that name (a consumer started with
``-im rpc``), whose reply must not say ``status`` < 0. That is the way
through a firewall that lets connections out only.

:class:`RemoteOutput` has the Publisher's interface (``updateOutputChannel``,
``counters``, ``open``/``is_open``, ``close``). Each PUT or RPC completes
before the next object is sent (so objects arrive in order, and a slow
receiver paces the processor); the server converts the object to its
record's structure (fields of the same name). A failure (no such channel
within ``timeout`` s, a refused PUT, an error status) is counted in
publisherStats.nErrors with a rate-limited log line, and the stream goes on.
"""
from __future__ import annotations

import logging

from p4p import Value
from p4p.client.thread import Context

from ..stats import ErrorLog, PublisherCounters

log = logging.getLogger(__name__)


class RemoteOutputError(RuntimeError):
    """The remote service answered an RPC with an error status."""


class RemoteOutput:
    """Publishes to ``channel`` on a remote server by PUT (``mode`` "pva")
    or RPC ("rpc"), waiting up to ``timeout`` s for each."""

    def __init__(self, channel: str, mode: str = "pva", timeout: float = 5.0):
        if mode not in ("pva", "rpc"):
            raise ValueError(f"remote output mode {mode!r}: expected pva or rpc")
        self.channel = channel
        self.mode = mode
        self.timeout = float(timeout)
        self.counters = PublisherCounters()
        self._context = None
        self._errors = ErrorLog(log)

    @property
    def is_open(self) -> bool:
        return self._context is not None

    def open(self, first=None) -> None:
        """Start the PVA client (the remote record's structure is its own:
        ``first`` is not needed)."""
        if self._context is None:
            self._context = Context("pva", nt=False)
            log.info("output channel %s: %s to a remote %s", self.channel,
                     "PUT" if self.mode == "pva" else "RPC",
                     "record" if self.mode == "pva" else "service")

    def updateOutputChannel(self, value) -> None:
        """Send ``value`` (a Value, or a dict of fields)."""
        try:
            if self._context is None:
                self.open()
            if self.mode == "pva":
                # get=False: no GET of the remote's current value before each PUT
                self._context.put(self.channel, value, timeout=self.timeout, get=False)
            else:
                self._check_reply(self._context.rpc(self.channel, value, timeout=self.timeout))
            self.counters.n_published += 1
        except Exception as exc:  # counted, the stream goes on
            self.counters.n_errors += 1
            self._errors("remote output", "output channel %s (-om %s): cannot send: %s: %s",
                         self.channel, self.mode, type(exc).__name__, exc)

    @staticmethod
    def _check_reply(reply) -> None:
        """An RPC reply with pvapy's ``status`` < 0 is an error."""
        if isinstance(reply, Value) and "status" in reply.keys() and reply["status"] < 0:
            message = reply["errorMessage"] if "errorMessage" in reply.keys() else ""
            raise RemoteOutputError(message or f"status {reply['status']}")

    def reset_stats(self) -> None:
        self.counters.reset()

    def close(self) -> None:
        if self._context is not None:
            self._context.close()
            self._context = None
