"""A simulated area detector: NTNDArray frames served over PV Access.

:class:`SimServer` serves one NTNDArray channel (default ``pvapy:image``)
with a p4p server, as ``pvapy-ad-sim-server`` does, and adds what a test
bench for a streaming pipeline needs:

* Frames are made once, before publishing starts
  (:mod:`pvagpu.pva.sim_frames`): random detector-like images (uniform or
  Poisson) or a ``.npy`` stack, each turned into a complete NTNDArray
  ``Value``, compressed with an areaDetector codec if asked. Publishing a
  frame then only sets ``uniqueId``, ``timeStamp`` and ``dataTimeStamp``
  and posts it, so neither generation nor compression ever limits the rate.
* Pacing follows a steady clock: frame ``k`` (0-based) is due at
  ``t0 + k / fps``. Sleeping late never shifts later frames (no drift);
  a frame that is already late goes out at once (frames are never
  skipped). ``fps <= 0`` publishes as fast as possible.
* Frames are numbered 1, 2, 3, ... and stamped with the wall-clock time of
  publication (``timeStamp == dataTimeStamp``); the rate really reached is
  measured, reported and available as :attr:`SimServer.achieved_rate`.
* Optional metadata channels carry one random value per frame, for
  metadata-pairing processors: ``pva://NAME`` with the frame's time stamp,
  ``NAME`` or ``ca://NAME`` over Channel Access from an embedded IOC
  (:mod:`pvagpu.pva.sim_ca`), put just before the frame, as pvapy does.

Before the first frame the channel holds an empty NTNDArray (uniqueId 0),
as pvapy's server does; a client that subscribes early sees it as its first
update (pvapy's consumer skips it with its default ``-siu 1``).

Usage in-process (tests, benchmarks)::

    from pvagpu.pva.sim_config import SimConfig
    from pvagpu.pva.sim_server import SimServer
    with SimServer(SimConfig(channel_name="det:image", nx=512, ny=512,
                             frame_rate=100, n_published=500, codec="lz4")) as server:
        server.wait()                      # until all 500 are out
        print(server.summary())

The settings are a :class:`~pvagpu.pva.sim_config.SimConfig`; the console
front-end is ``pvagpu-sim-server`` (:mod:`pvagpu.cli.sim_server`).
"""
from __future__ import annotations

import math
import threading
import time
from typing import Callable, List, Optional

import numpy as np
from p4p import Type, Value
from p4p.server import Server
from p4p.server.thread import SharedPV

from .. import ntnda
from ..memory import tune_malloc
from .sim_config import SimConfig
from .sim_frames import FrameCache

#: a metadata channel: one double and the time stamp of the frame it belongs to
METADATA_TYPE = Type([("value", "d"), ("timeStamp", ntnda.TIME_T)])

_NS = 1_000_000_000


class _FirstClient:
    """SharedPV handler that notes the first client connection."""

    def __init__(self, event: threading.Event):
        self.event = event

    def onFirstConnect(self, pv):
        self.event.set()


class SimServer:
    """Serve pre-built NTNDArray frames at a steady rate; see the module doc.

    ``SimServer(config)`` builds the frame cache (ConfigurationError or
    CodecError for bad settings); :meth:`start` serves the channel and
    starts publishing after the start delay; :meth:`wait` waits for the
    run to end (runtime or ``n_published`` reached); :meth:`stop` ends it and
    closes the server. Also a context manager (start on enter, stop on exit).
    ``report`` receives progress lines (``print`` in the CLI), ``progress``
    the progress of a long frame build (stderr in the CLI).
    """

    def __init__(self, config: Optional[SimConfig] = None,
                 report: Optional[Callable[[str], None]] = None,
                 progress: Optional[Callable[[str], None]] = None, **overrides):
        config = config or SimConfig()
        if overrides:
            config = SimConfig(**{**config.__dict__, **overrides})
        config.check()
        self.config = config
        self._report = report
        self._metadata_names = config.metadata_channels()
        self._ca_names = config.ca_metadata_pvs()
        self._ca = None
        self.cache = FrameCache(config, report, progress)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._client = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._server: Optional[Server] = None
        self._pv: Optional[SharedPV] = None
        self._metadata: list = []
        self._lock = threading.Lock()
        self._n = 0
        self._t_first = self._t_last = None  # perf_counter of the first / last post
        self.max_lag = 0.0  # worst lateness of a frame behind its due time, seconds
        self.error: Optional[BaseException] = None
        self.stop_reason = "not started"

    # --- what a caller reads -------------------------------------------------

    @property
    def images(self) -> List[np.ndarray]:
        """The uncompressed cached images (needs ``keep_images=True``);
        frame ``uniqueId`` carries ``images[(uniqueId - 1) % len(images)]``."""
        return self.cache.images

    @property
    def n_published(self) -> int:
        return self._n

    @property
    def elapsed(self) -> float:
        """Seconds from the first to the last published frame."""
        if self._t_first is None:
            return 0.0
        return self._t_last - self._t_first

    @property
    def achieved_rate(self) -> float:
        """Frames per second really reached: (n - 1) / (t_last - t_first)."""
        n, elapsed = self._n, self.elapsed
        return (n - 1) / elapsed if n > 1 and elapsed > 0 else 0.0

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    def summary(self) -> str:
        """One line: frames, elapsed, target vs achieved rate, data rate, uniqueId range."""
        cfg = self.config
        target = f"{cfg.frame_rate:g} fps" if cfg.frame_rate > 0 else "max"
        mb = self.achieved_rate * self.cache.payload_frame_bytes / 1e6
        ids = f"uniqueId 1..{self._n}" if self._n else "no frames"
        codec = cfg.codec or "none"
        return (f"pvagpu-sim-server: published {self._n} frames in {self.elapsed:.3f} s; "
                f"target {target}, achieved {self.achieved_rate:.2f} fps ({mb:.1f} MB/s, codec "
                f"{codec}); {ids}; max lag {self.max_lag * 1e3:.1f} ms; {self.stop_reason}")

    # --- life cycle -----------------------------------------------------------

    def start(self) -> "SimServer":
        """Serve the channel and start the publishing thread."""
        if self._thread is not None:
            raise RuntimeError("SimServer already started")
        cfg = self.config
        if cfg.tune_malloc:
            tune_malloc()  # pvagpu.memory
        initial = Value(ntnda.NTNDARRAY_TYPE, {"descriptor": cfg.descriptor})
        self._pv = SharedPV(handler=_FirstClient(self._client), initial=initial)
        providers = {cfg.channel_name: self._pv}
        for name in self._metadata_names:
            value = Value(METADATA_TYPE, {"value": 0.0})
            pv = SharedPV(initial=value)
            providers[name] = pv
            self._metadata.append((pv, value))
        self._server = Server(providers=[providers])
        if self._ca_names:
            from .sim_ca import CaMetadataIoc  # noqa: PLC0415 - softioc only when needed
            self._ca = CaMetadataIoc(self._ca_names)
            self._say(f"serving CA metadata PVs {', '.join(self._ca_names)} from an embedded IOC")
        self._say(f"serving {cfg.channel_name}: {self.cache.describe()}")
        self.stop_reason = "running"
        self._thread = threading.Thread(target=self._run, name="pvagpu-sim-server", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until publishing has ended; True if it has."""
        if self._thread is None:
            return True
        return self._done.wait(timeout)

    def request_stop(self) -> None:
        """Ask the publisher to stop after the current frame (signal-safe)."""
        self._stop.set()

    def stop(self) -> None:
        """Stop publishing, close the channels and the server. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._server is not None:
            for pv in [self._pv] + [pv for pv, _ in self._metadata]:
                pv.close()
            self._server.stop()
            self._server = None
        if self.error is not None:
            raise self.error

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # --- the publisher --------------------------------------------------------

    def _say(self, text: str) -> None:
        if self._report is not None:
            self._report(text)

    def _run(self) -> None:
        try:
            if self._wait_for_start():
                self._publish()
        except BaseException as exc:  # noqa: BLE001 - handed to stop()
            self.error = exc
            self.stop_reason = f"failed: {exc}"
        finally:
            self._done.set()

    def _wait_for_start(self) -> bool:
        cfg = self.config
        if cfg.wait_for_client:
            self._say("waiting for the first client")
            while not self._client.wait(0.1):
                if self._stop.is_set():
                    self.stop_reason = "stopped before the first client"
                    return False
        if cfg.start_delay > 0 and self._stop.wait(cfg.start_delay):
            self.stop_reason = "stopped during the start delay"
            return False
        return True

    def _publish(self) -> None:
        cfg = self.config
        values = self.cache.values
        n_values = len(values)
        post = self._pv.post
        metadata = self._metadata
        ca = self._ca
        n_ca = len(self._ca_names)
        rng = np.random.default_rng(None if cfg.seed is None else cfg.seed + 1)
        period = 1.0 / cfg.frame_rate if cfg.frame_rate > 0 else 0.0
        runtime = cfg.runtime if cfg.runtime > 0 else math.inf
        limit = cfg.n_published if cfg.n_published > 0 else math.inf
        if cfg.report_period is None:
            every, report_interval = 0, 1.0
        else:
            every, report_interval = max(0, int(cfg.report_period)), math.inf
        clock, wall_ns, stop_wait, stopped = (time.perf_counter, time.time_ns,
                                              self._stop.wait, self._stop.is_set)
        t0 = clock()
        next_report = t0 + report_interval
        last_n, last_t = 0, t0
        k = 0
        self.stop_reason = "running"
        while True:
            if k >= limit:
                self.stop_reason = f"published the requested {k} frames"
                break
            if period:
                offset = k * period
                if offset >= runtime - 1e-9:
                    self.stop_reason = f"runtime of {cfg.runtime:g} s reached"
                    break
                due = t0 + offset
                delay = due - clock()
                if delay > 0 and stop_wait(delay):
                    self.stop_reason = "stopped"
                    break
                lag = clock() - due
                if lag > self.max_lag:
                    self.max_lag = lag
            else:
                if clock() - t0 >= runtime:
                    self.stop_reason = f"runtime of {cfg.runtime:g} s reached"
                    break
            if stopped():
                self.stop_reason = "stopped"
                break
            value = values[k % n_values]
            k += 1
            if ca is not None:
                ca.post(rng.random(n_ca).tolist())
            ns = wall_ns()
            sec, nsec = ns // _NS, ns % _NS
            value["uniqueId"] = k
            value["timeStamp.secondsPastEpoch"] = sec
            value["timeStamp.nanoseconds"] = nsec
            value["dataTimeStamp.secondsPastEpoch"] = sec
            value["dataTimeStamp.nanoseconds"] = nsec
            for pv, meta in metadata:
                meta["value"] = rng.random()
                meta["timeStamp.secondsPastEpoch"] = sec
                meta["timeStamp.nanoseconds"] = nsec
                pv.post(meta)
            post(value)
            now = clock()
            if k == 1:
                self._t_first = now
            self._t_last = now
            self._n = k
            if (every and k % every == 0) or now >= next_report:
                recent = (k - last_n) / (now - last_t) if now > last_t else 0.0
                self._say(f"published {k} frames (uniqueId {k}); {recent:.2f} fps now, "
                          f"{self.achieved_rate:.2f} fps overall; "
                          f"{now - self._t_first:.1f} s")
                last_n, last_t = k, now
                if report_interval != math.inf:
                    next_report = now + report_interval
