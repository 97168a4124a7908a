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

* :mod:`~pvagpu.report.values` - pvapy's ``-rs`` list
  (:func:`parse_report_stats`) and how numbers and values read;
* :mod:`~pvagpu.report.text` - pure functions, which tests call directly:
  :func:`format_line` (one compact plain line, for logs, pipes, CI),
  :func:`render_table` (the live table as text, no escape codes),
  :func:`summary_line` (the one line every run ends with);
* :mod:`~pvagpu.report.screen` - :class:`Reporter`, the screen writer.
"""
from .screen import Reporter
from .text import format_line, render_table, summary_line
from .values import SECTIONS, parse_report_stats

__all__ = [
    "SECTIONS", "parse_report_stats", "format_line", "render_table",
    "summary_line", "Reporter",
]
