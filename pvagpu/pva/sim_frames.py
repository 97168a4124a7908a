"""The frames a simulated area detector serves, made before publishing starts.

A frame source draws one image at a time: :class:`RandomFrames` makes
random detector-like images (uniform or Poisson), :class:`FileFrames` reads
them from a ``.npy`` stack. :class:`FrameCache` turns each into a complete
NTNDArray ``Value`` -- compressed with an areaDetector codec exactly as
NDPluginCodec would, if asked -- so that publishing a frame only sets its
``uniqueId`` and time stamps, and neither generation nor compression ever
limits the rate.
"""
from __future__ import annotations

import math
import os
import time
from typing import Callable, List, Optional

import numpy as np
from p4p import Value

from .. import ntnda
from ..errors import ConfigurationError, FrameError
from .sim_config import SimConfig, image_dtype


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


class RandomFrames:
    """Random detector-like images, drawn one at a time (no stack in memory)."""

    def __init__(self, config: SimConfig):
        self.dtype = image_dtype(config.datatype)
        self.low, self.high = value_range(config, self.dtype)
        self.color_mode = ntnda.ColorMode(int(config.color_mode))
        self.shape = (config.ny, config.nx) if self.color_mode == ntnda.ColorMode.MONO \
            else (config.ny, config.nx, 3)
        self.distribution = config.distribution
        self.mean = config.mean
        self.rng = np.random.default_rng(config.seed)
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


class FileFrames:
    """Frames of a ``.npy`` stack: (n, ny, nx), (n, ny, nx, 3), (ny, nx) or (ny, nx, 3)."""

    def __init__(self, config: SimConfig):
        path = config.input_file
        try:
            stack = np.load(path, mmap_mode="r" if config.mmap_mode else None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ConfigurationError(f"cannot read input file {path!r}: {exc}") from None
        if not isinstance(stack, np.ndarray):
            raise ConfigurationError(f"input file {path!r} holds several arrays (.npz); "
                                     f"give a .npy stack")
        color = stack.ndim in (3, 4) and stack.shape[-1] == 3 and \
            int(config.color_mode) != ntnda.ColorMode.MONO
        if stack.ndim == 2 or (stack.ndim == 3 and color):
            stack = stack[np.newaxis]
        if stack.ndim == 4 and stack.shape[-1] == 3:
            color = True
        elif stack.ndim != 3:
            raise ConfigurationError(
                f"input file {path!r} has shape {stack.shape}; expected (n, ny, nx) frames, "
                f"(n, ny, nx, 3) colour frames, or a single 2-D frame")
        if stack.shape[0] == 0 or 0 in stack.shape[1:3]:
            raise ConfigurationError(f"input file {path!r} holds no pixels (shape {stack.shape})")
        try:
            ntnda.info_for_dtype(stack.dtype)
        except FrameError as exc:
            raise ConfigurationError(f"input file {path!r}: {exc}") from None
        if stack.dtype.kind == "b":
            raise ConfigurationError(f"input file {path!r} holds booleans; not an image type")
        self.stack = stack
        self.dtype = stack.dtype
        mode = ntnda.ColorMode(int(config.color_mode))
        self.color_mode = (mode if mode != ntnda.ColorMode.MONO else ntnda.ColorMode.RGB1) \
            if color else ntnda.ColorMode.MONO
        n = stack.shape[0]
        self.count = min(config.n_frames, n) if config.n_frames > 0 else n
        self.source = (f"{os.path.basename(path)} {stack.shape[2]}x{stack.shape[1]} "
                       f"{self.dtype.name} {self.color_mode.name}")

    def image(self, index: int) -> np.ndarray:
        return np.asarray(self.stack[index])


class FrameCache:
    """The pre-built NTNDArray Values that a :class:`SimServer` cycles through."""

    def __init__(self, config: SimConfig, report: Optional[Callable[[str], None]] = None):
        source = FileFrames(config) if config.input_file else RandomFrames(config)
        count = source.count
        if count > config.cache_size:
            if report:
                report(f"caching the first {config.cache_size} of {count} frames "
                       f"(raise --cache-size to cycle through all)")
            count = config.cache_size
        t_start = time.perf_counter()
        self.values: List[Value] = []
        self.images: List[np.ndarray] = []
        self.raw_bytes = 0
        self.payload_bytes = 0
        zero = ntnda.TimeStamp()
        for index in range(count):
            image = source.image(index)
            value = ntnda.value_from_image(
                image, 0, color_mode=source.color_mode, codec=config.codec,
                codec_options=config.codec_options, descriptor=config.descriptor,
                time_stamp=zero, data_time_stamp=zero)
            self.values.append(value)
            self.raw_bytes += image.nbytes
            self.payload_bytes += int(value["compressedSize"])
            if config.keep_images:
                self.images.append(np.array(image))
        self.build_time = time.perf_counter() - t_start
        self.source = source.source
        self.color_mode = source.color_mode
        self.dtype = source.dtype
        self.codec = config.codec

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
        mib = 1024.0 * 1024.0
        text = f"{len(self)} frames, {self.source}"
        if self.codec:
            ratio = self.raw_bytes / max(1, self.payload_bytes)
            text += (f", codec {self.codec}: {self.raw_bytes / mib:.1f} MiB -> "
                     f"{self.payload_bytes / mib:.1f} MiB (ratio {ratio:.2f})")
        else:
            text += f", {self.raw_bytes / mib:.1f} MiB"
        return text + f", built in {self.build_time:.2f} s"
