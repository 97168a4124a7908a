"""The frames a simulated area detector serves, made before publishing starts.

A frame source draws one frame at a time: :class:`RandomFrames` makes
random detector-like images (uniform or Poisson), :class:`FileFrames` reads
them from a ``.npy`` stack and :class:`pvagpu.pva.sim_hdf5.Hdf5Frames` from
an HDF5 dataset (decompressed, or its chunks as stored). :class:`FrameCache`
turns each into a complete NTNDArray ``Value`` -- compressed with an
areaDetector codec exactly as NDPluginCodec would, if asked -- so that
publishing a frame only sets its ``uniqueId`` and time stamps, and neither
generation nor compression ever limits the rate.

How many distinct random frames (without ``n_frames``): as many as the
cache holds (``cache_size``, pvapy's 1000), unless that would take more
than ``build_budget`` seconds or ``memory_budget`` bytes; both are measured
on the first frames (:class:`BuildPlan`), and the choice is reported. A
build that takes longer than a second shows its progress.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np
from p4p import Value

from .. import ntnda
from ..errors import ConfigurationError, FrameError
from .sim_config import SimConfig, image_dtype

#: seconds of building that the first frames are timed over before the
#: number of distinct random frames is chosen
PROBE_SECONDS = 0.5
#: seconds between two progress lines (the first comes after one interval)
PROGRESS_INTERVAL = 1.0

_MIB = 1024.0 * 1024.0


def value_range(config: SimConfig, dtype: np.dtype):
    """[low, high) of the random values."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low = info.min if config.minimum is None else config.minimum
        high = info.max + 1 if config.maximum is None else config.maximum
        if not (info.min <= low and high <= info.max + 1):
            raise ConfigurationError(f"value range [{low}, {high}) exceeds {dtype.name} "
                                     f"[{info.min}, {info.max}]")
        low, high = int(math.ceil(low)), int(math.ceil(high))
    else:
        low = 0.0 if config.minimum is None else float(config.minimum)
        high = 1.0 if config.maximum is None else float(config.maximum)
    if not low < high:
        raise ConfigurationError(f"minimum {low} must be below maximum {high}")
    return low, high


@dataclass
class Chunk:
    """A frame as a file stores it: a compressed payload and its codec name."""
    payload: np.ndarray
    codec: str


class RandomFrames:
    """Random detector-like images, drawn one at a time (no stack in memory)."""

    #: the number of frames is the caller's choice (see BuildPlan)
    fixed_count = False

    def __init__(self, config: SimConfig):
        self.dtype = image_dtype(config.datatype)
        self.low, self.high = value_range(config, self.dtype)
        self.color_mode = ntnda.ColorMode(int(config.color_mode))
        self.shape = (config.ny, config.nx) if self.color_mode == ntnda.ColorMode.MONO \
            else (config.ny, config.nx, 3)
        self.distribution = config.distribution
        self.mean = config.mean
        self.rng = np.random.default_rng(config.seed)
        self.fixed_count = config.n_frames > 0
        self.count = config.n_frames if config.n_frames > 0 else config.cache_size
        self.source = (f"random {self.distribution} {config.nx}x{config.ny} {self.dtype.name} "
                       f"{self.color_mode.name}")

    def image(self, index: int) -> np.ndarray:
        rng, dtype = self.rng, self.dtype
        if self.distribution == "poisson":
            counts = rng.poisson(self.mean, self.shape)
            hi = self.high - 1 if dtype.kind in "iu" else self.high
            return np.clip(counts, self.low, hi).astype(dtype)
        if dtype.kind in "iu":
            return rng.integers(self.low, self.high, self.shape, dtype=dtype)
        out = rng.random(self.shape, dtype=np.float32 if dtype.itemsize == 4 else np.float64)
        return (self.low + (self.high - self.low) * out).astype(dtype, copy=False)

    frame = image


class StackFrames:
    """Frames of a stack read by index: (n, ny, nx), (n, ny, nx, 3), or one
    (ny, nx) or (ny, nx, 3) frame. ``stack`` is a numpy array or anything
    indexed like one (an h5py dataset); ``label`` names it in messages."""

    fixed_count = True

    def __init__(self, stack, config: SimConfig, label: str):
        shape, ndim = tuple(stack.shape), len(stack.shape)
        color = ndim in (3, 4) and shape[-1] == 3 and \
            int(config.color_mode) != ntnda.ColorMode.MONO
        self.single = ndim == 2 or (ndim == 3 and color)
        if self.single:
            shape = (1,) + shape
        if len(shape) == 4 and shape[-1] == 3:
            color = True
        elif len(shape) != 3:
            raise ConfigurationError(
                f"input {label} has shape {tuple(stack.shape)}; expected (n, ny, nx) frames, "
                f"(n, ny, nx, 3) colour frames, or a single 2-D frame")
        if shape[0] == 0 or 0 in shape[1:3]:
            raise ConfigurationError(f"input {label} holds no pixels (shape {tuple(stack.shape)})")
        dtype = np.dtype(stack.dtype)
        if dtype.kind == "b":
            raise ConfigurationError(f"input {label} holds booleans; not an image type")
        self.dtype = dtype.newbyteorder("=") if dtype.kind in "iuf" else dtype
        try:
            ntnda.info_for_dtype(self.dtype)
        except FrameError as exc:
            raise ConfigurationError(f"input {label}: {exc}") from None
        self.stack = stack
        self.frame_shape = shape[1:]
        mode = ntnda.ColorMode(int(config.color_mode))
        self.color_mode = (mode if mode != ntnda.ColorMode.MONO else ntnda.ColorMode.RGB1) \
            if color else ntnda.ColorMode.MONO
        n = shape[0]
        self.count = min(config.n_frames, n) if config.n_frames > 0 else n
        self.source = (f"{label} {shape[2]}x{shape[1]} {self.dtype.name} "
                       f"{self.color_mode.name}")

    def image(self, index: int) -> np.ndarray:
        raw = self.stack[()] if self.single else self.stack[index]
        return np.asarray(raw, dtype=self.dtype)

    frame = image


class FileFrames(StackFrames):
    """Frames of a ``.npy`` stack (see :class:`StackFrames`)."""

    def __init__(self, config: SimConfig):
        path = config.input_file
        try:
            stack = np.load(path, mmap_mode="r" if config.mmap_mode else None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ConfigurationError(f"cannot read input file {path!r}: {exc}") from None
        if not isinstance(stack, np.ndarray):
            raise ConfigurationError(f"input file {path!r} holds several arrays (.npz); "
                                     f"give a .npy stack")
        super().__init__(stack, config, os.path.basename(path))


def frame_source(config: SimConfig):
    """The frame source for ``config``: random, .npy or HDF5."""
    if not config.input_file:
        return RandomFrames(config)
    from . import sim_hdf5  # noqa: PLC0415 - h5py only when an HDF5 file is read
    if sim_hdf5.is_hdf5(config.input_file):
        return sim_hdf5.Hdf5Frames(config)
    if config.hdf_dataset or config.hdf_compressed:
        raise ConfigurationError(f"-hds/-hcm apply to HDF5 input; {config.input_file!r} "
                                 f"is not an HDF5 file")
    return FileFrames(config)


class BuildPlan:
    """How many frames a :class:`FrameCache` builds, and its progress lines.

    A source with a fixed count (``n_frames`` given, or a file) builds
    that many, at most ``cache_size``. Otherwise the first frames are timed
    (:data:`PROBE_SECONDS`) and the count is the largest that keeps within
    ``cache_size``, ``build_budget`` seconds and ``memory_budget`` bytes
    (at least one frame). ``clock`` is a monotonic clock in seconds."""

    def __init__(self, config: SimConfig, source, clock: Callable[[], float],
                 report: Optional[Callable[[str], None]] = None,
                 progress: Optional[Callable[[str], None]] = None):
        self.config, self.clock = config, clock
        self.report, self.progress = report, progress
        self.decided = bool(source.fixed_count)
        self.count = min(source.count, config.cache_size)
        self.reason = ""
        if source.fixed_count and source.count > config.cache_size and report:
            report(f"caching the first {config.cache_size} of {source.count} frames "
                   f"(raise --cache-size to cycle through all)")
        self.t_start = clock()
        self.t_first = 0.0
        self.next_progress = self.t_start + PROGRESS_INTERVAL

    def built(self, n: int, held_bytes: int) -> None:
        """Note that ``n`` frames holding ``held_bytes`` are built."""
        now = self.clock()
        elapsed = now - self.t_start
        if n == 1:
            self.t_first = elapsed
        if not self.decided and (n >= self.count or elapsed >= self.config.build_budget
                                 or held_bytes / n * (n + 1) > self.config.memory_budget
                                 or (n >= 2 and elapsed >= PROBE_SECONDS)):
            self._decide(n, elapsed, held_bytes)
        if self.progress is not None and self.decided and now >= self.next_progress \
                and n < self.count:
            left = elapsed / n * (self.count - n)
            self.progress(f"building frames: {n}/{self.count} ({100.0 * n / self.count:.0f}%), "
                          f"{elapsed:.1f} s, about {left:.1f} s left")
            self.next_progress = now + PROGRESS_INTERVAL

    def _decide(self, n: int, elapsed: float, held_bytes: int) -> None:
        """Fix the count after ``n`` frames: the first frame (which pays for
        warming up) counts in the time spent, the others give the time a
        frame takes from now on."""
        cfg = self.config
        self.decided = True
        per_frame = (elapsed - self.t_first) / (n - 1) if n >= 2 else elapsed / n
        per_bytes = held_bytes / n
        left = max(0.0, cfg.build_budget - elapsed)
        by_time = n + int(left / per_frame) if per_frame > 0 else cfg.cache_size
        by_memory = int(cfg.memory_budget / per_bytes) if per_bytes > 0 else cfg.cache_size
        count = max(1, min(cfg.cache_size, by_time, by_memory))
        if count == cfg.cache_size:
            limit = f"the cache size (-cs {cfg.cache_size})"
        elif count == by_memory:
            limit = (f"the memory budget of {cfg.memory_budget / _MIB:.0f} MiB at "
                     f"{per_bytes / _MIB:.2f} MiB a frame")
        else:
            limit = (f"the build budget of {cfg.build_budget:g} s at "
                     f"{per_frame * 1e3:.1f} ms a frame")
        self.count = max(count, n)
        self.reason = f"{self.count} distinct frames, limited by {limit}"
        if self.report and count < cfg.cache_size:
            self.report(f"making {self.reason}; -nf N sets the number")


class FrameCache:
    """The pre-built NTNDArray Values that a :class:`SimServer` cycles through.

    ``report`` gets the choice of the frame count, ``progress`` the progress
    lines of a long build (stderr in the CLI); ``clock`` times the build."""

    def __init__(self, config: SimConfig, report: Optional[Callable[[str], None]] = None,
                 progress: Optional[Callable[[str], None]] = None,
                 clock: Callable[[], float] = time.perf_counter):
        source = frame_source(config)
        plan = BuildPlan(config, source, clock, report, progress)
        self.values: List[Value] = []
        self.images: List[np.ndarray] = []
        self.raw_bytes = 0
        self.payload_bytes = 0
        held = 0
        zero = ntnda.TimeStamp()
        fields = dict(descriptor=config.descriptor, time_stamp=zero, data_time_stamp=zero)
        index = 0
        while index < plan.count:
            item = source.frame(index)
            if isinstance(item, Chunk):
                image = source.image(index) if config.keep_images else None
                value = ntnda.build_value(
                    ("ubyteValue", item.payload), 0, shape=source.frame_shape,
                    dtype=source.dtype, codec=item.codec, color_mode=source.color_mode,
                    **fields)
                nbytes = int(value["uncompressedSize"])
            else:
                image = item
                value = ntnda.value_from_image(
                    image, 0, color_mode=source.color_mode, codec=config.codec,
                    codec_options=config.codec_options, **fields)
                nbytes = image.nbytes
            self.values.append(value)
            self.raw_bytes += nbytes
            self.payload_bytes += int(value["compressedSize"])
            held += int(value["compressedSize"])
            if config.keep_images:
                self.images.append(np.array(image))
                held += nbytes
            index += 1
            plan.built(index, held)
        self.build_time = clock() - plan.t_start
        self.count_reason = plan.reason
        self.source = source.source
        self.color_mode = source.color_mode
        self.dtype = source.dtype
        self.codec = getattr(source, "codec", None) or config.codec
        close = getattr(source, "close", None)
        if close is not None:
            close()

    def __len__(self):
        return len(self.values)

    @property
    def frame_bytes(self) -> float:
        """Mean uncompressed bytes per frame."""
        return self.raw_bytes / max(1, len(self.values))

    @property
    def payload_frame_bytes(self) -> float:
        """Mean bytes per frame on the wire (compressed if a codec is set)."""
        return self.payload_bytes / max(1, len(self.values))

    def describe(self) -> str:
        text = f"{len(self)} frames, {self.source}"
        if self.codec:
            ratio = self.raw_bytes / max(1, self.payload_bytes)
            text += (f", codec {self.codec}: {self.raw_bytes / _MIB:.1f} MiB -> "
                     f"{self.payload_bytes / _MIB:.1f} MiB (ratio {ratio:.2f})")
        else:
            text += f", {self.raw_bytes / _MIB:.1f} MiB"
        return text + f", built in {self.build_time:.2f} s"
