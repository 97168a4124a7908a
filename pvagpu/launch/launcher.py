"""The launcher's run: start the children, show the table, stop everything, summarise.

:class:`Launcher` ties the parts together: the
:class:`~pvagpu.launch.supervisor.Supervisor` starts the children of the
plan (sources first), a :class:`~pvagpu.launch.status_watch.StatusWatcher`
follows the consumers' status channels, and every report period the
:mod:`~pvagpu.launch.table` is redrawn with the GPUs' NVML figures
(:class:`~pvagpu.launch.gpus.GpuProbe`) and the events (a child that
exited). :meth:`Launcher.request_stop` (Ctrl-C, SIGTERM, the runtime)
ends the loop; :meth:`Launcher.run` then stops the children (consumers
first, see :meth:`Supervisor.stop`), shows the final table and prints the
summary. With no children (``--monitor``) it only watches.
"""
from __future__ import annotations

import shlex
import time
from typing import List, Optional, Sequence

from .gpus import GpuProbe
from .plan import CONSUMER, ChildSpec
from .screen import TableScreen
from .status_watch import StatusWatcher
from .supervisor import Supervisor
from .table import consumer_rows, render, total_row

_MAX_EVENTS = 6


class Launcher:
    """Runs ``specs`` (none for --monitor) and watches ``channels`` (default:
    the consumers' status channels)."""

    def __init__(self, specs: Sequence[ChildSpec], *, title: str, screen: TableScreen,
                 report_period: float = 1.0, runtime: float = 0.0, stop_timeout: float = 10.0,
                 log_dir: Optional[str] = None, env: Optional[dict] = None,
                 channels: Optional[List[str]] = None, probe: Optional[GpuProbe] = None):
        self.specs = list(specs)
        self.title = title
        self.screen = screen
        self.report_period = report_period
        self.runtime = runtime
        self.stop_timeout = stop_timeout
        self.supervisor = Supervisor(log_dir, env) if self.specs else None
        self.channels = channels if channels is not None else [
            s.status_channel for s in self.specs if s.status_channel]
        self.watcher = StatusWatcher(self.channels)
        self.probe = probe or GpuProbe()
        self.events: List[str] = []
        self.started = time.time()
        self._stop = False
        self.rows = []

    def request_stop(self) -> None:
        """End the run (signal-handler safe)."""
        self._stop = True

    # -- the run --------------------------------------------------------------

    def run(self) -> int:
        """Start, watch until stopped, stop, summarise; the exit status
        (0, or 1 when a consumer ended with an error)."""
        try:
            self._start_children()
            self.watcher.start()
            self._watch()
        finally:
            children = self.supervisor.stop(self.stop_timeout) if self.supervisor else []
            self._refresh(final=True)
            self.screen.close()
            self.watcher.close()
            self.probe.close()
            self._summary(children)
        consumers = [c for c in children if c.spec.role == CONSUMER]
        return 1 if any(c.returncode not in (0, None) and not c.forced for c in consumers) else 0

    def _start_children(self) -> None:
        if not self.supervisor:
            return
        self.screen.say(f"pvagpu-launch: children's output in {self.supervisor.log_dir}")
        for spec in self.specs:
            child = self.supervisor.start(spec)
            self.screen.say(f"started {spec.name} (pid {child.pid}): {shlex.join(spec.argv)}")

    def _watch(self) -> None:
        next_refresh = time.monotonic()
        while not self._stop:
            if self.runtime > 0 and time.time() - self.started >= self.runtime:
                break
            if self.supervisor and not any(c.spec.role == CONSUMER
                                           for c in self.supervisor.running()):
                self._refresh()
                self.events.append(f"{time.strftime('%H:%M:%S')} no consumer left: stopping")
                break
            now = time.monotonic()
            if now >= next_refresh:
                self._refresh()
                next_refresh = now + self.report_period
            time.sleep(min(0.05, max(0.0, next_refresh - time.monotonic())))

    # -- what is shown -------------------------------------------------------------

    def _exits(self, record: bool = True) -> dict:
        """channel -> exit text of the consumers that ended; an event for
        each new exit while running (the summary lists those at the stop)."""
        if not self.supervisor:
            return {}
        for child in self.supervisor.poll() if record else ():
            last = child.last_lines(1)
            self.events.append(f"{time.strftime('%H:%M:%S')} {child.describe_exit()}"
                               + (f": {last[0]}" if last and child.returncode else ""))
        del self.events[:-_MAX_EVENTS]
        return {c.spec.status_channel: ("stopped" if c.forced or c.returncode == 0 else
                                        f"exit {c.returncode}")
                for c in self.supervisor.children
                if c.spec.status_channel and c.returncode is not None}

    def _meta(self, exits: dict) -> dict:
        return {s.status_channel: {"label": s.name, "gpu": s.gpu, "exit": exits.get(s.status_channel)}
                for s in self.specs if s.status_channel}

    def _sources(self) -> List[str]:
        if not self.supervisor:
            return []
        return [f"{c.describe_exit() if c.returncode is not None else f'{c.name} (pid {c.pid}) running'}"
                for c in self.supervisor.children if c.spec.role != CONSUMER]

    def _refresh(self, final: bool = False) -> None:
        meta = self._meta(self._exits(record=not final))
        gpus = {m["gpu"] for m in meta.values() if m["gpu"]}
        gpus |= {g for m in meta.values() if m["gpu"] for g in str(m["gpu"]).split(",")}
        samples = {g: self.probe.sample(g) for g in gpus}
        self.rows = consumer_rows(self.watcher.snapshot(), meta, samples)
        title = f"{self.title}   runtime {time.time() - self.started:.1f} s"
        text = render(title, self.rows, self._sources(), self.events, now=time.time(),
                      width=self.screen.width)
        if self.screen.live or not final:   # off a terminal the summary shows the last one
            self.screen.show(text)

    def _summary(self, children) -> None:
        say = self.screen.say
        if not self.screen.live:
            say("final:")
            say(render(self.title, self.rows, (), self.events))
        for child in children:
            line = f"  {child.describe_exit()}"
            if child.spec.role == CONSUMER:
                last = child.last_lines(1)
                if last:
                    line += f": {last[0]}"
            say(line)
        total = total_row(self.rows)
        top = [r for r in self.rows if not r.label.startswith(" ")]
        # each consumer's rate over its receiving time (pvapy's processedRate), summed
        fps = sum((r.stats.get("processorStats") or {}).get("processedRate", 0.0) for r in top)
        say(f"pvagpu-launch: {len(top)} consumer{'' if len(top) == 1 else 's'}: processed {total.processed or 0:.0f}, missed "
            f"{total.missed or 0:.0f}, errors {total.errors or 0:.0f}, overruns "
            f"{total.overruns or 0:.0f}, {fps:.1f} frames/s; runtime "
            f"{time.time() - self.started:.1f} s"
            + (f"; {len(children)} children stopped, logs in {self.supervisor.log_dir}"
               if self.supervisor else ""))
