"""Process supervision: start the children, notice when one exits, stop them all.

Each child runs in its own session (a Ctrl-C at the terminal reaches the
launcher only, which then stops the children in order), writes its output
to ``<log dir>/<name>.log``, and on Linux gets SIGTERM if the launcher dies
(``PR_SET_PDEATHSIG``), so that no consumer outlives a killed launcher.

:meth:`Supervisor.stop` stops the consumers first, then the sources (the
mirror, the simulator), so that consumers do not see their source vanish:
each group gets SIGINT (a clean stop with a summary), then SIGTERM after
``timeout`` seconds, then SIGKILL after ``timeout`` more.
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import List, Optional

from .plan import CONSUMER, SOURCE, ChildSpec

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class Child:
    """A started child: its spec, process, log file and how it ended."""
    spec: ChildSpec
    process: subprocess.Popen
    log_path: str
    started: float = field(default_factory=time.time)
    #: the signal that finally stopped it (None: it exited by itself or on SIGINT)
    forced: Optional[str] = None
    reported: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> Optional[int]:
        return self.process.poll()

    def last_lines(self, n: int = 3) -> List[str]:
        """The last non-empty lines of its output."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()][-n:]

    def describe_exit(self) -> str:
        code = self.returncode
        how = f"was stopped with {self.forced}" if self.forced else (
            f"exited with code {code}" if code is not None and code >= 0
            else f"was killed by {signal.Signals(-code).name}" if code is not None
            else "is running")
        return f"{self.name} (pid {self.pid}) {how}"


class Supervisor:
    """Starts :class:`ChildSpec`\\ s and keeps track of them."""

    def __init__(self, log_dir: str, env: Optional[dict] = None):
        self.log_dir = log_dir
        self.env = env
        self.children: List[Child] = []
        os.makedirs(log_dir, exist_ok=True)

    def start(self, spec: ChildSpec) -> Child:
        """Start ``spec``'s process; OSError if it cannot be started."""
        log_path = os.path.join(self.log_dir, re.sub(r"[^A-Za-z0-9_.-]+", "_", spec.name) + ".log")
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                spec.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        child = Child(spec, process, log_path)
        self.children.append(child)
        return child

    def running(self) -> List[Child]:
        return [c for c in self.children if c.returncode is None]

    def poll(self) -> List[Child]:
        """Children that have exited since the last call (each reported once)."""
        out = []
        for child in self.children:
            if not child.reported and child.returncode is not None:
                child.reported = True
                out.append(child)
        return out

    def stop(self, timeout: float = 10.0) -> List[Child]:
        """Stop every child (consumers first, then sources); returns them all."""
        for role in (CONSUMER, SOURCE):
            self._stop_group([c for c in self.children if c.spec.role == role], timeout)
        return list(self.children)

    @staticmethod
    def _stop_group(children: List[Child], timeout: float) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            alive = [c for c in children if c.returncode is None]
            if not alive:
                return
            for child in alive:
                try:
                    child.process.send_signal(sig)
                except ProcessLookupError:
                    continue
                if sig != signal.SIGINT:
                    child.forced = sig.name
            deadline = time.monotonic() + timeout
            for child in alive:
                try:
                    child.process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for child in children:       # after SIGKILL: reap
            if child.returncode is None:
                child.process.wait()
