"""pvagpu.pva.control: the control channel's protocol (pvapy's texts).

What the consumer does with each command (configure, reset_stats,
get_stats, stop) is tested in test_consumer.py (test_control_commands).
"""
import time

import pytest
from p4p.client.thread import Context

from conftest import wait_for
from pvagpu.pva.control import ACCEPTED, COMMANDS, CONTROL_TYPE, ControlChannel
from pvagpu.pva.publisher import LocalServer


@pytest.fixture
def control(pva_env):
    """A control channel ``ctl`` of consumer 5 whose handler records the commands."""
    server = LocalServer()
    commands = []
    channel = ControlChannel(server, "ctl", 5, lambda command, args: commands.append(
        (command, args)))
    ctx = Context("pva", nt=False)
    yield channel, commands, ctx
    ctx.close()
    server.stop()


def put(ctx, messages, request, expect):
    """PUT ``request``; wait until ``expect`` is the newest status message."""
    n = len(messages)
    ctx.put("ctl", request, timeout=5)
    wait_for(lambda: expect in messages[n:], message=f"{request}: {expect}")


@pytest.mark.pva
def test_accepted_commands_reach_the_handler_and_the_reply_is_shown(control):
    channel, commands, ctx = control
    assert ctx.get("ctl", timeout=5).type().aspy() == CONTROL_TYPE.aspy()
    messages = []
    sub = ctx.monitor("ctl", lambda v: messages.append(v["statusMessage"]))
    try:
        wait_for(lambda: messages, message="control channel monitor")
        before = time.time()
        put(ctx, messages, {"command": "configure", "args": '{"publish": false}'}, ACCEPTED)
        assert commands == [("configure", '{"publish": false}')]
        record = ctx.get("ctl", timeout=5)
        assert record["consumerId"] == 5 and record["command"] == "configure"
        assert record["args"] == '{"publish": false}'
        assert record["objectTime"] >= before - 1
        assert record["objectTimestamp.secondsPastEpoch"] == int(record["objectTime"])
        channel.reply("Configuration successful")
        wait_for(lambda: messages[-1] == "Configuration successful", message="reply shown")
        put(ctx, messages, {"command": "stop"}, ACCEPTED)     # no args: empty args
        assert commands[-1] == ("stop", "")
    finally:
        sub.close()


@pytest.mark.pva
def test_unknown_and_missing_commands_are_refused(control):
    channel, commands, ctx = control
    messages = []
    sub = ctx.monitor("ctl", lambda v: messages.append(v["statusMessage"]))
    try:
        wait_for(lambda: messages, message="control channel monitor")
        put(ctx, messages, {"command": "bogus"},
            f"Ignoring invalid request (unrecognized command specified): 'bogus'; "
            f"commands: {', '.join(COMMANDS)}")
        put(ctx, messages, {"command": ""}, "Ignoring invalid request (no command specified)")
        put(ctx, messages, {"args": "{}"}, "Ignoring invalid request (no command specified)")
    finally:
        sub.close()
    assert commands == []
