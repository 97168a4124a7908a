"""A private PV Access network on 127.0.0.1, for the demo, tests and benchmarks.

:func:`loopback_env` gives the EPICS_PVA* settings that confine servers and
clients to loopback, on a TCP port and a UDP port that are free now. Give
the same settings to every process that should see each other: the first
server binds the TCP port, later ones fall back to a free port, and
searches reach all of them through the shared UDP port.
``EPICS_PVAS_INTF_ADDR_LIST=127.0.0.1`` is needed as well: without it a
pvapy server on such ports is not found by clients on some machines.
:func:`ca_loopback_env` does the same for Channel Access.
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


def free_tcp_udp_port() -> int:
    """A port on 127.0.0.1 that is free now for both TCP and UDP (Channel
    Access serves and searches on the same number)."""
    for _ in range(50):
        port = free_port(socket.SOCK_STREAM)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port on 127.0.0.1 is free for both TCP and UDP")


def ca_loopback_env() -> dict:
    """EPICS_CA* / EPICS_CAS* settings for a private Channel Access network
    on 127.0.0.1 (an IOC and its clients: searches, beacons and the
    repeater all stay on loopback, on ports that are free now). libca reads
    them once per process, when its first context is made: give them to a
    subprocess, or set them before pyepics is first used."""
    port = str(free_tcp_udp_port())
    return {
        "EPICS_CA_ADDR_LIST": "127.0.0.1",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_SERVER_PORT": port,
        "EPICS_CAS_SERVER_PORT": port,
        "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CA_REPEATER_PORT": str(free_tcp_udp_port()),
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
