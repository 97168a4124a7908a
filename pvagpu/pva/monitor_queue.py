"""The monitor queue's default size: as many frames as a memory budget holds.

A monitor's ``record[queueSize=N]`` lets the server (and pvxs' client
side) hold up to N updates for this client while it is busy; what
overflows is squashed and shows as missed frames. pvxs' default, 4, loses
frames of a 200 fps stream whenever the consumer's thread stalls for
20 ms. Without ``-sqs`` the receiver first GETs the channel's size fields
only (:data:`PROBE_REQUEST`: no pixels travel), and asks for
:func:`queue_size` frames: the budget divided by the frame size, between
:data:`MIN_QUEUE_SIZE` and :data:`MAX_QUEUE_SIZE`. The queue holds at most
that many frames on each side (server and client), so the budget bounds
the memory that queueing may take there.
"""
from __future__ import annotations

import math

#: bytes of frames the monitor queue may hold by default (each side)
DEFAULT_QUEUE_MEMORY = 256 * 2**20
#: the frame size assumed when the channel's record has no frame yet
DEFAULT_FRAME_BYTES = 4 * 2**20
MIN_QUEUE_SIZE = 4
MAX_QUEUE_SIZE = 1000
#: the fields that give a frame's size, fetched by the sizing GET
PROBE_REQUEST = "field(dimension,compressedSize,uncompressedSize,codec.name)"

_ELEMENT_BYTES_UNKNOWN = 8   # the largest element: a frame of unknown type is not underestimated


def frame_bytes(value) -> int:
    """The bytes one frame of ``value`` (a probe GET's result) takes on the
    wire: compressedSize for a compressed frame, else uncompressedSize,
    else the pixel count times 8; 0 when the record holds no frame or is
    not an NTNDArray."""
    def field(name, default=0):
        try:
            return value[name]
        except (KeyError, ValueError, TypeError, AttributeError):
            return default
    codec = field("codec.name", "") or ""
    compressed, uncompressed = int(field("compressedSize") or 0), int(field("uncompressedSize") or 0)
    if codec and compressed > 0:
        return compressed
    if uncompressed > 0:
        return uncompressed
    try:
        sizes = [int(d["size"]) for d in field("dimension", []) or []]
    except (KeyError, ValueError, TypeError):
        return 0
    if not sizes or any(s <= 0 for s in sizes):
        return 0
    return math.prod(sizes) * _ELEMENT_BYTES_UNKNOWN


def queue_size(frame_size: int, budget: int = DEFAULT_QUEUE_MEMORY) -> int:
    """Frames of ``frame_size`` bytes that ``budget`` holds, clamped to
    [MIN_QUEUE_SIZE, MAX_QUEUE_SIZE]; an unknown size (<= 0) counts as
    :data:`DEFAULT_FRAME_BYTES`."""
    size = frame_size if frame_size > 0 else DEFAULT_FRAME_BYTES
    return max(MIN_QUEUE_SIZE, min(MAX_QUEUE_SIZE, int(budget) // size))


def describe(size: int, frame_size: int, budget: int) -> str:
    """The start-up line, e.g. ``server queue 512 frames (512 KiB each, budget 256 MiB; -sqs N overrides)``."""
    each = f"{_bytes(frame_size)} each" if frame_size > 0 else \
        f"frame size not known yet: {_bytes(DEFAULT_FRAME_BYTES)} assumed"
    return (f"server queue {size} frames ({each}, budget {_bytes(budget)}; "
            f"-sqs N overrides)")


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"
