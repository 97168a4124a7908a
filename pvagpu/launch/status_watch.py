"""Watch consumers' status channels: the latest statistics of each, from PV Access alone.

:class:`StatusWatcher` subscribes to every status channel (a p4p client
monitor each, started on :meth:`StatusWatcher.start`) and keeps, per
channel, the last statistics dict (the status record as a dict: pvapy's
structure, see :mod:`pvagpu.pva.status`), the one before it (for the
frames/s between the two), and whether the channel is connected. It works
the same for consumers started by this launcher and for consumers on other
hosts (``pvagpu-launch --monitor``).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

from p4p.client.thread import Context, Disconnected


@dataclass
class ChannelState:
    """What is known of one status channel."""
    channel: str
    stats: Optional[dict] = None
    previous: Optional[dict] = None
    connected: bool = False
    updated: float = 0.0      # time.time() of the last update
    n_updates: int = 0


class StatusWatcher:
    """Monitors status channels; :meth:`snapshot` gives their states."""

    def __init__(self, channels: List[str]):
        self.channels = list(dict.fromkeys(channels))
        self._states: Dict[str, ChannelState] = {c: ChannelState(c) for c in self.channels}
        self._lock = threading.Lock()
        self._context: Optional[Context] = None
        self._subs = []

    def start(self) -> "StatusWatcher":
        if self._context is None:
            self._context = Context("pva", nt=False)
            self._subs = [self._context.monitor(c, self._callback(c), notify_disconnect=True)
                          for c in self.channels]
        return self

    def _callback(self, channel: str):
        def on_update(value):
            with self._lock:
                state = self._states[channel]
                if isinstance(value, Exception):
                    if isinstance(value, Disconnected):
                        state.connected = False
                    return
                state.previous, state.stats = state.stats, value.todict()
                state.connected = True
                state.updated = time.time()
                state.n_updates += 1
        return on_update

    def snapshot(self) -> List[ChannelState]:
        """A copy of every channel's state, in channel order."""
        with self._lock:
            return [ChannelState(**vars(self._states[c])) for c in self.channels]

    def close(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs = []
        if self._context is not None:
            self._context.close()
            self._context = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
