"""Live statistics (pvagpu.report): -rs selection, the plain line, the table,
the summary line and the screen writer (plain and in-place on a terminal)."""
import copy
import io
import re

import numpy as np
import pytest

from pvagpu.errors import ConfigurationError
from pvagpu.report import (SECTIONS, Reporter, format_line, parse_report_stats,
                           render_table, summary_line)

T0 = 1_700_000_000.0


def realistic_stats():
    """What a consumer reports after ~10 s of 512x512 uint8 frames."""
    return {
        "consumerId": 1,
        "inputChannel": "pvapy:image",
        "receiverStats": {"nReceived": 1000, "receivedRate": 99.9, "nRejected": 0,
                          "rejectedRate": 0.0, "nErrors": 0, "errorRate": 0.0,
                          "nOverruns": 2, "overrunRate": 0.2},
        "queueStats": {"nReceived": 1000, "nRejected": 0, "nDelivered": 995, "nQueued": 5},
        "processorStats": {"runtime": 10.05, "startTime": T0, "endTime": T0 + 10.05,
                           "receivingTime": 9.95, "firstObjectTime": T0 + 0.1,
                           "lastObjectTime": T0 + 10.05, "firstObjectId": 1,
                           "lastObjectId": 998, "nProcessed": 995, "processedRate": 100.0,
                           "nErrors": 1, "errorRate": 0.1, "nMissed": 3, "missedRate": 0.3},
        "publisherStats": {"nPublished": 995, "publishedRate": 100.0, "nErrors": 0, "errorRate": 0.0},
        "userStats": {"nFrames": 995, "meanIntensity": np.float32(12.5), "roi": {"x": 3, "y": 4}},
        "metadataStats": {"metadata-1": {
            "channel": "md:x",
            "receiverStats": {"nReceived": 10, "receivedRate": 1.0, "nRejected": 0,
                              "rejectedRate": 0.0, "nOverruns": 0, "overrunRate": 0.0},
            "queueStats": {"nReceived": 10, "nRejected": 0, "nDelivered": 8, "nQueued": 2}}},
    }


# --------------------------------------------------------------------------
# -rs
# --------------------------------------------------------------------------

def test_parse_report_stats():
    everything = frozenset(SECTIONS)
    assert parse_report_stats(None) == everything
    assert parse_report_stats("all") == everything
    assert parse_report_stats("") == everything
    assert parse_report_stats("receiver,all") == everything
    assert parse_report_stats("Receiver, queue") == {"receiver", "queue"}
    assert parse_report_stats({"metadata"}) == {"metadata"}
    with pytest.raises(ConfigurationError, match="unknown report stats bogus"):
        parse_report_stats("receiver,bogus")
    with pytest.raises(ConfigurationError):
        Reporter(report_stats="recever")


# --------------------------------------------------------------------------
# the plain line
# --------------------------------------------------------------------------

def test_plain_line_contents():
    line = format_line(realistic_stats())
    assert "\n" not in line
    assert line.startswith("consumer 1 pvapy:image | receiver ")
    for part in ("receiver received=1000 (99.9/s) rejected=0 errors=0 overruns=2 (0.20/s)",
                 "queue received=1000 rejected=0 delivered=995 queued=5",
                 "processor processed=995 (100/s) errors=1 (0.10/s) missed=3 (0.30/s) runtime=10.05s",
                 "publisher published=995 (100/s) errors=0",
                 "user frames=995 meanIntensity=12.5 roi.x=3 roi.y=4",
                 "metadata-1 md:x received=10 (1/s) rejected=0 overruns=0 queued=2"):
        assert part in line, part
    assert "startTime" not in line and "firstObjectId" not in line   # left to the table


def test_plain_line_filtering_and_missing_sections():
    stats = realistic_stats()
    line = format_line(stats, {"processor", "metadata"})
    assert "processor processed=995" in line and "metadata-1" in line
    assert "| receiver" not in line and "| queue" not in line and "| user" not in line
    only = {"consumerId": 2, "processorStats": {"nProcessed": 0, "processedRate": 0.0}}
    assert format_line(only) == "consumer 2 | processor processed=0"
    assert format_line({}) == "stats"
    assert format_line({"receiverStats": {"nReceived": 5, "note": "warming up"}}) == \
        "stats | receiver received=5 note=warmingup"


def test_extra_sections_shown_only_with_all():
    stats = {"consumerId": 1, "gpuStats": {"nStaged": 7, "device": "H100"}}
    assert "gpu staged=7 device=H100" in format_line(stats)
    assert "gpu" not in format_line(stats, "receiver")
    assert "staged" in render_table(stats)


# --------------------------------------------------------------------------
# the summary line
# --------------------------------------------------------------------------

def test_summary_line_realistic():
    stats = realistic_stats()
    assert summary_line(stats) == (
        "consumer 1 pvapy:image: received 1000, processed 995, missed 3, errors 1, "
        "overruns 2, published 995, 100 frames/s, runtime 10.05 s")
    stats["processorStats"]["nBytes"] = 995 * 512 * 512
    stats["queueStats"]["nRejected"] = 4
    stats["receiverStats"]["nErrors"] = 2
    line = summary_line(stats)
    assert "errors 3," in line and "rejected 4," in line
    assert "26.2 MB/s" in line            # 995 * 256 KiB / 9.95 s
    assert "\n" not in line


def test_summary_line_rates_from_counts_and_zero_runtime():
    derived = {"receiverStats": {"nReceived": 50},
               "processorStats": {"nProcessed": 50, "receivingTime": 4.0, "runtime": 5.0},
               "userStats": {"nBytesReceived": 8_000_000}}
    assert summary_line(derived) == ("summary: received 50, processed 50, missed 0, errors 0, "
                                     "overruns 0, 12.5 frames/s, 2 MB/s, runtime 5.00 s")
    zero = {"consumerId": 3,
            "processorStats": {"runtime": 0.0, "receivingTime": 0.0, "nProcessed": 0,
                               "processedRate": 0.0, "nBytes": 0}}
    assert summary_line(zero) == ("consumer 3: received 0, processed 0, missed 0, errors 0, "
                                  "overruns 0, 0 frames/s, 0 MB/s, runtime 0.00 s")
    negative = {"processorStats": {"runtime": -5.0, "nProcessed": 2}}   # pvapy's combined-stats bug
    assert summary_line(negative).endswith("0 frames/s, runtime 0.00 s")
    assert summary_line({}).startswith("summary: received 0, processed 0")
    assert summary_line({"processorStats": {"startTime": T0, "endTime": T0 + 2,
                                            "nProcessed": 4}}).endswith("2 frames/s, runtime 2.00 s")


# --------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------

def test_table_renders_every_section_within_width():
    text = render_table(realistic_stats(), width=80, now=T0)
    lines = text.split("\n")
    assert max(len(line) for line in lines) <= 79
    assert "\x1b" not in text
    assert lines[0].startswith("pvagpu   consumer 1   pvapy:image   runtime 10.05 s")
    for title in ("receiver", "queue", "processor", "publisher", "user", "metadata-1 md:x"):
        assert re.search(rf"(^|\s){re.escape(title)}\s", text), title
    assert re.search(r"^ received\s+1000\s+99\.9", text, re.M)
    assert re.search(r"^ overruns\s+2\s+0\.20", text, re.M)
    assert re.search(r"processed\s+995\s+100\b", text)
    assert re.search(r"lastObjectId\s+998", text)
    assert re.search(r"receivingTime\s+9\.95 s", text)
    assert re.search(r"roi\.x\s+3", text)
    assert re.search(r"queued\s+2", text)
    # receiver and queue side by side at 80 columns, stacked at 40
    assert re.search(r"^receiver\s+rate/s\s+queue", text, re.M)
    narrow = render_table(realistic_stats(), width=40)
    assert not re.search(r"receiver.*queue", narrow)
    assert max(len(line) for line in narrow.split("\n")) <= 39


def test_table_with_missing_sections_and_filter():
    only_receiver = {"receiverStats": {"nReceived": 3, "receivedRate": 1.5}}
    text = render_table(only_receiver, width=80)
    assert "processor" not in text and "queue" not in text
    assert re.search(r"received\s+3\s+1\.50", text)
    assert "runtime 0.00 s" in text
    assert "(no statistics selected)" in render_table({}, width=80)
    assert "(no statistics selected)" in render_table(only_receiver, sections="queue", width=80)
    filtered = render_table(realistic_stats(), sections={"queue", "metadata"}, width=80)
    assert "metadata-1 md:x" in filtered and "delivered" in filtered
    assert "processor" not in filtered and "publisher" not in filtered
    empty_md = render_table({"metadataStats": {}}, width=80)
    assert "(none)" in empty_md


def test_table_fits_height_and_odd_values():
    text = render_table(realistic_stats(), width=40, height=12)
    lines = text.split("\n")
    assert len(lines) <= 11 and "more lines" in lines[-1]
    odd = {"processorStats": {"nProcessed": np.uint64(7), "processedRate": float("nan"),
                              "firstObjectTime": 0.0, "label": None, "nBad": "x"},
           "userStats": {"array": list(range(100)), "flag": True}}
    text = render_table(odd, width=80)
    assert re.search(r"processed\s+7\s+nan", text)
    assert re.search(r"firstObjectTime\s+-", text)
    assert "flag" in text and "\u2026" in text     # the long list is cut
    format_line(odd)
    summary_line(odd)


# --------------------------------------------------------------------------
# the screen writer
# --------------------------------------------------------------------------

class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_reporter_plain_writes_one_line_per_update():
    out = io.StringIO()
    rep = Reporter(report_stats="receiver,processor", stream=out)
    assert not rep.live
    rep.update(realistic_stats())
    rep.update(realistic_stats())
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert re.match(r"^\d\d:\d\d:\d\d consumer 1 pvapy:image \| receiver received=1000", lines[0])
    assert "queue" not in lines[0]
    summary = rep.finish(realistic_stats())
    assert out.getvalue().splitlines()[-1] == summary == summary_line(realistic_stats())
    assert "\x1b" not in out.getvalue()


def test_reporter_live_redraws_in_place_and_restores(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "60")
    term = FakeTerminal()          # fileno() fails: size comes from COLUMNS / LINES
    rep = Reporter(stream=term)
    assert rep.live
    stats = realistic_stats()
    rep.update(stats)
    first = term.getvalue()
    assert first.startswith("\x1b[?25l\x1b[J")            # hide cursor, clear, draw
    n_lines = first.count("\n")
    stats["receiverStats"]["nReceived"] = 2000
    rep.update(stats)
    second = term.getvalue()[len(first):]
    assert second.startswith(f"\r\x1b[{n_lines}A\x1b[J")   # back to the top of the table
    assert re.search(r"received\s+2000", second)
    assert all(len(line) <= 79 for line in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", second).split("\n"))
    summary = rep.finish(stats)
    tail = term.getvalue()
    assert "\x1b[?25h" in tail and tail.endswith(summary + "\n")
    assert tail.count("\x1b[?25h") == 1
    rep.close()                                            # idempotent
    assert term.getvalue().count("\x1b[?25h") == 1


def test_reporter_disabled_or_dumb_terminal_is_plain(monkeypatch):
    assert not Reporter(disable_curses=True, stream=FakeTerminal()).live
    monkeypatch.setenv("TERM", "dumb")
    term = FakeTerminal()
    with Reporter(stream=term) as rep:
        assert not rep.live
        rep.update({"consumerId": 1})
    assert "\x1b" not in term.getvalue()


def test_reporter_does_not_mutate_stats():
    stats = realistic_stats()
    before = copy.deepcopy(stats)
    rep = Reporter(stream=io.StringIO())
    rep.update(stats)
    rep.finish(stats)
    assert stats.keys() == before.keys()
    assert stats["processorStats"] == before["processorStats"]
