"""Live statistics and the closing summary line of a consumer run.

The statistics dict is the one the runtime builds (pvapy's layout)::

    {'consumerId': 1, 'inputChannel': 'pvapy:image',
     'receiverStats': {...}, 'queueStats': {...}, 'processorStats': {...},
     'publisherStats': {...}, 'userStats': {...},
     'metadataStats': {'metadata-1': {'channel', 'receiverStats', 'queueStats'}}}

Any section may be missing or carry extra keys; everything present is shown.
Other top-level ``...Stats`` dicts are shown too when all sections are
selected. Counters ``nFoo`` are shown with their rate (``fooRate`` or
``fooRate`` without a plural ``s``: ``nErrors`` -> ``errorRate``).

The module is split into pure functions, which tests call directly, and a
small screen writer:

* :func:`parse_report_stats` - pvapy's ``-rs`` list -> set of section names;
* :func:`format_line` - one compact plain line (for logs, pipes, CI);
* :func:`render_table` - the live table as text (no escape codes);
* :func:`summary_line` - the one line every run ends with;
* :class:`Reporter` - writes :func:`render_table` redrawn in place with ANSI
  escape codes when the stream is a terminal (pvapy's curses screen, without
  curses), else one :func:`format_line` per call. It keeps no state but the
  number of lines it drew, and :meth:`Reporter.close` (also at interpreter
  exit) restores the cursor. The live table assumes nothing else writes to
  the terminal meanwhile: with logging to the terminal, pass
  ``disable_curses=True`` (pvapy does the same when a log level is given).
"""
from __future__ import annotations

import atexit
import io
import math
import os
import shutil
import sys
import time
from typing import Iterable, Mapping, Optional, TextIO, Union

import numpy as np

from .errors import ConfigurationError

__all__ = [
    "SECTIONS", "parse_report_stats", "format_line", "render_table",
    "summary_line", "Reporter",
]

#: pvapy's -rs names -> stats dict keys, in display order.
SECTIONS = {
    "receiver": "receiverStats",
    "queue": "queueStats",
    "processor": "processorStats",
    "publisher": "publisherStats",
    "user": "userStats",
    "metadata": "metadataStats",
}

#: keys that name a byte count, looked up (in this order) for the MB/s figure
BYTE_KEYS = ("nBytes", "nBytesReceived", "nBytesProcessed", "bytesReceived",
             "receivedBytes", "nReceivedBytes")

_HIDE_CURSOR = "\x1b[?25l"
_SHOW_CURSOR = "\x1b[?25h"
_CLEAR_TO_END = "\x1b[J"

_LABEL_W, _VALUE_W, _RATE_W = 17, 12, 9     # panel: " label" value rate = 38 columns
_PANEL_W = _LABEL_W + _VALUE_W + _RATE_W
_GAP = "  "


# --------------------------------------------------------------------------
# -rs
# --------------------------------------------------------------------------

def parse_report_stats(spec: Union[None, str, Iterable[str]] = None) -> frozenset:
    """The section names selected by pvapy's ``-rs`` value: ``None``,
    ``'all'`` or ``''`` -> all six; otherwise a comma list (or an iterable)
    of receiver, queue, processor, publisher, user, metadata (any case).
    Unknown names are a :class:`ConfigurationError`."""
    if spec is None:
        return frozenset(SECTIONS)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = {str(item).strip().lower() for item in items} - {""}
    if not names or "all" in names:
        return frozenset(SECTIONS)
    unknown = sorted(names - set(SECTIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown report stats {', '.join(unknown)}; choose from all, {', '.join(SECTIONS)}")
    return frozenset(names)


def _selected(stats: Mapping, sections) -> list:
    """``[(title, key, section dict)]`` of the sections to show, in order."""
    chosen = frozenset(SECTIONS) if sections is None else parse_report_stats(sections)
    out = []
    for name, key in SECTIONS.items():
        if name in chosen and isinstance(stats.get(key), Mapping):
            out.append((name, key, stats[key]))
    if chosen == frozenset(SECTIONS):   # extra sections of the runtime (e.g. GPU staging)
        for key, value in stats.items():
            if (key.endswith("Stats") and key not in SECTIONS.values()
                    and isinstance(value, Mapping)):
                out.append((key[:-len("Stats")], key, value))
    return out


# --------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------

def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.number)) and not isinstance(x, (bool, np.bool_))


def _num(x) -> str:
    """A number for display: integers as they are, other values with 2 / 1 /
    0 decimals by size (integral floats without decimals)."""
    if not _is_number(x):
        return str(x)
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    ax = abs(x)
    if ax >= 1e7:
        return f"{x:.4g}"
    if x.is_integer() or ax >= 1000:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _seconds(x) -> str:
    return f"{float(x):.2f} s" if _is_number(x) else str(x)


def _clock(epoch) -> str:
    """Local wall-clock time of a POSIX time, to the millisecond."""
    t = float(epoch)
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}"


def _value_text(key: str, value) -> str:
    """A non-counter value: times of day, durations, ids, other scalars."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={_value_text(k, v)}" for k, v in value.items()) + "}"
    if not _is_number(value):
        text = str(value)
        return text if len(text) <= 40 else text[:39] + "\u2026"
    if key.endswith("Time") and key not in ("runtime", "receivingTime"):
        if float(value) > 1e8:            # a POSIX time, not a duration
            return _clock(value)
        return "-" if float(value) == 0 else _seconds(value)
    if key in ("runtime", "receivingTime") or key.endswith(("Seconds", "Duration")):
        return _seconds(value)
    return _num(value)


def _lcfirst(s: str) -> str:
    return s[:1].lower() + s[1:]


def _counter_rows(section: Mapping):
    """``(counters, others)``: counters are ``(label, count, rate|None)`` for
    every numeric ``nFoo`` key (label ``foo``); others are ``(key, value)``
    for the remaining keys, less the rate keys that went with a counter."""
    counters, used = [], set()
    for key, value in section.items():
        if len(key) > 1 and key[0] == "n" and key[1].isupper() and _is_number(value):
            base = _lcfirst(key[1:])
            rate_key = next((k for k in (base + "Rate", base.rstrip("s") + "Rate")
                             if k in section), None)
            used.add(key)
            if rate_key is not None:
                used.add(rate_key)
            counters.append((base, value, section.get(rate_key) if rate_key else None))
    others = [(k, v) for k, v in section.items() if k not in used]
    return counters, others


def _flatten(section: Mapping, prefix: str = "") -> dict:
    out = {}
    for key, value in section.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# --------------------------------------------------------------------------
# the plain line
# --------------------------------------------------------------------------

def _header_words(stats: Mapping) -> list:
    words = []
    if "consumerId" in stats:
        words.append(f"consumer {stats['consumerId']}")
    if stats.get("inputChannel"):
        words.append(str(stats["inputChannel"]))
    return words


def _line_counters(section: Mapping, keep_others=()) -> str:
    counters, others = _counter_rows(section)
    parts = []
    for label, count, rate in counters:
        text = f"{label}={_num(count)}"
        if rate is not None and _is_number(rate) and float(count) > 0:
            text += f" ({_num(rate)}/s)"
        parts.append(text)
    for key, value in others:
        if keep_others is None or key in keep_others:
            parts.append(f"{key}={_value_text(key, value).replace(' ', '')}")
    return " ".join(parts)


def format_line(stats: Mapping, sections=None) -> str:
    """One compact line for the selected sections, e.g.
    ``consumer 1 img | receiver received=1000 (100/s) ... | processor ...``.
    Processor times and ids other than runtime are left to the table."""
    parts = [" ".join(_header_words(stats)) or "stats"]
    for name, key, section in _selected(stats, sections):
        if key == "metadataStats":
            for chan_key, chan in section.items():
                if not isinstance(chan, Mapping):
                    continue
                rs, qs = chan.get("receiverStats", {}), chan.get("queueStats", {})
                text = _line_counters(rs, keep_others=())
                if "nQueued" in qs:
                    text += f" queued={_num(qs['nQueued'])}"
                parts.append(f"{chan_key} {chan.get('channel', '')} {text}".replace("  ", " ").strip())
            continue
        if key == "processorStats":
            body = _line_counters(section, keep_others=("runtime",))
        elif key == "userStats":
            body = _line_counters(_flatten(section), keep_others=None)
        else:
            body = _line_counters(section, keep_others=None)
        parts.append(f"{name} {body}".strip())
    return " | ".join(parts)


# --------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------

def _row(label: str, value: str = "", rate: str = "") -> str:
    if len(label) > _LABEL_W - 1:
        label = label[:_LABEL_W - 2] + "\u2026"
    return f" {label:<{_LABEL_W - 1}}{value:>{_VALUE_W}}{rate:>{_RATE_W}}"


def _panel(title: str, section: Mapping) -> list:
    """Lines of one section: title, counters with rates, then other keys."""
    counters, others = _counter_rows(section)
    lines = [f"{title:<{_LABEL_W + _VALUE_W}}{'rate/s' if any(r is not None for *_, r in counters) else '':>{_RATE_W}}"]
    for label, count, rate in counters:
        rate_text = _num(rate) if rate is not None and _is_number(rate) else ""
        lines.append(_row(label, _num(count), rate_text))
    for key, value in others:
        if isinstance(value, Mapping):
            for sub_key, sub_value in _flatten(value, f"{key}.").items():
                lines.append(_row(sub_key, _value_text(sub_key, sub_value)))
        else:
            lines.append(_row(key, _value_text(key, value)))
    if len(lines) == 1:
        lines.append(_row("(empty)"))
    return lines


def _metadata_panels(section: Mapping) -> list:
    panels = []
    for chan_key, chan in section.items():
        if not isinstance(chan, Mapping):
            continue
        title = f"{chan_key} {chan.get('channel', '')}".strip()
        rs = dict(chan.get("receiverStats", {}))
        qs = chan.get("queueStats", {})
        lines = _panel(title, rs)
        for key, value in qs.items():
            label = "queued" if key == "nQueued" else "q." + _lcfirst(key[1:]) if key[:1] == "n" else key
            lines.append(_row(label, _value_text(key, value)))
        extra = {k: v for k, v in chan.items() if k not in ("channel", "receiverStats", "queueStats")}
        for key, value in _flatten(extra).items():
            lines.append(_row(key, _value_text(key, value)))
        panels.append(lines)
    return panels or [["metadata", _row("(none)")]]


def _grid(panels: list, width: int) -> list:
    """Panels side by side, as many per row as fit in ``width``."""
    per_row = max(1, (width + len(_GAP)) // (_PANEL_W + len(_GAP)))
    lines = []
    for start in range(0, len(panels), per_row):
        row = panels[start:start + per_row]
        height = max(len(p) for p in row)
        for i in range(height):
            cells = [(p[i] if i < len(p) else "").ljust(_PANEL_W) for p in row]
            lines.append(_GAP.join(cells).rstrip())
        lines.append("")
    return lines[:-1] if lines else lines


def _runtime(stats: Mapping) -> float:
    ps = stats.get("processorStats")
    if not isinstance(ps, Mapping):
        return 0.0
    runtime = ps.get("runtime")
    if _is_number(runtime):
        return max(float(runtime), 0.0)
    start, end = ps.get("startTime"), ps.get("endTime")
    if _is_number(start) and _is_number(end) and start > 0 and end > start:
        return float(end) - float(start)
    return 0.0


def render_table(stats: Mapping, sections=None, width: Optional[int] = None,
                 height: Optional[int] = None, now: Optional[float] = None) -> str:
    """The live table as plain text (no escape codes, no trailing newline).

    Sections are panels laid out side by side to fit ``width`` (default 100);
    lines are cut to ``width - 1`` columns and the table to ``height - 1``
    lines (if given) so that an in-place redraw never scrolls. ``now`` (a
    POSIX time) adds a clock to the header."""
    width = width or 100
    header = ["pvagpu"] + _header_words(stats)
    if stats.get("outputChannel"):
        header.append(f"-> {stats['outputChannel']}")
    header.append(f"runtime {_runtime(stats):.2f} s")
    if now is not None:
        header.append(_clock(now))
    panels = []
    for name, key, section in _selected(stats, sections):
        if key == "metadataStats":
            panels.extend(_metadata_panels(section))
        elif key == "userStats":
            panels.append(_panel(name, _flatten(section)))
        else:
            panels.append(_panel(name, section))
    lines = ["   ".join(header), ""] + (_grid(panels, width) if panels else ["(no statistics selected)"])
    if height is not None and len(lines) > max(height - 1, 2):
        keep = max(height - 2, 1)
        lines = lines[:keep] + [f"... {len(lines) - keep} more lines (enlarge the terminal)"]
    limit = max(width - 1, 10)
    return "\n".join(line if len(line) <= limit else line[:limit - 1] + "\u2026" for line in lines)


# --------------------------------------------------------------------------
# the summary line
# --------------------------------------------------------------------------

def _get(stats: Mapping, section: str, key: str, default=0):
    sec = stats.get(section)
    if isinstance(sec, Mapping) and _is_number(sec.get(key)):
        return sec[key]
    return default


def _byte_count(stats: Mapping):
    for section in ("processorStats", "receiverStats", "userStats"):
        sec = stats.get(section)
        if not isinstance(sec, Mapping):
            continue
        for key in BYTE_KEYS:
            if _is_number(sec.get(key)):
                return sec[key]
    return None


def summary_line(stats: Mapping) -> str:
    """The one line a run ends with, e.g. ``consumer 1 pvapy:image:
    received 1000, processed 995, missed 3, errors 0, overruns 2, 99.5
    frames/s, 52.4 MB/s, runtime 10.05 s``.

    errors adds the receiver, processor and publisher nErrors; overruns is
    receiverStats.nOverruns, and queue rejections appear as ``rejected`` when
    there are any. frames/s is processorStats.processedRate, or processed
    divided by receivingTime (else runtime). MB/s (10**6 bytes) appears when
    a byte count (:data:`BYTE_KEYS`) is in processorStats, receiverStats or
    userStats, divided by the same time. A zero runtime gives zero rates."""
    received = _get(stats, "receiverStats", "nReceived", None)
    if received is None:
        received = _get(stats, "queueStats", "nReceived", 0)
    processed = _get(stats, "processorStats", "nProcessed")
    missed = _get(stats, "processorStats", "nMissed")
    errors = sum(_get(stats, s, "nErrors") for s in ("receiverStats", "processorStats", "publisherStats"))
    overruns = _get(stats, "receiverStats", "nOverruns")
    # queue-full drops are overruns; rejections are only worth a word when they differ
    rejected = max(_get(stats, "receiverStats", "nRejected"), _get(stats, "queueStats", "nRejected"))
    runtime = _runtime(stats)
    span = float(_get(stats, "processorStats", "receivingTime"))
    if span <= 0:
        span = runtime
    fps = float(_get(stats, "processorStats", "processedRate"))
    if fps <= 0 and span > 0:
        fps = processed / span

    parts = [f"received {_num(received)}", f"processed {_num(processed)}",
             f"missed {_num(missed)}", f"errors {_num(errors)}", f"overruns {_num(overruns)}"]
    if rejected and rejected != overruns:
        parts.append(f"rejected {_num(rejected)}")
    if stats.get("publisherStats"):  # empty without an output channel, as in pvapy
        parts.append(f"published {_num(_get(stats, 'publisherStats', 'nPublished'))}")
    parts.append(f"{_num(fps)} frames/s")
    n_bytes = _byte_count(stats)
    if n_bytes is not None:
        parts.append(f"{_num(n_bytes / span / 1e6 if span > 0 else 0.0)} MB/s")
    parts.append(f"runtime {runtime:.2f} s")
    head = " ".join(_header_words(stats)) or "summary"
    return f"{head}: " + ", ".join(parts)


# --------------------------------------------------------------------------
# the screen writer
# --------------------------------------------------------------------------

def _is_terminal(stream) -> bool:
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Reporter:
    """Shows statistics while a consumer runs.

    ``report_stats``: pvapy's ``-rs`` selection (``None`` / ``'all'``, a comma
    string or a set). On a terminal, unless ``disable_curses``, each
    :meth:`update` redraws the table in place; elsewhere it writes one plain
    line (prefixed with the time of day). Call :meth:`close` (or
    :meth:`finish`, or use ``with``) to restore the cursor; interpreter exit
    does it too. ``stream`` defaults to ``sys.stdout``."""

    def __init__(self, report_stats=None, disable_curses: bool = False,
                 stream: Optional[TextIO] = None):
        self.sections = parse_report_stats(report_stats)
        self.stream = stream if stream is not None else sys.stdout
        self.live = not disable_curses and _is_terminal(self.stream)
        self._lines_drawn = 0
        self._cursor_hidden = False
        self._closed = False
        if self.live:
            atexit.register(self.close)

    def _size(self):
        try:
            size = os.get_terminal_size(self.stream.fileno())
        except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
            size = None
        if not size or size.columns <= 0 or size.lines <= 0:   # e.g. a pty without a size
            size = shutil.get_terminal_size((100, 40))
        return size.columns, size.lines

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (ValueError, OSError):   # closed stream at shutdown
            pass

    def update(self, stats: Mapping) -> None:
        """Show ``stats``: redraw the table (live) or write one line."""
        if self._closed:
            self._write(format_line(stats, self.sections) + "\n")
        elif self.live:
            width, height = self._size()
            self._redraw(render_table(stats, self.sections, width, height, now=time.time()))
        else:
            self._write(f"{time.strftime('%H:%M:%S')} {format_line(stats, self.sections)}\n")

    def _redraw(self, text: str) -> None:
        out = []
        if not self._cursor_hidden:
            out.append(_HIDE_CURSOR)
            self._cursor_hidden = True
        if self._lines_drawn:
            out.append(f"\r\x1b[{self._lines_drawn}A")
        out.append(_CLEAR_TO_END)
        out.append(text + "\n")
        self._lines_drawn = text.count("\n") + 1
        self._write("".join(out))

    def close(self) -> None:
        """Restore the terminal (show the cursor); the last table stays on
        screen. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._cursor_hidden:
            self._write(_SHOW_CURSOR)
            self._cursor_hidden = False
        if self.live:
            atexit.unregister(self.close)

    def finish(self, stats: Mapping) -> str:
        """Show the final ``stats``, restore the terminal, write the summary
        line and return it."""
        if self.live and not self._closed:
            self.update(stats)
        self.close()
        line = summary_line(stats)
        self._write(line + "\n")
        return line

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
