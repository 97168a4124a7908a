"""One monitor of a channel on a raw p4p context, and running work off the PVA thread.

:class:`Monitor` pairs a p4p raw subscription with ``sink``, the callable
its values go to; the receiver drains it on the PVA client's thread and can
re-point ``sink`` there (to move between subscriptions without a lock).

:func:`later` runs a function on a thread of its own: closing or opening
an operation waits for the PVA thread, which must not wait for the
receiver's lock, so what the PVA thread decides to open or close is done
from another thread.
"""
from __future__ import annotations

import threading

from ._p4p_compat import fast_pop


class Monitor:
    """One subscription of a channel and where its values go (``sink``);
    ``op``/``pop`` are set once it is opened (``ready``)."""

    __slots__ = ("op", "pop", "sink", "ready")

    def __init__(self, sink):
        self.op = None
        self.pop = None
        self.sink = sink
        self.ready = threading.Event()

    def open(self, context, channel: str, drain, request) -> "Monitor":
        """Subscribe to ``channel`` on ``context`` (a raw Context);
        ``drain(self)`` is called when the FIFO becomes non-empty."""
        self.op = context.monitor(channel, lambda: drain(self), request)
        self.pop = fast_pop(self.op)
        self.ready.set()
        return self

    def close(self) -> None:
        op, self.op = self.op, None
        if op is not None:
            op.close()


def later(target, *args, name: str = "pvagpu-later", delay: float = 0.0) -> None:
    """Run ``target(*args)`` on a thread of its own, after ``delay`` s."""
    if delay > 0:
        timer = threading.Timer(delay, target, args)
        timer.daemon = True
        timer.start()
    else:
        threading.Thread(target=target, args=args, daemon=True, name=name).start()
