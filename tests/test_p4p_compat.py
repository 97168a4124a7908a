"""pvagpu.pva._p4p_compat: the four uses of p4p internals.

Each test fails with a message naming what a p4p upgrade changed, so that
the fix goes to the one module that depends on it.
"""
import threading

import pytest
from p4p import Type, Value
from p4p.client import raw
from p4p.server import Server
from p4p.server.thread import SharedPV

from conftest import wait_for
from pvagpu.pva import _p4p_compat

COUNTER = Type([("value", "i")])


@pytest.fixture
def counter_pv(pva_env):
    """A served record ``compat:counter`` (posts go to its ``value``)."""
    pv = SharedPV(initial=Value(COUNTER, {"value": 0}))
    server = Server(providers=[{"compat:counter": pv}])
    yield pv
    server.stop()


def monitor(callback):
    """A raw subscription to compat:counter, as the receiver opens one."""
    context = raw.Context("pva", nt=False, useenv=True)
    return context, context.monitor("compat:counter", callback, "field()")


@pytest.mark.pva
def test_fast_pop_is_the_cpp_pop_and_pops_values(counter_pv):
    events = []
    context, sub = monitor(lambda: events.append(1))
    try:
        pop = _p4p_compat.fast_pop(sub)
        function = getattr(pop, "__func__", pop)
        bases = raw.Subscription.__mro__[1:]
        assert any(function is vars(base).get("pop") for base in bases), (
            "p4p's raw.Subscription has no C++ base pop() any more: _p4p_compat.fast_pop "
            "falls back to the slower Python wrapper; find the new C++ pop or drop fast_pop")
        wait_for(lambda: events, message="first update")
        update = pop()
        assert type(update) is Value and update["value"] == 0, (
            "the C++ pop of p4p's raw.Subscription no longer returns p4p Values: "
            "_p4p_compat.fast_pop (and Receiver._drain) need to follow p4p")
    finally:
        sub.close()
        context.close()


@pytest.mark.pva
@pytest.mark.parametrize("keep", [False, True])
def test_keep_thread_state_keeps_the_callback_threads_python_state(counter_pv, monkeypatch,
                                                                   keep):
    """A threading.local lives as long as the Python thread state of its
    thread. p4p creates and destroys that state around every callback of
    its (non-Python) network thread; keep_thread_state makes it last."""
    monkeypatch.setattr(_p4p_compat, "KEEP_THREAD_STATE", keep)
    local = threading.local()
    seen = []               # per callback: (thread, what the local held)

    def callback():
        _p4p_compat.keep_thread_state()
        seen.append((threading.get_ident(), getattr(local, "mark", None)))
        local.mark = len(seen)
        while pop() is not None:
            pass

    context, sub = monitor(callback)
    pop = sub.pop
    try:
        wait_for(lambda: seen, message="first update")
        for n in (1, 2, 3):
            counter_pv.post(Value(COUNTER, {"value": n}))
            wait_for(lambda n=n: len(seen) > n, message=f"update {n}")
    finally:
        sub.close()
        context.close()
    threads = {thread for thread, _ in seen}
    assert len(threads) == 1, f"p4p called back from several threads: {threads}"
    marks = [mark for _, mark in seen[1:]]
    if keep:
        assert marks == list(range(1, len(seen))), (
            "the Python thread state of p4p's callback thread did not survive between "
            "callbacks although _p4p_compat.keep_thread_state held it: p4p enters Python "
            "another way now; revise keep_thread_state")
    else:
        assert marks == [None] * (len(seen) - 1), (
            "p4p now keeps its callback thread's Python thread state by itself: "
            "_p4p_compat.keep_thread_state is no longer needed")


def test_is_type_mismatch_tells_p4ps_refusal_of_another_type():
    pv = SharedPV(initial=Value(COUNTER, {"value": 1}))
    equal_but_other = Type([("value", "i")])
    with pytest.raises(RuntimeError) as refused:
        pv.post(Value(equal_but_other, {"value": 2}))
    assert _p4p_compat.is_type_mismatch(refused.value), (
        f"p4p's refusal to post a Value of another type reads {str(refused.value)!r} now, "
        f"without {_p4p_compat.TYPE_MISMATCH_TEXT!r}: update _p4p_compat.TYPE_MISMATCH_TEXT")
    pv.post(Value(COUNTER, {"value": 3}))                  # the same type posts
    assert pv.current()["value"] == 3
    assert not _p4p_compat.is_type_mismatch(RuntimeError("server stopped"))
    assert not _p4p_compat.is_type_mismatch(ValueError("exact type"))


def test_as_type_copies_into_an_equal_type_sharing_arrays_and_keeping_variant_types():
    """Value(type, value): arrays shared, variant scalar types, the union
    member and the changed marks kept, and the result posts to a record of
    that type."""
    import numpy as np

    from pvagpu import ntnda
    from pvagpu.pva.type_text import variant_types_and_union_members_from_tostr

    spec = ntnda.NTNDARRAY_TYPE.aspy()[2]
    other = Type(list(spec), id=ntnda.NTNDARRAY_TYPE.getID())
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    value = ntnda.build_value(("ushortValue", image.reshape(-1)), 7, shape=image.shape,
                              dtype=image.dtype, value_type=other,
                              attributes=[{"name": "F", "value": ("f", 1.5)}])
    value.mark("descriptor", False)
    converted = _p4p_compat.as_type(value, ntnda.NTNDARRAY_TYPE)
    where = "_p4p_compat.as_type (Value(type, value)) "
    assert converted.type().aspy() == ntnda.NTNDARRAY_TYPE.aspy()
    assert np.shares_memory(converted["value"], value["value"]), (
        where + "copies the arrays now: find another p4p path or accept the copy")
    variants, unions = variant_types_and_union_members_from_tostr(converted["attribute"][1])
    assert variants == {"value": "f"}, where + f"changes variant types now: {variants}"
    assert converted["codec.parameters"] == value["codec.parameters"]
    assert ntnda.payload(converted)[1].union_key == "ushortValue", where + "loses the union member"
    assert converted.changedSet() == value.changedSet(), where + "changes the changed marks"
    pv = SharedPV(initial=ntnda.value_from_image(np.zeros((1, 1), np.uint8), 1))
    with pytest.raises(RuntimeError):
        pv.post(value)
    pv.post(converted)
    assert pv.current()["uniqueId"] == 7
