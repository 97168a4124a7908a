"""The shared-memory hand-off: ShmRing slots, ShmQueue round trips, p4p Value descriptors."""
import multiprocessing as mp
import os
import queue
import threading
from multiprocessing import shared_memory

import numpy as np
import pytest
from p4p import Type, Value
from p4p.nt import NTNDArray

from conftest import wait_for
from mp_processors import describe
from pvagpu import ntnda
from pvagpu.mp import RingFullError, ShmQueue, ShmRing


@pytest.fixture
def make_queue():
    queues = []

    def make(**kwargs):
        q = ShmQueue(**kwargs)
        queues.append(q)
        return q

    yield make
    for q in queues:
        q.close()


ARRAYS = {
    "uint16 2-D": np.arange(35, dtype=np.uint16).reshape(5, 7),
    "float32 3-D": np.random.default_rng(1).random((4, 3, 2), np.float32),
    "bool": np.array([[True, False, True]]),
    "big-endian int32": np.arange(6, dtype=">i4"),
    "Fortran order": np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4)),
    "strided view": np.arange(100, dtype=np.uint8).reshape(10, 10)[::3, 1::2],
    "0-d": np.array(3.5),
    "empty": np.zeros((0, 4), np.uint32),
    "complex": np.array([1 + 2j, 3 - 4j]),
}


@pytest.mark.parametrize("name", ARRAYS)
def test_arrays_round_trip_exactly(make_queue, name):
    q = make_queue(slots=2)
    original = ARRAYS[name]
    q.put(original)
    got = q.get(timeout=5)
    assert type(got) is np.ndarray
    assert (got.dtype.str, got.shape) == (original.dtype.str, original.shape)
    assert np.array_equal(got, original)
    assert got.flags.writeable
    assert q.ring_stats()["nRingPuts"] == 1


def test_other_objects_travel_pickled_and_use_no_slot(make_queue):
    q = make_queue(slots=1)
    objects = [42, {"a": [1, 2]}, np.array([object(), 1], dtype=object)[1:],
               np.ma.masked_array([1, 2], mask=[0, 1])]
    for obj in objects:
        q.put(obj)
    got = [q.get(timeout=5) for _ in objects]
    assert got[:2] == objects[:2] and got[2][0] == 1
    assert isinstance(got[3], np.ma.MaskedArray) and got[3].mask.tolist() == [False, True]
    assert q.ring_stats()["nRingPuts"] == 0


def ntnda_values():
    rng = np.random.default_rng(7)
    mono = rng.integers(0, 4096, (6, 8), dtype=np.uint16)
    attributes = [
        {"name": "Int8", "value": ("b", -3)}, {"name": "UInt64", "value": ("L", 2**63 + 5)},
        {"name": "Float", "value": ("f", 0.25)}, {"name": "Double", "value": ("d", float("nan"))},
        {"name": "Text", "value": ("s", "détecteur")}, {"name": "Bool", "value": ("?", True)},
        {"name": "Ints", "value": ("ai", np.arange(4, dtype=np.int32))},
        {"name": "Strings", "value": ("as", ["a", "b"])},
        {"name": "Empty", "descriptor": "no value", "tags": ["t1"], "source": "src",
         "sourceType": 2, "timeStamp": {"secondsPastEpoch": 9, "nanoseconds": 10}},
    ]
    stamp = ntnda.TimeStamp(1_700_000_000, 123_456_789, 4)
    yield "mono uint16 with attributes", ntnda.value_from_image(
        mono, 11, attributes=attributes, time_stamp=stamp,
        data_time_stamp=ntnda.TimeStamp(1, 2, 3), descriptor="frame")
    yield "RGB2 float64", ntnda.value_from_image(rng.random((4, 5, 3)), 12,
                                                 color_mode=ntnda.ColorMode.RGB2)
    yield "int8", ntnda.value_from_image(rng.integers(-9, 9, (3, 3), dtype=np.int8), 13)
    yield "lz4 compressed", ntnda.value_from_image(mono, 14, codec="lz4")
    yield "bslz4 compressed", ntnda.value_from_image(mono, 15, codec="bslz4")
    yield "p4p's own NTNDArray", NTNDArray().wrap(np.arange(6, dtype=np.int16).reshape(2, 3))


@pytest.mark.parametrize("name,value", list(ntnda_values()), ids=lambda x: x if
                         isinstance(x, str) else "")
def test_ntndarray_values_round_trip_exactly(make_queue, name, value):
    q = make_queue(slots=2)
    q.put(value)
    got = q.get(timeout=5)
    assert isinstance(got, Value)
    assert describe(got) == describe(value)   # Type, every field with its type
    assert got.type().getID() == value.type().getID()
    assert ntnda.payload(got)[1] == ntnda.payload(value)[1]    # same union member
    frame, original = ntnda.frame_from_value(got), ntnda.frame_from_value(value)
    assert np.array_equal(frame.image, original.image)
    assert (frame.unique_id, frame.codec, frame.time_stamp, frame.data_time_stamp) == \
        (original.unique_id, original.codec, original.time_stamp, original.data_time_stamp)
    assert q.ring_stats()["ringSlotsInUse"] == 0   # p4p copied the arrays: slot released


def test_generic_values_with_ambiguous_unions_and_struct_variants(make_queue):
    inner = Type([("q", "I"), ("w", "as")], id="inner_t")
    spec = Type([
        ("u", ("U", None, [("a", "i"), ("b", "i"), ("s", ("S", "inner_t", [("q", "I"),
                                                                        ("w", "as")]))])),
        ("u2", ("U", None, [("a", "i"), ("b", "i")])),
        ("empty", ("U", None, [("a", "i")])),
        ("v", "v"), ("vs", "v"), ("vnone", "v"),
        ("items", ("aS", "item_t", [("x", "h"), ("y", "v")])),
        ("names", "as"), ("flags", "a?"), ("big", "L"),
    ], id="custom:1.0")
    value = Value(spec, {
        "u": ("b", 5),   # two int32 members: only tostr() tells which one
        "u2": ("a", -1),
        "v": ("H", 65535), "vs": Value(inner, {"q": 3, "w": ["x"]}),
        "items": [{"x": 1, "y": ("l", -2**40)}, {"x": 2, "y": ("af", np.ones(3, np.float32))}],
        "names": ["p", "q"], "flags": np.array([True, False]), "big": 2**64 - 1,
    })
    q = make_queue()
    q.put(value)
    got = q.get(timeout=5)
    assert describe(got) == describe(value)
    assert q.ring_stats()["ringSlotsInUse"] == 0


def test_no_slot_is_reused_while_a_reader_holds_it(make_queue):
    q = make_queue(slots=2)
    q.put(np.full(1000, 1, np.uint16))
    q.put(np.full(1000, 2, np.uint16))
    first = q.get(timeout=5)[10:]        # a view of the slot keeps it held
    second = q.get(timeout=5)
    assert q.ring_stats()["ringSlotsInUse"] == 2
    with pytest.raises(RingFullError):
        q.put_nowait(np.full(1000, 3, np.uint16))
    with pytest.raises(queue.Full):      # RingFullError is a queue.Full
        q.put(np.full(1000, 3, np.uint16), timeout=0.05)
    stats = q.ring_stats()
    assert (stats["nRingFull"], stats["nRingWaits"], stats["nRingPuts"]) == (2, 1, 2)
    assert (first == 1).all() and (second == 2).all()   # nothing overwritten
    del second                           # its slot is free again
    q.put(np.full(1000, 4, np.uint16))
    assert (first == 1).all()
    assert (q.get(timeout=5) == 4).all()
    assert q.ring_stats()["ringHighWater"] == 2


def test_a_blocked_put_proceeds_when_a_slot_is_released(make_queue):
    q = make_queue(slots=1)
    q.put(np.zeros(10))
    held = [q.get(timeout=5)]
    done = threading.Event()

    def producer():
        q.put(np.ones(10), timeout=10)
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    wait_for(lambda: q.ring_stats()["nRingWaits"] == 1, message="the put to wait")
    assert not done.is_set()
    held.clear()                          # release the only slot
    thread.join(10)
    assert done.is_set() and (q.get(timeout=5) == 1).all()
    assert q.ring_stats()["nRingFull"] == 0


def test_slots_grow_for_larger_frames_and_memory_stays_bounded(make_queue):
    q = make_queue(slots=2)
    for n in (10, 200_000, 50, 300_000):
        q.put(np.full(n, n % 251, np.uint8))
        assert (q.get(timeout=5) == n % 251).all()
    stats = q.ring_stats()
    assert stats["ringSlotBytes"] >= 300_000
    assert len([s for s in q.ring._segments if s is not None]) <= 2


def _hold_and_die(q, n):
    held = [q.get(timeout=5) for _ in range(n)]
    os._exit(0 if len(held) == n else 1)


def test_slots_of_a_dead_reader_are_reclaimed(make_queue):
    q = make_queue(slots=3, start_method="fork")
    for i in range(2):
        q.put(np.full(100, i))
    child = mp.get_context("fork").Process(target=_hold_and_die, args=(q, 2))
    child.start()
    child.join(10)
    assert child.exitcode == 0
    assert q.ring_stats()["ringSlotsInUse"] == 2
    assert q.ring.reclaim(child.pid) == 2
    assert q.ring_stats()["ringSlotsInUse"] == 0
    for i in range(3):
        q.put_nowait(np.full(100, i))     # all three slots usable again


def test_close_unlinks_every_segment():
    q = ShmQueue(slots=2)
    q.put(np.zeros(10))
    names = [q.ring._control.name] + [s.name for s in q.ring._segments if s is not None]
    q.get(timeout=5)
    q.close()
    for name in names:
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name=name)


def test_ring_needs_a_slot():
    with pytest.raises(ValueError):
        ShmRing(0)
