"""The four places where pvagpu relies on p4p internals, and nowhere else.

Each is a measured speed-up or the only way p4p offers to tell a case
apart, and each has a test in tests/test_p4p_compat.py that fails with a
message naming the function when a p4p upgrade changes what it relies on:

* :func:`fast_pop`: the C++ ``pop`` of a raw client subscription, skipping
  the Python wrapper's per-update assertion and type unwrapping;
* :func:`keep_thread_state`: keep the Python thread state of p4p's
  (non-Python) network thread alive between callbacks;
* :func:`is_type_mismatch`: p4p refusing to post a Value whose type is not
  the very type object the record was opened with (told only by the text
  of its RuntimeError);
* :func:`as_type`: ``Value(type, value)`` with a Value as the initial
  content copies it field by field inside p4p, sharing arrays and keeping
  variant scalar types, union members and changed marks (p4p documents only
  a mapping there; a mapping such as ``value.todict()`` loses those facts
  and copies the pixels).
"""
from __future__ import annotations

import ctypes
import os
import threading

from p4p import Value as _Value
from p4p.client import raw

#: Set PVAGPU_KEEP_THREAD_STATE=0 to let each callback of the PVA thread
#: create and destroy its Python thread state, as p4p does by itself.
KEEP_THREAD_STATE = os.environ.get("PVAGPU_KEEP_THREAD_STATE", "1") != "0"

#: what p4p's RuntimeError says when post() gets a Value of another type
TYPE_MISMATCH_TEXT = "exact type"

_thread_state = threading.local()


def fast_pop(subscription: raw.Subscription):
    """The C++ ``pop`` of ``subscription`` (a :class:`p4p.client.raw.Subscription`).

    ``raw.Subscription.pop`` wraps its C++ base's ``pop`` with an assertion
    and an ``nt`` unwrapping (a no-op with ``nt=False``) that cost more than
    the pop itself. Without that base method (another p4p), the wrapper."""
    return getattr(super(raw.Subscription, subscription), "pop", subscription.pop)


def keep_thread_state() -> None:
    """Keep the calling (non-Python) thread's Python thread state alive.

    p4p enters Python from its network thread with PyGILState_Ensure and
    leaves with PyGILState_Release, which creates and destroys a thread
    state (and maps and unmaps its 16 KiB frame stack) on every callback.
    One extra Ensure, never released, makes the later pairs plain counter
    updates. Call it with the GIL held, from the callback itself; it does
    the Ensure once per thread state (a thread-local flag, which lives as
    long as the thread state does), and nothing with
    ``PVAGPU_KEEP_THREAD_STATE=0``."""
    if KEEP_THREAD_STATE and not getattr(_thread_state, "kept", False):
        ctypes.pythonapi.PyGILState_Ensure()
        _thread_state.kept = True


def as_type(value, value_type):
    """``value`` (a p4p Value) as a Value of ``value_type``, a Type of the
    same structure: what p4p's server takes when ``value``'s own Type object
    is not the record's. No array is copied."""
    return _Value(value_type, value)


def is_type_mismatch(exc: BaseException) -> bool:
    """Whether ``exc``, raised by ``SharedPV.post``, says that the Value's
    type is not the exact type the record was opened with."""
    return isinstance(exc, RuntimeError) and TYPE_MISMATCH_TEXT in str(exc)
