"""Who may send commands to a control channel: an allow list of accounts and hosts.

A control channel accepts ``stop`` and ``configure`` (which reconfigures the
processor), so by default only the account that runs the consumer, from this
host, may use it. ``--control-allow`` replaces that default with a list of
entries ``WHO@WHERE``, in the spirit of an EPICS access security file's
UAG (accounts, ``role/GROUP``) and HAG (hosts) lists:

==================  =========================================================
``alice@localhost`` account alice from this host (loopback or one of its
                    own addresses)
``alice@ctl01``     account alice from host ctl01 (resolved to its addresses
                    once, at start, as EPICS resolves HAG host names)
``@10.0.4.0/24``    any account from that network (``@WHERE`` = ``*@WHERE``)
``role/ops@*``      any account in the server host's group ``ops`` (the
                    roles that the PVA server looks up for the account),
                    from any host
``any``             everybody (``*@*``): the pvapy behaviour; say so knowingly
==================  =========================================================

WHO is an account name, ``role/GROUP`` or ``*``; WHERE is ``localhost``,
a host name, an IPv4/IPv6 address, a network in CIDR notation or ``*``.
A command is accepted when one entry matches both the client's account and
its address. As in Channel Access security, the account is what the client
says it is (PVA's "ca" authentication is not proof of identity); the
address is the TCP peer's, which a client cannot choose as freely. Host
entries are therefore the stronger part; ``*@localhost``-style entries
trust everybody who can log in to the host.
"""
from __future__ import annotations

import getpass
import ipaddress
import socket
from dataclasses import dataclass

from ..errors import ConfigurationError

ANY = "*"
LOCALHOST = "localhost"
_ROLE = "role/"


def current_account() -> str:
    """The account running this process (the default allowed account)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):   # no passwd entry (containers)
        import os
        return str(os.getuid())


def local_addresses() -> frozenset:
    """The addresses of this host: loopback and those its name resolves to."""
    addresses = {ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            addresses.add(ipaddress.ip_network(info[4][0].split("%")[0]))
    except (OSError, ValueError):
        pass
    return frozenset(addresses)


def peer_address(peer: str):
    """The IP address of a PVA peer string ``"10.0.0.5:5075"`` /
    ``"[::1]:5075"`` (IPv4-mapped IPv6 as IPv4); None if unreadable."""
    host = peer.rsplit(":", 1)[0] if peer.count(":") == 1 or peer.startswith("[") else peer
    host = host.strip("[]").split("%")[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _resolve(where: str) -> frozenset:
    """The networks a WHERE names (ConfigurationError if it names none)."""
    if where == LOCALHOST:
        return local_addresses()
    try:
        return frozenset([ipaddress.ip_network(where, strict=False)])
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(where, None)
    except OSError as exc:
        raise ConfigurationError(
            f"control allow list: cannot resolve host {where!r} ({exc}); give a host name, "
            f"an address, a network such as 10.0.4.0/24, localhost or *") from None
    return frozenset(ipaddress.ip_network(info[4][0].split("%")[0]) for info in infos)


@dataclass(frozen=True)
class Rule:
    """One entry: ``who`` (account, ``role/GROUP`` or ``*``) at ``where``
    (the text as given; ``networks`` its addresses, None for ``*``)."""
    who: str
    where: str
    networks: frozenset | None

    def matches(self, account: str, address, roles) -> bool:
        if self.who != ANY:
            if self.who.startswith(_ROLE):
                if self.who[len(_ROLE):] not in roles:
                    return False
            elif self.who != account:
                return False
        if self.networks is None:
            return True
        return address is not None and any(address in net for net in self.networks
                                           if net.version == address.version)

    def __str__(self) -> str:
        return f"{self.who}@{self.where}"


def parse_rule(text: str) -> Rule:
    entry = text.strip()
    if entry.lower() == "any":
        return Rule(ANY, ANY, None)
    if "@" not in entry:
        raise ConfigurationError(
            f"control allow list entry {entry!r}: give WHO@WHERE, e.g. {entry}@localhost "
            f"(this host), {entry}@* (any host) or @{entry} (any account from host {entry})")
    who, where = entry.rsplit("@", 1)
    who, where = who.strip() or ANY, where.strip()
    if not where:
        raise ConfigurationError(f"control allow list entry {entry!r}: no host after '@' "
                                 f"(use * for any host)")
    if who.startswith(_ROLE) and not who[len(_ROLE):]:
        raise ConfigurationError(f"control allow list entry {entry!r}: role/ needs a group name")
    if any(c.isspace() for c in who + where):
        raise ConfigurationError(f"control allow list entry {entry!r}: spaces are not allowed")
    return Rule(who, where, None if where == ANY else _resolve(where))


class ControlAccess:
    """The allow list of a control channel; :meth:`check` decides."""

    def __init__(self, rules):
        self.rules = tuple(rules)

    @classmethod
    def parse(cls, spec) -> "ControlAccess":
        """From ``--control-allow`` text (comma-separated entries) or a list
        of entries; None or "" gives :meth:`default`."""
        if spec is None or (isinstance(spec, str) and not spec.strip()):
            return cls.default()
        entries = spec.split(",") if isinstance(spec, str) else list(spec)
        entries = [e for e in (str(e).strip() for e in entries) if e]
        if not entries:
            return cls.default()
        return cls(parse_rule(e) for e in entries)

    @classmethod
    def default(cls) -> "ControlAccess":
        """The account running this process, from this host."""
        return cls([Rule(current_account(), LOCALHOST, local_addresses())])

    @property
    def open(self) -> bool:
        """True when anybody who can reach the channel may use it."""
        return any(r.who == ANY and r.networks is None for r in self.rules)

    def check(self, account: str, peer: str, roles=()) -> bool:
        """Whether ``account`` at ``peer`` (``"host:port"``) with ``roles``
        (the server's groups of the account) may send commands."""
        address = peer_address(peer or "")
        roles = set(roles or ())
        return any(rule.matches(account or "", address, roles) for rule in self.rules)

    def describe(self) -> str:
        """For the start-up log line, e.g. ``root@localhost``."""
        if self.open:
            return "ANY client that can reach it (--control-allow any)"
        return ", ".join(str(r) for r in self.rules)
