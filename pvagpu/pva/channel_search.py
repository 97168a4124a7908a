"""Finding a channel within about half a second of its server appearing.

pvxs searches for a channel it has not found with a growing back-off (1,
2, 3, ... up to 30 s between searches), and its ``hurryUp()`` works at most
once per 30 s, so a client started before its server found it up to 30 s
late (5-7 s in a typical start-up). A channel opened afresh (dropped from
the context's cache and opened again) is searched for at once.

:class:`ChannelSearch` is one thread that does that for the channels it
watches: every :data:`SEARCH_PERIOD` s, each watched channel that is still
waiting (has delivered nothing since it was opened) is re-opened by its
owner's ``reopen()``. That is one search request per period per waiting
channel, and nothing once it delivers. The input channel's
:class:`~pvagpu.pva.receiver.Receiver` and the pva:// metadata channels
(:class:`~pvagpu.pva.metadata.MetadataChannels`) use it; so the first
update arrives within about a period of the server appearing, and after a
disconnect the same holds for the reconnect.
"""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)

#: seconds between fresh searches while a channel delivers nothing
SEARCH_PERIOD = 0.5


class Watch:
    """One watched channel: ``waiting()`` says whether it still waits,
    ``reopen()`` opens it afresh; :meth:`opened` marks an open (by the
    owner, or by the search after ``reopen()``)."""

    __slots__ = ("waiting", "reopen", "opened_at")

    def __init__(self, waiting, reopen):
        self.waiting = waiting
        self.reopen = reopen
        self.opened_at = time.monotonic()

    def opened(self) -> None:
        self.opened_at = time.monotonic()


class ChannelSearch:
    """Re-opens the waiting channels it watches every ``period`` s
    (<= 0: never; pvxs' own back-off only), on one thread named ``name``."""

    def __init__(self, period: float = SEARCH_PERIOD, name: str = "pvagpu-search"):
        self.period = float(period)
        self.name = name
        self._watches: list[Watch] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None

    def watch(self, waiting, reopen) -> Watch:
        """Watch a channel (see :class:`Watch`); starts the thread if needed."""
        entry = Watch(waiting, reopen)
        with self._lock:
            self._watches.append(entry)
            if self.period > 0 and self._thread is None:
                self._wake.clear()
                self._thread = threading.Thread(target=self._loop, daemon=True, name=self.name)
                self._thread.start()
        return entry

    def unwatch(self, entry: Watch) -> None:
        with self._lock:
            if entry in self._watches:
                self._watches.remove(entry)

    def stop(self) -> None:
        """Stop watching everything; waits for the thread (unless called from it)."""
        with self._lock:
            self._watches.clear()
            thread, self._thread = self._thread, None
            self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _loop(self) -> None:
        while not self._wake.wait(self.period / 2):
            with self._lock:
                due = [w for w in self._watches
                       if time.monotonic() - w.opened_at >= self.period]
            for entry in due:
                try:
                    if entry.waiting():
                        entry.opened()
                        entry.reopen()
                except Exception as exc:  # noqa: BLE001 - keep searching for the others
                    log.warning("%s: re-opening a channel failed: %s: %s", self.name,
                                type(exc).__name__, exc)
