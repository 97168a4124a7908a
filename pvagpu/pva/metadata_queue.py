"""The bounded queue of one metadata channel, as a processor reads it.

A processor finds one :class:`MetadataQueue` per metadata channel in its
``metadataQueueMap`` (see :mod:`pvagpu.pva.metadata`). Puts never block:
the monitor callback that puts an update into a full queue has it dropped
and counted. Memory never grows without bound here: a size of 0 or less
means the default, :data:`DEFAULT_METADATA_QUEUE_SIZE`.
"""
from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Any, Optional

from ..errors import ConfigurationError

#: Metadata queue size used when none (or a size <= 0) is given, as pvapy's
#: default. (The frame queue of the receiver has its own default.)
DEFAULT_METADATA_QUEUE_SIZE = 1000


def queue_size_or_default(size) -> int:
    """A metadata queue limit: ``size``, or the default for a size <= 0;
    ConfigurationError for something that is not an integer."""
    try:
        size = int(size)
    except (TypeError, ValueError):
        raise ConfigurationError(f"metadata queue size must be an integer, not {size!r}") from None
    return size if size > 0 else DEFAULT_METADATA_QUEUE_SIZE


class MetadataQueue:
    """A bounded FIFO of metadata updates; puts never block.

    The reading side mirrors pvapy's ``PvObjectQueue``: ``get()`` with no
    timeout returns at once, ``get(timeout)`` waits up to ``timeout`` seconds
    (``None``: forever), and both raise ``queue.Empty`` (also known as
    ``pvagpu.pva.QueueEmpty``, pvapy's name) when nothing is there.
    ``maxLength`` can be changed at run time; items already queued beyond a
    smaller limit stay until read.
    """

    def __init__(self, maxsize: int = DEFAULT_METADATA_QUEUE_SIZE):
        self._items: deque = deque()
        self._cond = threading.Condition(threading.Lock())
        self._maxsize = queue_size_or_default(maxsize)
        self._n_received = self._n_rejected = self._n_delivered = 0

    @property
    def maxLength(self) -> int:  # noqa: N802 - pvapy's name
        return self._maxsize

    @maxLength.setter
    def maxLength(self, size: int) -> None:  # noqa: N802
        with self._cond:
            self._maxsize = queue_size_or_default(size)

    def put(self, item: Any) -> bool:
        """Append ``item``; ``False`` (and counted as rejected) when full."""
        with self._cond:
            if len(self._items) >= self._maxsize:
                self._n_rejected += 1
                return False
            self._items.append(item)
            self._n_received += 1
            self._cond.notify()
            return True

    def get(self, timeout: Optional[float] = 0.0) -> Any:
        """Oldest item. ``timeout``: 0 (default) no wait, ``None`` wait
        forever, > 0 wait that many seconds. Raises ``queue.Empty``."""
        with self._cond:
            if not self._items:
                if timeout is None:
                    self._cond.wait_for(lambda: self._items)
                elif timeout > 0:
                    self._cond.wait_for(lambda: self._items, timeout)
                if not self._items:
                    raise queue.Empty
            self._n_delivered += 1
            return self._items.popleft()

    def get_nowait(self) -> Any:
        return self.get(0.0)

    def clear(self) -> int:
        """Drop everything queued; returns how many items were dropped."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            return n

    def __len__(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def stats(self) -> dict:
        """pvapy's queue counters: nReceived (accepted), nRejected (dropped
        because full), nDelivered (returned by get), nQueued (waiting now)."""
        with self._cond:
            return {"nReceived": self._n_received, "nRejected": self._n_rejected,
                    "nDelivered": self._n_delivered, "nQueued": len(self._items)}

    getCounters = stats  # noqa: N815 - pvapy's name

    def reset_stats(self) -> None:
        with self._cond:
            self._n_received = self._n_rejected = self._n_delivered = 0

    resetCounters = reset_stats  # noqa: N815 - pvapy's name
