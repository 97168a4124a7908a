"""Frames to worker processes: the shared-memory ring and queue, the worker
command protocol, GPU binding and logging used by :mod:`pvagpu.hpc`'s
``UserMp*`` classes."""
from .shm_queue import ShmQueue, Tagged
from .ring import RingFullError, ShmRing

__all__ = ["ShmQueue", "Tagged", "ShmRing", "RingFullError"]
