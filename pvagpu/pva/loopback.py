"""A private PV Access network on 127.0.0.1, for the demo, tests and benchmarks.

:func:`loopback_env` gives the EPICS_PVA* settings that confine servers and
clients to loopback, on a TCP port and a UDP port that are free now. Give
the same settings to every process that should see each other: the first
server binds the TCP port, later ones fall back to a free port, and
searches reach all of them through the shared UDP port.
``EPICS_PVAS_INTF_ADDR_LIST=127.0.0.1`` is needed as well: without it a
pvapy server on such ports is not found by clients on some machines.
"""
from __future__ import annotations

import os
import socket
import sys


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that is free now (``kind``: SOCK_STREAM or SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback_env() -> dict:
    """EPICS_PVA* settings for a private loopback PVA network on free ports."""
    tcp, udp = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    return {
        "EPICS_PVA_ADDR_LIST": "127.0.0.1",
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
        "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_PVA_SERVER_PORT": str(tcp),
        "EPICS_PVAS_SERVER_PORT": str(tcp),
        "EPICS_PVA_BROADCAST_PORT": str(udp),
        "EPICS_PVAS_BROADCAST_PORT": str(udp),
    }


def process_env(settings: dict | None = None) -> dict:
    """The environment for a subprocess on the loopback network ``settings``
    (new settings when None): this process's environment, unbuffered Python
    output, and this interpreter's directory first on PATH, so that the
    console scripts of a virtual environment that is not activated are found."""
    env = {**os.environ, **(loopback_env() if settings is None else settings),
           "PYTHONUNBUFFERED": "1"}
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    return env
