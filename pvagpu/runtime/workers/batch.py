"""Batches of frames inside a worker process (-ao N with --n-workers).

Without workers, ``--accumulate-objects N`` gives the processor's
``processBatch`` up to N frames at a time, or what arrived within
``--accumulation-timeout`` s of the first frame of a batch
(:class:`~pvagpu.runtime.delivery.BatchedDelivery`). With workers each
worker accumulates the frames it is given by the same rule:
:class:`FrameBatcher` runs a batch

* when it holds N frames (on the worker's input thread);
* when ``timeout`` s passed since its first frame (on a timer thread of
  its own), so a partial batch does not wait for a stream that went quiet;
* on :meth:`FrameBatcher.flush` (the receiving process asks for it before
  it waits for the frames in flight at stop) and :meth:`FrameBatcher.close`
  (the worker stops), so no frame is held forever.

Batches run one at a time and in arrival order: the batcher's lock is held
while a batch runs, so a frame that arrives meanwhile waits for it.
"""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)


class FrameBatcher:
    """Accumulates items and hands them to ``run(items)`` in batches of up
    to ``size``, flushed ``timeout`` s after a batch's first item (see the
    module docstring)."""

    def __init__(self, size: int, timeout: float, run):
        self.size = max(1, int(size))
        self.timeout = max(0.0, float(timeout))
        self.run = run
        self._cond = threading.Condition()
        self._pending = []
        self._deadline = None
        self._closed = False
        self._thread = threading.Thread(target=self._watch, daemon=True,
                                        name="pvagpu-batch-timer")
        self._thread.start()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, item) -> None:
        """Add a frame; runs the batch here when it is full."""
        with self._cond:
            self._pending.append(item)
            if len(self._pending) == 1:
                self._deadline = time.monotonic() + self.timeout
                self._cond.notify()
            if len(self._pending) >= self.size:
                self._run_pending()

    def flush(self) -> None:
        """Run the partial batch now, if there is one."""
        with self._cond:
            self._run_pending()

    def close(self) -> None:
        """Stop the timer and run the partial batch (the worker stops)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        self.flush()

    def _run_pending(self) -> None:
        """Run what is pending (hold the lock)."""
        batch, self._pending, self._deadline = self._pending, [], None
        if batch:
            try:
                self.run(batch)
            except Exception:   # run() answers every frame itself; a bug here is logged
                log.exception("a batch of %d frames could not be run", len(batch))

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                else:
                    self._run_pending()
