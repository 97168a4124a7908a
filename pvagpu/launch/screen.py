"""TableScreen: the launcher's table on the terminal, redrawn in place.

The consumer's :class:`~pvagpu.report.Reporter` does the terminal work
(ANSI redraw in place, the cursor, plain output when the stream is not a
terminal or with ``disable_curses``); this class only gives it the
launcher's table instead of one consumer's statistics. Off a terminal each
refresh is written whole, followed by a blank line, so logs and tests read
the same table.
"""
from __future__ import annotations

from ..report import Reporter


class TableScreen(Reporter):
    """Shows text tables: live on a terminal, else one block per call."""

    def show(self, text: str) -> None:
        if self.live and not self._closed:
            _, height = self._size()
            lines = text.split("\n")
            if len(lines) > max(height - 1, 2):
                keep = max(height - 2, 1)
                lines = lines[:keep] + [f"... {len(lines) - keep} more lines (enlarge the terminal)"]
            self._redraw("\n".join(lines))
        else:
            self._write(text + "\n\n")

    def say(self, text: str) -> None:
        """A line outside the table (before it starts or after it ends)."""
        self._write(text + "\n")

    @property
    def width(self) -> int:
        return self._size()[0] if self.live else 0
