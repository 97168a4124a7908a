"""The screen writer: :class:`Reporter` shows statistics while a consumer runs.

It writes :func:`~pvagpu.report.text.render_table` redrawn in place with
ANSI escape codes when the stream is a terminal (pvapy's curses screen,
without curses), else one :func:`~pvagpu.report.text.format_line` per
call. It keeps no state but the number of lines it drew, and
:meth:`Reporter.close` (also at interpreter exit) restores the cursor. The
live table assumes nothing else writes to the terminal meanwhile: with
logging to the terminal, pass ``disable_curses=True`` (pvapy does the same
when a log level is given). A consumer's reports reach it by subscription:
``consumer.on_stats.append(reporter.update)``.
"""
from __future__ import annotations

import atexit
import io
import os
import shutil
import sys
import time
from typing import Mapping, Optional, TextIO

from .text import format_line, render_table, summary_line
from .values import parse_report_stats

_HIDE_CURSOR = "\x1b[?25l"
_SHOW_CURSOR = "\x1b[?25h"
_CLEAR_TO_END = "\x1b[J"


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

    def note(self, text: str) -> None:
        """Write a line (a start-up note) above the live table, which is
        drawn afresh below it at the next update; elsewhere just the line."""
        if self.live and self._lines_drawn and not self._closed:
            self._write(f"\r\x1b[{self._lines_drawn}A{_CLEAR_TO_END}{text}\n")
            self._lines_drawn = 0
        else:
            self._write(text + "\n")

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
