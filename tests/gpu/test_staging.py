"""The device interface on the host (HostDevice) and the staging ring's
bookkeeping, through a device whose copies complete when the test says."""
import numpy as np
import pytest

from pvagpu.errors import ConfigurationError
from pvagpu.gpu import HostDevice, SlotRing
from pvagpu.gpu.backend import Backend, numpy_backend
from pvagpu.gpu.device import CupyDevice, HostEvent, HostStream, device_for
from pvagpu.gpu.staging import slot_size_for

from .fakes import FakeDevice


# ---------------------------------------------------------------------------
# HostDevice: the device interface of the NumPy backend
# ---------------------------------------------------------------------------

def test_host_device_memory_and_copies_are_numpy_and_copy_nothing():
    dev = HostDevice()
    assert dev.xp is np and not dev.is_gpu
    assert dev.alloc_pinned(16).dtype == np.uint8 and dev.alloc_device(16).shape == (16,)
    payload = np.arange(10, dtype=np.uint8)
    host, device = dev.stage(dev.alloc_pinned(16), dev.alloc_device(16), payload, None)
    assert host is payload and device is payload              # the host is the device
    image = np.ones((2, 3))
    assert dev.upload(image, dev.new_stream()) is image
    back, event = dev.to_host_async(image, dev.current_stream())
    assert back is image and event is None                    # nothing to wait for


def test_host_device_streams_and_events_complete_at_once():
    dev = HostDevice()
    stream = dev.new_stream()
    assert isinstance(stream, HostStream) and isinstance(dev.current_stream(), HostStream)
    with stream as entered, dev.activate():
        assert entered is stream
        start = dev.record_event(stream, timing=True)
        marker = dev.record_event(stream)               # without timing
        end = dev.record_event(stream, timing=True)
    assert isinstance(start, HostEvent) and dev.event_done(start) and dev.event_done(marker)
    dev.wait_event(stream, start)
    dev.synchronize_event(marker)
    dev.synchronize_stream(stream)
    assert 0 <= dev.elapsed_ms(start, end) < 1000


def test_host_device_unshuffles_with_the_cpu_reference():
    import bitshuffle
    data = np.arange(3000, dtype=np.uint16)
    shuffled = bitshuffle.bitshuffle(data).view(np.uint8)
    out = np.empty(3000, np.uint16)
    HostDevice().bitunshuffle(shuffled, out, 3000, 2, 0, None)
    assert np.array_equal(out, data)


def test_each_backend_gets_its_device():
    assert isinstance(device_for(numpy_backend()), HostDevice)
    cupy_like = object()
    dev = device_for(Backend("cupy", cupy_like, device_id=3))
    assert isinstance(dev, CupyDevice) and dev.xp is cupy_like and dev.device_id == 3


# ---------------------------------------------------------------------------
# The ring
# ---------------------------------------------------------------------------

def test_ring_recycles_slots_only_after_their_copy_completed():
    dev = FakeDevice(["s0", "s1"])
    ring = SlotRing(dev, n_slots=3, n_streams=2)
    frames = [np.full(100, i, np.uint8) for i in range(6)]
    staged = [ring.stage(f) for f in frames[:3]]
    assert all(s is not None for s in staged)
    assert [s.stream for s in staged] == ["s0", "s1", "s0"]      # round-robin over streams
    assert ring.occupancy == 3
    assert ring.stage(frames[3]) is None                          # full: an overrun, not a wait
    assert ring.n_overruns == 1 and dev.waited == 0
    dev.events[0]["done"] = True                                  # slot 0's copy completed
    again = ring.stage(frames[3])
    assert again is not None and again.slot.index == 0
    assert np.array_equal(again.device, frames[3]) and np.array_equal(again.host, frames[3])
    assert ring.stage(frames[4]) is None                          # slot 1 still busy
    assert ring.n_overruns == 2
    dev.complete()
    assert ring.stage(frames[4]).slot.index == 1
    stats = ring.stats()
    assert stats["nStaged"] == 5 and stats["nRingOverruns"] == 2
    assert stats["bytesToDevice"] == 500 and stats["ringSlots"] == 3
    ring.count_upload(20)
    assert ring.stats()["bytesToDevice"] == 520
    ring.reset_stats()
    assert ring.stats()["nRingOverruns"] == 0 and ring.stats()["bytesToDevice"] == 0


def test_ring_is_sized_from_the_first_frame_and_grows_when_the_image_grows():
    dev = FakeDevice()
    ring = SlotRing(dev, n_slots=2)
    small = np.arange(1000, dtype=np.uint8)
    ring.stage(small, uncompressed_bytes=4000)
    assert ring.slot_bytes == slot_size_for(1000, 4000) >= 4000 + 4000 // 255
    assert dev.allocations == 2
    # a compressed frame of the same image size always fits
    ring.stage(np.zeros(4000 + 4000 // 255, np.uint8), uncompressed_bytes=4000)
    assert ring.n_resizes == 0
    big = np.ones(3 * ring.slot_bytes, np.uint8)
    dev.complete(1)
    staged = ring.stage(big, uncompressed_bytes=big.size)
    assert staged is not None and ring.n_resizes == 1 and ring.slot_bytes >= big.size
    assert dev.waited >= 1                    # waited for the streams of the busy slots first
    assert all(event["done"] for event in dev.events[:-1])
    assert np.array_equal(staged.device, big)


def test_ring_with_a_fixed_slot_size_and_bad_configuration():
    dev = FakeDevice()
    ring = SlotRing(dev, n_slots=4, slot_bytes=8192, n_streams=8)
    assert ring.slot_bytes == 8192 and len(ring.streams) == 4 and dev.allocations == 4
    for bad in ({"n_slots": 0}, {"n_streams": 0}, {"slot_bytes": -1}):
        with pytest.raises(ConfigurationError):
            SlotRing(dev, **bad)


def test_ring_synchronize_waits_for_every_staged_slot():
    dev = FakeDevice()
    ring = SlotRing(dev, n_slots=3)
    ring.stage(np.zeros(10, np.uint8))
    ring.stage(np.zeros(10, np.uint8))
    assert ring.occupancy == 2
    ring.synchronize()
    assert ring.occupancy == 0 and dev.waited == 2


def test_ring_on_the_host_device_never_overruns():
    ring = SlotRing(HostDevice(), n_slots=1)
    for i in range(5):
        assert ring.stage(np.full(64, i, np.uint8)) is not None
    assert ring.n_overruns == 0 and ring.occupancy == 0


def test_ring_sized_from_the_first_frame_takes_an_empty_first_frame():
    ring = SlotRing(HostDevice(), n_slots=2)
    staged = ring.stage(np.zeros(0, np.uint8), uncompressed_bytes=0)
    assert staged is not None and staged.nbytes == 0 and ring.slot_bytes > 0
    assert np.array_equal(ring.stage(np.arange(10, dtype=np.uint8), 10).device, np.arange(10))
    assert ring.n_resizes == 0
