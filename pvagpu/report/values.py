"""What the statistics say, as text: the -rs sections and how numbers and values read.

The vocabulary of the plain line, the table and the summary line
(:mod:`pvagpu.report.text`): pvapy's ``-rs`` section names, the sections a
selection shows, numbers and times for display, the counters ``nFoo`` of a
section with their rates, and the header words and run time of a
statistics dict.
"""
from __future__ import annotations

import math
import time
from typing import Iterable, Mapping, Optional, Union

import numpy as np

from ..errors import ConfigurationError

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


def selected_sections(stats: Mapping, sections) -> list:
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

def is_number(x) -> bool:
    return isinstance(x, (int, float, np.number)) and not isinstance(x, (bool, np.bool_))


def num(x) -> str:
    """A number for display: integers as they are, other values with 2 / 1 /
    0 decimals by size (integral floats without decimals)."""
    if not is_number(x):
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
    return f"{float(x):.2f} s" if is_number(x) else str(x)


def clock(epoch) -> str:
    """Local wall-clock time of a POSIX time, to the millisecond."""
    t = float(epoch)
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}"


def value_text(key: str, value) -> str:
    """A non-counter value: times of day, durations, ids, other scalars."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={value_text(k, v)}" for k, v in value.items()) + "}"
    if not is_number(value):
        text = str(value)
        return text if len(text) <= 40 else text[:39] + "\u2026"
    if key.endswith("Time") and key not in ("runtime", "receivingTime"):
        if float(value) > 1e8:            # a POSIX time, not a duration
            return clock(value)
        return "-" if float(value) == 0 else _seconds(value)
    if key in ("runtime", "receivingTime") or key.endswith(("Seconds", "Duration")):
        return _seconds(value)
    return num(value)


def lcfirst(s: str) -> str:
    return s[:1].lower() + s[1:]


def counter_rows(section: Mapping):
    """``(counters, others)``: counters are ``(label, count, rate|None)`` for
    every numeric ``nFoo`` key (label ``foo``); others are ``(key, value)``
    for the remaining keys, less the rate keys that went with a counter."""
    counters, used = [], set()
    for key, value in section.items():
        if len(key) > 1 and key[0] == "n" and key[1].isupper() and is_number(value):
            base = lcfirst(key[1:])
            rate_key = next((k for k in (base + "Rate", base.rstrip("s") + "Rate")
                             if k in section), None)
            used.add(key)
            if rate_key is not None:
                used.add(rate_key)
            counters.append((base, value, section.get(rate_key) if rate_key else None))
    others = [(k, v) for k, v in section.items() if k not in used]
    return counters, others


def flatten(section: Mapping, prefix: str = "") -> dict:
    out = {}
    for key, value in section.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# --------------------------------------------------------------------------
# a statistics dict as a whole
# --------------------------------------------------------------------------

def id_label(stats: Mapping) -> Optional[str]:
    """'consumer 3' or 'collector 1' (by the id field the statistics carry); None without."""
    for field, kind in (("consumerId", "consumer"), ("collectorId", "collector")):
        if field in stats:
            return f"{kind} {stats[field]}"
    return None


def header_words(stats: Mapping) -> list:
    label = id_label(stats)
    words = [label] if label else []
    if stats.get("inputChannel"):
        words.append(str(stats["inputChannel"]))
    return words


def runtime_of(stats: Mapping) -> float:
    ps = stats.get("processorStats")
    if not isinstance(ps, Mapping):
        return 0.0
    runtime = ps.get("runtime")
    if is_number(runtime):
        return max(float(runtime), 0.0)
    start, end = ps.get("startTime"), ps.get("endTime")
    if is_number(start) and is_number(end) and start > 0 and end > start:
        return float(end) - float(start)
    return 0.0
