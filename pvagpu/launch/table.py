"""The aggregated table: one row per consumer (and per worker), a total, sources and events.

Pure functions of the status channels' states
(:class:`~pvagpu.launch.status_watch.ChannelState`) and what the launcher
knows of each consumer (its GPU, its process), so tests call them
directly. Per row:

=========  ===============================================================
frames/s   processed frames per second between the last two status updates
           (processorStats.processedRate before there are two)
missed     processorStats.nMissed (gaps in uniqueId)
errors     receiver + processor + publisher nErrors
overruns   receiverStats.nOverruns (frames dropped on a full queue)
ring       GPU staging ring occupancy/slots (userStats ringOccupancy,
           ringSlots), else the frame queue's nQueued/maxLength, else '-'
gpu mem    used/total GiB of the row's GPU through NVML ('-' without it)
util       GPU utilisation through NVML ('-' without it)
=========  ===============================================================

A consumer with worker processes may publish per-worker statistics: any
top-level section whose name contains ``worker`` holding ``nProcessed``
(or sub-sections that do) adds an indented row per worker.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Sequence

from ..report.values import clock, id_label, is_number, num

COLUMNS = (("consumer", 12, "<"), ("gpu", 5, "<"), ("state", 10, "<"), ("received", 9, ">"),
           ("processed", 10, ">"), ("frames/s", 9, ">"), ("missed", 7, ">"),
           ("errors", 7, ">"), ("overruns", 9, ">"), ("ring", 8, ">"), ("gpu mem", 14, ">"),
           ("util", 5, ">"))


@dataclass
class Row:
    label: str
    gpu: str = "-"
    state: str = "-"
    received: Optional[float] = None
    processed: Optional[float] = None
    fps: Optional[float] = None
    missed: Optional[float] = None
    errors: Optional[float] = None
    overruns: Optional[float] = None
    ring: str = "-"
    gpu_mem: str = "-"
    util: str = "-"
    stats: dict = field(default_factory=dict, repr=False)

    def cells(self) -> list:
        return [self.label, self.gpu, self.state, _n(self.received), _n(self.processed),
                _n(self.fps), _n(self.missed), _n(self.errors), _n(self.overruns), self.ring,
                self.gpu_mem, self.util]


def _n(x) -> str:
    return "-" if x is None else num(x)


def _get(stats: Mapping, section: str, key: str):
    sec = stats.get(section)
    value = sec.get(key) if isinstance(sec, Mapping) else None
    return value if is_number(value) else None


def _sum(stats: Mapping, key: str, sections) -> Optional[float]:
    values = [_get(stats, s, key) for s in sections]
    values = [v for v in values if v is not None]
    return sum(values) if values else None


def _rate(state) -> Optional[float]:
    """Processed frames/s between the last two updates, else processedRate."""
    now, before = state.stats, state.previous
    if before is not None:
        n1, n0 = _get(now, "processorStats", "nProcessed"), _get(before, "processorStats",
                                                                  "nProcessed")
        t1, t0 = now.get("objectTime"), before.get("objectTime")
        if None not in (n1, n0) and is_number(t1) and is_number(t0) and t1 > t0 and n1 >= n0:
            return (n1 - n0) / (t1 - t0)
    return _get(now, "processorStats", "processedRate")


def _ring(stats: Mapping) -> str:
    used, slots = _get(stats, "userStats", "ringOccupancy"), _get(stats, "userStats", "ringSlots")
    if used is None or not slots:
        used, slots = _get(stats, "queueStats", "nQueued"), _get(stats, "queueStats", "maxLength")
    return f"{num(used)}/{num(slots)}" if used is not None and slots else "-"


def gpu_cells(sample: Optional[Mapping]) -> tuple:
    """('used/total GiB', 'util%') of an NVML sample; '-' for what is unknown."""
    sample = sample or {}
    used, total, util = sample.get("memUsed"), sample.get("memTotal"), sample.get("util")
    mem = f"{used / 2**30:.1f}/{total / 2**30:.1f} GiB" if used is not None and total else "-"
    return mem, (f"{util}%" if util is not None else "-")


def _state(state, exit_text: Optional[str]) -> str:
    if exit_text:
        return exit_text
    if state.stats is None:
        return "starting" if not state.connected else "waiting"
    if not state.connected:
        return "no status"
    connected = (state.stats.get("receiverStats") or {}).get("connected")
    return "no input" if connected is False else "ok"


def _counts(row: Row, stats: Mapping) -> Row:
    row.received = _get(stats, "receiverStats", "nReceived")
    row.processed = _get(stats, "processorStats", "nProcessed")
    row.missed = _get(stats, "processorStats", "nMissed")
    row.errors = _sum(stats, "nErrors", ("receiverStats", "processorStats", "publisherStats"))
    row.overruns = _get(stats, "receiverStats", "nOverruns")
    return row


def worker_sections(stats: Mapping) -> list:
    """``[(name, section)]`` of per-worker statistics in a status dict."""
    out = []
    for key, value in stats.items():
        if "worker" not in key.lower() or not isinstance(value, Mapping):
            continue
        if is_number(value.get("nProcessed")):
            out.append((key, value))
        else:
            out += [(f"{sub}", sec) for sub, sec in value.items()
                    if isinstance(sec, Mapping) and is_number(sec.get("nProcessed"))]
    return out


def consumer_rows(states: Sequence, meta: Mapping, samples: Mapping) -> List[Row]:
    """Rows of the consumers whose status channels are ``states``.

    ``meta``: channel -> ``{'label', 'gpu', 'exit'}`` (what the launcher
    knows; missing for --monitor, where the label is the consumer or collector id);
    ``samples``: GPU -> NVML sample (:meth:`GpuProbe.sample`)."""
    rows = []
    for state in states:
        info = meta.get(state.channel, {})
        stats = state.stats or {}
        label = info.get("label") or id_label(stats) or state.channel
        gpu = info.get("gpu")
        if gpu is None:
            device = (stats.get("userStats") or {}).get("gpuDevice")
            gpu = str(device) if device else "-"
        row = _counts(Row(label, gpu, _state(state, info.get("exit")), stats=stats), stats)
        if state.stats is not None:
            row.fps = _rate(state)
            row.ring = _ring(stats)
        row.gpu_mem, row.util = gpu_cells(samples.get(gpu))
        rows.append(row)
        for name, section in worker_sections(stats):
            worker = _counts(Row("  " + name), {"processorStats": section,
                                                "receiverStats": section})
            worker.fps = section.get("processedRate") if is_number(
                section.get("processedRate")) else None
            device = section.get("gpu", section.get("gpuDevice"))
            worker.gpu = str(device) if device not in (None, "") else "-"
            worker.gpu_mem, worker.util = gpu_cells(samples.get(worker.gpu))
            worker.state = "ok" if row.state == "ok" else row.state
            rows.append(worker)
    return rows


def total_row(rows: Sequence[Row]) -> Row:
    """The sums over the consumer rows (worker rows are parts of those)."""
    top = [r for r in rows if not r.label.startswith(" ")]
    total = Row("total", state=f"{sum(r.state == 'ok' for r in top)}/{len(top)} ok")
    for key in ("received", "processed", "fps", "missed", "errors", "overruns"):
        values = [getattr(r, key) for r in top if getattr(r, key) is not None]
        setattr(total, key, sum(values) if values else None)
    return total


def _line(cells) -> str:
    return " ".join(f"{str(c):{align}{w}}" if len(str(c)) <= w else str(c)[:w - 1] + "\u2026"
                    for c, (_, w, align) in zip(cells, COLUMNS)).rstrip()


def render(title: str, rows: Sequence[Row], sources: Sequence[str] = (),
           events: Sequence[str] = (), now: Optional[float] = None,
           width: Optional[int] = None) -> str:
    """The table as text: title (with a clock), column header, one line per
    row, the total, the sources' states and the latest events."""
    lines = [title + (f"   {clock(now)}" if now is not None else ""), "",
             _line([name for name, _, _ in COLUMNS])]
    lines += [_line(r.cells()) for r in rows]
    lines.append(_line(total_row(rows).cells()))
    if sources:
        lines += [""] + [f"{s}" for s in sources]
    if events:
        lines += ["", "events:"] + [f"  {e}" for e in events]
    if width:
        limit = max(width - 1, 20)
        lines = [line if len(line) <= limit else line[:limit - 1] + "\u2026" for line in lines]
    return "\n".join(lines)
