"""The statistics as text: the plain line, the live table and the summary line.

Pure functions of a statistics dict, which tests call directly:

* :func:`format_line` - one compact plain line (for logs, pipes, CI);
* :func:`render_table` - the live table as text (no escape codes);
* :func:`summary_line` - the one line every run ends with.
"""
from __future__ import annotations

from typing import Mapping, Optional

from .values import (BYTE_KEYS, clock, counter_rows, flatten, header_words, is_number, lcfirst,
                     num, runtime_of, selected_sections, value_text)

_LABEL_W, _VALUE_W, _RATE_W = 17, 12, 9     # panel: " label" value rate = 38 columns
_PANEL_W = _LABEL_W + _VALUE_W + _RATE_W
_GAP = "  "


# --------------------------------------------------------------------------
# the plain line
# --------------------------------------------------------------------------

def _line_counters(section: Mapping, keep_others=()) -> str:
    counters, others = counter_rows(section)
    parts = []
    for label, count, rate in counters:
        text = f"{label}={num(count)}"
        if rate is not None and is_number(rate) and float(count) > 0:
            text += f" ({num(rate)}/s)"
        parts.append(text)
    for key, value in others:
        if keep_others is None or key in keep_others:
            parts.append(f"{key}={value_text(key, value).replace(' ', '')}")
    return " ".join(parts)


def format_line(stats: Mapping, sections=None) -> str:
    """One compact line for the selected sections, e.g.
    ``consumer 1 img | receiver received=1000 (100/s) ... | processor ...``.
    Processor times and ids other than runtime are left to the table."""
    parts = [" ".join(header_words(stats)) or "stats"]
    for name, key, section in selected_sections(stats, sections):
        if key == "metadataStats":
            for chan_key, chan in section.items():
                if not isinstance(chan, Mapping):
                    continue
                rs, qs = chan.get("receiverStats", {}), chan.get("queueStats", {})
                text = _line_counters(rs, keep_others=())
                if "nQueued" in qs:
                    text += f" queued={num(qs['nQueued'])}"
                parts.append(f"{chan_key} {chan.get('channel', '')} {text}".replace("  ", " ").strip())
            continue
        if key == "processorStats":
            body = _line_counters(section, keep_others=("runtime",))
        elif key == "userStats":
            body = _line_counters(flatten(section), keep_others=None)
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
    counters, others = counter_rows(section)
    lines = [f"{title:<{_LABEL_W + _VALUE_W}}{'rate/s' if any(r is not None for *_, r in counters) else '':>{_RATE_W}}"]
    for label, count, rate in counters:
        rate_text = num(rate) if rate is not None and is_number(rate) else ""
        lines.append(_row(label, num(count), rate_text))
    for key, value in others:
        if isinstance(value, Mapping):
            for sub_key, sub_value in flatten(value, f"{key}.").items():
                lines.append(_row(sub_key, value_text(sub_key, sub_value)))
        else:
            lines.append(_row(key, value_text(key, value)))
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
            label = "queued" if key == "nQueued" else "q." + lcfirst(key[1:]) if key[:1] == "n" else key
            lines.append(_row(label, value_text(key, value)))
        extra = {k: v for k, v in chan.items() if k not in ("channel", "receiverStats", "queueStats")}
        for key, value in flatten(extra).items():
            lines.append(_row(key, value_text(key, value)))
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


def render_table(stats: Mapping, sections=None, width: Optional[int] = None,
                 height: Optional[int] = None, now: Optional[float] = None) -> str:
    """The live table as plain text (no escape codes, no trailing newline).

    Sections are panels laid out side by side to fit ``width`` (default 100);
    lines are cut to ``width - 1`` columns and the table to ``height - 1``
    lines (if given) so that an in-place redraw never scrolls. ``now`` (a
    POSIX time) adds a clock to the header."""
    width = width or 100
    header = ["pvagpu"] + header_words(stats)
    if stats.get("outputChannel"):
        header.append(f"-> {stats['outputChannel']}")
    header.append(f"runtime {runtime_of(stats):.2f} s")
    if now is not None:
        header.append(clock(now))
    panels = []
    for name, key, section in selected_sections(stats, sections):
        if key == "metadataStats":
            panels.extend(_metadata_panels(section))
        elif key == "userStats":
            panels.append(_panel(name, flatten(section)))
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
    if isinstance(sec, Mapping) and is_number(sec.get(key)):
        return sec[key]
    return default


def _byte_count(stats: Mapping):
    for section in ("processorStats", "receiverStats", "userStats"):
        sec = stats.get(section)
        if not isinstance(sec, Mapping):
            continue
        for key in BYTE_KEYS:
            if is_number(sec.get(key)):
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
    runtime = runtime_of(stats)
    span = float(_get(stats, "processorStats", "receivingTime"))
    if span <= 0:
        span = runtime
    fps = float(_get(stats, "processorStats", "processedRate"))
    if fps <= 0 and span > 0:
        fps = processed / span

    parts = [f"received {num(received)}", f"processed {num(processed)}",
             f"missed {num(missed)}", f"errors {num(errors)}", f"overruns {num(overruns)}"]
    if rejected and rejected != overruns:
        parts.append(f"rejected {num(rejected)}")
    if stats.get("publisherStats"):  # empty without an output channel, as in pvapy
        parts.append(f"published {num(_get(stats, 'publisherStats', 'nPublished'))}")
    parts.append(f"{num(fps)} frames/s")
    n_bytes = _byte_count(stats)
    if n_bytes is not None:
        parts.append(f"{num(n_bytes / span / 1e6 if span > 0 else 0.0)} MB/s")
    parts.append(f"runtime {runtime:.2f} s")
    head = " ".join(header_words(stats)) or "summary"
    return f"{head}: " + ", ".join(parts)
