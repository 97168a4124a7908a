"""Served input: a record (pvas) or an RPC service (rpc) that clients send frames into.

pvapy's input modes other than the default monitor (``-im pvas``, ``-im
rpc``) turn the direction round: the consumer serves its input channel on
its own PVA server, and producers (another consumer with ``-om pva`` or
``-om rpc``, a pvput, any client) send frames into it. That is the way
through a firewall that lets connections in only at the consumer's site.

:class:`InputRecord` is the receiver of those modes. It counts and hands
on frames exactly as the monitor :class:`~pvagpu.pva.receiver.Receiver`
does (it is one: skipped initial updates, missed-frame accounting on the
object id, overruns when the delivery has no room), so the rest of the
consumer does not know the difference. What differs:

``pvas``
    a record of the processor's ``getInputPvObjectType()`` (an NTNDArray
    when it gives None, since frames are NTNDArrays) served under the input
    channel's name. Each PUT is posted to the record (monitors of it see
    the frame, as in pvapy, whose record a put updates) and handed to the
    delivery; the PUT completes after the frame was processed (inline
    delivery) or queued, which paces the producer. A frame the delivery has
    no room for fails the PUT with "input queue full" (pvapy answers
    success and counts it); a frame that cannot be handed on fails it with
    the reason.
``rpc``
    an RPC service under that name: each request's argument is a frame;
    the reply is pvapy's status structure, ``status`` 0, or -1 with
    ``errorMessage``.

PUTs and RPCs are served one at a time, in arrival order, on a thread of
the record's own (not the server's shared work queue, so status and
control channels stay responsive while a frame is processed).

pvapy applies ``-siu`` (skip initial updates) in these modes too, so its
documentation runs them with ``-siu 0``; so does pvagpu (the consumer
says so at start when frames would be skipped).
"""
from __future__ import annotations

import logging
import threading

from p4p import Type, Value
from p4p.server.thread import SharedPV
from p4p.util import ThreadedWorkQueue

from ..errors import ConfigurationError
from .objects import ntndarray_type
from .publisher import _as_value
from .receiver import Receiver

log = logging.getLogger(__name__)

#: pvapy's RPC reply (RpcDataReceiver.STATUS_OK / STATUS_ERROR)
RPC_STATUS_TYPE = Type([("status", "i"), ("errorMessage", "s")])


def input_type_of(processor) -> Value:
    """The served input record's initial Value: the processor's
    ``getInputPvObjectType()`` (a Value, a Type or a field list), or an
    empty NTNDArray when it has none or gives None."""
    method = getattr(processor, "getInputPvObjectType", None)
    try:
        spec = method() if method is not None else None
    except Exception as exc:
        raise ConfigurationError(f"processor.getInputPvObjectType() failed: "
                                 f"{type(exc).__name__}: {exc}") from None
    if spec is None:
        return Value(ntndarray_type(), {})
    try:
        return _as_value(spec)
    except Exception as exc:
        raise ConfigurationError(f"processor.getInputPvObjectType() gave {type(spec).__name__}, "
                                 f"not a structure: {exc}") from None


class InputRecord(Receiver):
    """The input channel served on ``server`` (a LocalServer) in ``mode``
    ``"pvas"`` or ``"rpc"``; ``initial``: the record's first Value (pvas,
    see :func:`input_type_of`). The other arguments are the Receiver's."""

    def __init__(self, server, channel: str, *, mode: str = "pvas", initial: Value | None = None,
                 oid_field: str = "uniqueId", oid_offset: int = 1, skip_initial_updates: int = 1,
                 sequential_updates: int = 1, deliver=None):
        if mode not in ("pvas", "rpc"):
            raise ConfigurationError(f"served input mode {mode!r}: expected pvas or rpc")
        super().__init__(channel, oid_field=oid_field, oid_offset=oid_offset,
                         skip_initial_updates=skip_initial_updates, deliver=deliver,
                         sequential_updates=sequential_updates, queue_memory=0, search_period=0)
        self.server = server
        self.mode = mode
        self.initial = initial if initial is not None else Value(ntndarray_type(), {})
        self._served = None
        self._queue = None
        self._put_lock = threading.Lock()

    @property
    def request(self) -> str:
        """What the log says instead of a monitor request."""
        kind = "record clients put frames into" if self.mode == "pvas" else "RPC service"
        return f"served {kind} (-im {self.mode})"

    def start(self) -> None:
        if self.deliver is None:
            raise ValueError(f"input record {self.channel}: nothing to deliver the frames to")
        with self._lock:
            if not self._stopped:
                return
            self._stopped = False
            self._queue = ThreadedWorkQueue(name=f"pvagpu-input-{self.channel}",
                                            daemon=True).start()
            if self.mode == "pvas":
                pv = SharedPV(initial=self.initial, queue=self._queue)
                pv.put(self._on_put)
            else:
                pv = SharedPV(initial=Value(RPC_STATUS_TYPE, {}), queue=self._queue)
                pv.rpc(self._on_rpc)
            self._served = self.server.add(self.channel, pv)
        log.info("serving input channel %s (%s)", self.channel, self.request)
        if self.skip > 0:
            log.warning("input channel %s: the first %d frames sent into it are not processed "
                        "(-siu %d, as pvapy does); give -siu 0 to process every one",
                        self.channel, self.skip, self.skip)

    def stop(self) -> None:
        """Stop serving the channel; no frame is handed on after this returns."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            served, self._served = self._served, None
            queue, self._queue = self._queue, None
        if served is not None:
            self.server.remove(self.channel)
        if queue is not None:
            queue.stop()
        self.connected = False

    # -- the record's thread ---------------------------------------------------

    def _take(self, value) -> str | None:
        """Count and hand on one frame; the reason it was not taken, or None."""
        c = self.counters
        with self._put_lock:
            if self._stopped:
                return "the consumer is stopping"
            overruns, errors = c.n_overruns, c.n_errors
            self._on_value(value)
            if c.n_overruns != overruns:
                return "input queue full: frame dropped (counted as an overrun)"
            if c.n_errors != errors:
                return "frame not handed on (counted as a receiver error; see the consumer's log)"
        return None

    def _on_put(self, pv, op) -> None:
        value = op.value()
        try:
            pv.post(value)     # monitors of the input record see the frame
        except Exception as exc:  # noqa: BLE001 - the frame is still processed
            log.debug("%s: put not posted to the record: %s", self.channel, exc)
        reason = self._take(value)
        op.done(error=reason) if reason else op.done()

    def _on_rpc(self, pv, op) -> None:
        reason = self._take(op.value())
        reply = {"status": -1, "errorMessage": reason} if reason else {"status": 0}
        op.done(Value(RPC_STATUS_TYPE, reply))
