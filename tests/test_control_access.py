"""The control channel's allow list (pvagpu.pva.access, issue 11 section 2).

By default only the account running the consumer, from this host, may send
commands; ``--control-allow`` names others; a refused PUT fails with
"Access denied", leaves the record alone, is counted and logged at most
once per period.
"""
import ipaddress
import logging

import pytest
from p4p.client.thread import Context

from conftest import wait_for
from pvagpu.cli.consumer import build_parser, config_from_args
from pvagpu.consumer import Consumer
from pvagpu.errors import ConfigurationError
from pvagpu.pva.access import ControlAccess, current_account, parse_rule, peer_address
from pvagpu.pva.control import DENIED, ControlChannel
from pvagpu.pva.publisher import LocalServer

ME = current_account()


# -- the list ---------------------------------------------------------------------

def test_default_allows_only_this_account_from_this_host():
    access = ControlAccess.parse(None)
    assert not access.open and access.describe() == f"{ME}@localhost"
    assert access.check(ME, "127.0.0.1:40000")
    assert access.check(ME, "[::1]:40000")
    assert not access.check("eve", "127.0.0.1:40000")          # another account
    assert not access.check(ME, "192.0.2.7:40000")             # another host (TEST-NET-1)
    assert not access.check(ME, "")                            # no peer: refused


def test_entries_accounts_hosts_networks_roles_and_any():
    access = ControlAccess.parse("alice@*, @192.0.2.0/24, role/ops@198.51.100.9, bob@localhost")
    assert access.check("alice", "203.0.113.5:1")              # alice from anywhere
    assert access.check("anyone", "192.0.2.200:1")             # any account from that net
    assert not access.check("anyone", "192.0.3.1:1")
    assert access.check("carol", "198.51.100.9:1", roles={"ops", "users"})
    assert not access.check("carol", "198.51.100.9:1", roles={"users"})
    assert not access.check("carol", "198.51.100.8:1", roles={"ops"})
    assert access.check("bob", "127.0.0.1:1") and not access.check("bob", "192.0.2.300:1")
    assert ControlAccess.parse("any").open and ControlAccess.parse("*@*").open
    assert ControlAccess.parse(["any"]).check("whoever", "203.0.113.1:5")
    assert not access.open


def test_peer_addresses_are_read_in_every_form():
    assert peer_address("10.0.0.5:5075") == ipaddress.ip_address("10.0.0.5")
    assert peer_address("[::1]:5075") == ipaddress.ip_address("::1")
    assert peer_address("[::ffff:10.0.0.5]:5075") == ipaddress.ip_address("10.0.0.5")
    assert peer_address("garbage") is None


@pytest.mark.parametrize("entry, words", [
    ("alice", "WHO@WHERE"), ("alice@", "no host"), ("role/@*", "group name"),
    ("bob@no-such-host.invalid", "cannot resolve"),
])
def test_bad_entries_are_refused_with_a_teaching_message(entry, words):
    with pytest.raises(ConfigurationError, match=words):
        parse_rule(entry)


def test_the_flag_reaches_the_config_and_a_bad_list_fails_when_the_consumer_is_built():
    args = build_parser().parse_args(["-ic", "x", "-cc", "_", "--control-allow", "alice@*"])
    assert config_from_args(args).control_allow == "alice@*"
    with pytest.raises(ConfigurationError, match="WHO@WHERE"):
        Consumer("x", control_channel="_", control_allow="alice")


# -- over PVA ------------------------------------------------------------------------

@pytest.fixture
def channel(pva_env):
    server = LocalServer()
    commands = []
    ctl = ControlChannel(server, "ctl", 7, lambda command, args: commands.append(command))
    ctx = Context("pva", nt=False)
    yield ctl, commands, ctx
    ctx.close()
    server.stop()


@pytest.mark.pva
def test_refused_put_fails_changes_nothing_and_is_counted_and_logged_once(channel, caplog):
    ctl, commands, ctx = channel
    ctx.put("ctl", {"command": "get_stats"}, timeout=5)      # the default admits this test
    assert commands == ["get_stats"] and ctl.counts() == {"nCommands": 1, "nRejected": 0}
    before = ctx.get("ctl", timeout=5)
    ctl.access = ControlAccess.parse("somebody-else@localhost,@192.0.2.0/24")
    caplog.set_level(logging.WARNING, logger="pvagpu.pva.control")
    for _ in range(3):
        with pytest.raises(Exception, match=DENIED):
            ctx.put("ctl", {"command": "stop"}, timeout=5)
    assert commands == ["get_stats"]                              # nothing reached the consumer
    after = ctx.get("ctl", timeout=5)
    assert after["command"] == before["command"] == "get_stats"
    assert after["statusMessage"] == before["statusMessage"]
    assert ctl.counts() == {"nCommands": 1, "nRejected": 3}
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and ME in refusals[0].getMessage()   # rate-limited


@pytest.mark.pva
def test_consumer_applies_its_allow_list_to_the_control_channel(pva_env):
    with Consumer("nothing:here", control_channel="ctl:*", status_channel="st:*",
                  control_allow="nobody@localhost") as consumer:
        ctx = Context("pva", nt=False)
        try:
            with pytest.raises(Exception, match=DENIED):
                ctx.put("ctl:1", {"command": "stop"}, timeout=5)
            assert not consumer.stop_requested
            assert consumer.control.counts()["nRejected"] == 1
        finally:
            ctx.close()
    with Consumer("nothing:here", control_channel="ctl:*") as consumer:   # the default
        ctx = Context("pva", nt=False)
        try:
            ctx.put("ctl:1", {"command": "stop"}, timeout=5)
            wait_for(lambda: consumer.stop_requested, message="stop accepted from this account")
        finally:
            ctx.close()


@pytest.mark.pva
def test_refusals_reach_the_statistics(pva_env):
    seen = []
    with Consumer("nothing:here", control_channel="ctl:*", control_allow="nobody@localhost",
                  on_stats=[seen.append]) as consumer:
        ctx = Context("pva", nt=False)
        try:
            for _ in range(2):
                with pytest.raises(Exception, match=DENIED):
                    ctx.put("ctl:1", {"command": "reset_stats"}, timeout=5)
        finally:
            ctx.close()
        consumer.housekeeping.report()
    assert seen[0]["controlStats"] == {"nCommands": 0, "nRejected": 2}
