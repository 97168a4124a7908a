"""Shared fixtures: PV Access confined to loopback on free ports.

Every PVA test gets its own pair of ports, so tests never collide with each
other or with a real control system, and never leave 127.0.0.1. Servers in
several processes can share the same settings: the first binds the TCP port,
the others fall back to a free one, and searches reach all of them through
the shared UDP port.
"""
import importlib.util
import logging
import os
import subprocess
import sys
import time

import pytest

from pvagpu.pva.loopback import loopback_env, process_env  # noqa: F401 (tests import them)

# The console scripts (pvagpu-consumer, pvapy-ad-sim-server, ...) live beside
# this interpreter; `make test` runs .venv/bin/python without activating .venv.
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable),
                                      os.environ.get("PATH", "")])


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """A command-line main() run in-process configures the root logger with
    a handler on the test's captured stream; take it off afterwards, so
    later tests' log records do not go to a closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def pva_env(monkeypatch):
    """Loopback PVA settings, also exported to this process's environment
    (p4p reads them when a Context or Server is created)."""
    env = loopback_env()
    for key, val in env.items():
        monkeypatch.setenv(key, val)
    return env


def wait_for(condition, timeout=10.0, interval=0.02, message="condition"):
    """Poll ``condition()`` until it is truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def need_installed(*packages):
    """Skip the test unless the optional ``packages`` are installed, without
    importing them (softioc's import would change this process's later CA
    clients)."""
    for package in packages:
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} (an optional dependency) is not installed")


class Processes:
    """Starts subprocesses with the loopback environment and stops them all."""

    def __init__(self, env):
        self.env = process_env(env)
        self.procs = []

    def start(self, *args, **kwargs):
        proc = subprocess.Popen(list(args), env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, **kwargs)
        self.procs.append(proc)
        return proc

    def python(self, *args, **kwargs):
        return self.start(sys.executable, *args, **kwargs)

    def stop_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def processes(pva_env):
    procs = Processes(pva_env)
    yield procs
    procs.stop_all()
