"""The frame pipeline's device-side order, on a device that logs what is
queued on which stream: user work ordered across the slot streams, batches
between frames, timings, dropped frames, and results published in order
once their copies completed."""
import numpy as np
import pytest

from pvagpu import codecs, ntnda
from pvagpu.errors import BatchFramesError, CorruptPayloadError, RingOverrunError
from pvagpu.gpu import FramePipeline, GpuAdImageProcessor, processor_stats
from pvagpu.gpu.pipeline import unique_id
from pvagpu.gpu.results import ResultValues

from .fakes import IMAGE16, Accumulate, LoggingDevice, fake_gpu_processor


def _stream_of(log, what):
    return next(s for s, op, _ in log if op == what)


def test_user_work_of_successive_frames_is_ordered_across_the_slot_streams():
    """processFrame of frame 2 runs on another stream than frame 1's: it must
    wait (on the device) for frame 1's processFrame and result copy, while
    frame 2's decode need not."""
    p, device = fake_gpu_processor()
    for uid in (1, 2, 3):
        p.process(ntnda.value_from_image(IMAGE16, uid))
    p.flush(wait=True)
    log = device.log
    ran_on = {uid: _stream_of(log, f"user {uid}") for uid in (1, 2, 3)}
    assert ran_on[1] != ran_on[2] and ran_on[2] != ran_on[3]       # round-robin streams
    waits = [(i, s, ev) for i, (s, op, ev) in enumerate(log) if op == "wait"]
    assert [s for _, s, _ in waits] == [ran_on[2], ran_on[3]]        # frames 2 and 3 wait
    for (i, stream, ev), (before, after) in zip(waits, [(1, 2), (2, 3)]):
        prev = ev.stream.name
        assert prev == ran_on[before] != stream
        # the event waited for comes after the previous frame's work and copy ...
        done_at = log.index((prev, "record", ev))
        assert device.at(prev, f"user {before}") < done_at
        assert max(j for j, e in enumerate(log[:done_at]) if e[:2] == (prev, "copy to host")) \
            > device.at(prev, f"user {before}")
        # ... and the wait is queued after this frame's decode, before its work
        assert device.at(stream, f"decode {after}") < i < device.at(stream, f"user {after}")
    assert [v["uniqueId"] for v in p.dataPublisher.values] == [1, 2, 3]
    stats = processor_stats(p)
    assert stats["kernelTimeMs"] > 0 and stats["decodeTimeMs"] > 0
    assert stats["nDeviceDecodes"] == 3 and stats["nGpuFrames"] == 3
    assert stats["gpuDevice"] == "cupy on GPU 0 (fake)" and device.activations > 0


def test_a_batch_waits_for_the_frames_before_it_and_the_next_frame_for_the_batch():
    p, device = fake_gpu_processor()
    p.process(ntnda.value_from_image(IMAGE16, 1))
    frame1 = _stream_of(device.log, "user 1")
    p.processBatch([ntnda.value_from_image(IMAGE16, 2), ntnda.value_from_image(IMAGE16, 3)])
    p.process(ntnda.value_from_image(IMAGE16, 4))
    log = device.log
    batch = device.at("null", "user [2, 3]")
    # the batch (on the thread's current stream) waits for both decodes and
    # for frame 1's work
    waited = [ev for s, op, ev in log[:batch] if (s, op) == ("null", "wait")]
    assert {ev.stream.name for ev in waited} >= {frame1, _stream_of(log, "decode 2"),
                                                 _stream_of(log, "decode 3")}
    frame4 = _stream_of(log, "user 4")
    four = max(i for i, e in enumerate(log) if e[:2] == (frame4, "wait")
               and i < device.at(frame4, "user 4"))
    assert log[four][2].stream.name == "null"
    assert batch < log.index(("null", "record", log[four][2])) < four < device.at(frame4, "user 4")
    # the slot streams wait for the stack before they decode into new buffers
    stacked = [ev for s, op, ev in log[:batch] if op == "wait" and s != "null"]
    assert {ev.stream.name for ev in stacked} == {"null"}
    assert {s for s, op, _ in log[:batch] if op == "wait" and s != "null"} == {"s0", "s1"}


def test_a_processFrame_that_raises_still_marks_the_end_of_its_work():
    class Raises(GpuAdImageProcessor):
        def processFrame(self, frame):
            return 1 / 0
    p, device = fake_gpu_processor(Raises)
    with pytest.raises(ZeroDivisionError):
        p.process(ntnda.value_from_image(IMAGE16, 1))
    done = p.pipeline._user_done
    assert done is not None and done.stream.name == "s0"
    assert processor_stats(p)["nGpuFrames"] == 0
    with pytest.raises(ZeroDivisionError):
        p.process(ntnda.value_from_image(IMAGE16, 2))
    # the next frame waits for the failed one's end all the same
    assert ("s1", "wait", done) in device.log and p.pipeline._user_done.stream.name == "s1"


def test_results_are_published_in_order_once_their_copies_completed():
    p, device = fake_gpu_processor(events_done=False)
    p.process(ntnda.value_from_image(IMAGE16, 1))
    p.process(ntnda.value_from_image(IMAGE16, 2))
    assert p.dataPublisher.values == [] and processor_stats(p)["nPending"] == 2
    # staging slots whose copies did not complete are not reused: 2 more
    # frames fill the ring of 4, the fifth is dropped and counted
    p.process(ntnda.value_from_image(IMAGE16, 3))
    p.process(ntnda.value_from_image(IMAGE16, 4))
    with pytest.raises(RingOverrunError, match="frame 5 dropped: all 4 staging slots"):
        p.process(ntnda.value_from_image(IMAGE16, 5))
    stats = processor_stats(p)
    assert stats["nRingOverruns"] == 1 and stats["ringOccupancy"] == 4
    assert stats["kernelTimeMs"] == 0.0             # no frame's events completed yet
    p.flush(wait=True)                              # waits for each copy, in order
    assert [v["uniqueId"] for v in p.dataPublisher.values] == [1, 2, 3, 4]
    assert np.array_equal(ntnda.frame_from_value(p.dataPublisher.values[0]).image, IMAGE16)
    device.complete()
    p.flush()
    stats = processor_stats(p)
    assert stats["nPending"] == 0 and stats["kernelTimeMs"] > 0 and stats["ringOccupancy"] == 0
    p.resetGpuStats()
    stats = processor_stats(p)
    assert stats["nRingOverruns"] == stats["nGpuFrames"] == stats["nDeviceDecodes"] == 0


def test_a_dict_result_waits_for_the_images_before_it():
    class Mixed(GpuAdImageProcessor):
        def processFrame(self, frame):
            if frame.unique_id % 2:
                return frame.image.astype(np.float32)
            return {"n": frame.unique_id}

    p, device = fake_gpu_processor(Mixed, events_done=False)
    p.process(ntnda.value_from_image(IMAGE16, 1))
    p.process(ntnda.value_from_image(IMAGE16, 2))
    assert p.dataPublisher.values == []
    device.complete()
    p.process(ntnda.value_from_image(IMAGE16, 3))     # its own copy is still running
    assert [v["uniqueId"] for v in p.dataPublisher.values] == [1, 2]
    assert p.dataPublisher.values[1]["n"] == 2
    p.stop()
    assert [v["uniqueId"] for v in p.dataPublisher.values] == [1, 2, 3]


def test_host_decoded_codecs_are_uploaded_on_the_slot_streams():
    p, device = fake_gpu_processor()
    for uid, codec in enumerate(["zlib", "blosc", "bslz4", "zlib"], 1):
        p.process(ntnda.value_from_image(IMAGE16 + uid, uid, codec=codec))
    p.flush(wait=True)
    stats = processor_stats(p)
    assert stats["nHostDecodes"] == 3 and stats["nDeviceDecodes"] == 1
    assert stats["bytesToDevice"] == 3 * IMAGE16.nbytes + len(
        codecs.encode("bslz4", IMAGE16 + 3))
    # host decodes take the slot streams in turn
    assert [_stream_of(device.log, f"user {uid}") for uid in (1, 2, 4)] == ["s0", "s1", "s0"]
    for uid, value in enumerate(p.dataPublisher.values, 1):
        assert np.array_equal(ntnda.frame_from_value(value).image, IMAGE16 + uid)


def test_a_batch_leaves_out_the_frames_that_fail_and_names_them():
    p, device = fake_gpu_processor(Accumulate, {"gpuSlots": 2}, events_done=False)
    bad = ntnda.value_from_image(IMAGE16, 2, codec="bslz4")
    payload = np.array(bad["value"])
    payload[4:40] = 0xFF
    bad["value"] = ("ubyteValue", payload)
    empty = ntnda.value_from_image(IMAGE16, 9)
    empty["dimension"] = []
    values = [ntnda.value_from_image(IMAGE16, 1), bad, empty, ntnda.value_from_image(IMAGE16, 3),
              ntnda.value_from_image(IMAGE16, 4)]
    with pytest.raises(BatchFramesError) as err:
        p.processBatch(values)
    # 2 slots: frames 1 and (corrupt) 2 take them, 3 finds the ring full, 4 too
    assert [oid for oid, _ in err.value.failures] == [2, 3, 4]
    assert isinstance(err.value.failures[0][1], CorruptPayloadError)
    assert isinstance(err.value.failures[1][1], RingOverrunError)
    assert err.value.n_processed == 2                  # frame 1, and the frame without dims
    assert any(op == "user [1]" for _, op, _ in device.log)


def test_the_pipeline_on_the_host_device_publishes_at_once():
    published = []
    pipeline = FramePipeline(LoggingDevice(), LoggingDevice().decoder(),
                             ResultValues(dict, "test"), published.append, 2, 0, 2)
    pipeline.warm_up()
    result = pipeline.run_frame(ntnda.value_from_image(IMAGE16, 5), lambda f: f.image + 1)
    assert np.array_equal(result, IMAGE16 + 1) and len(published) == 1
    frame = pipeline.decode_frame(ntnda.value_from_image(IMAGE16, 6, codec="lz4"))
    assert np.array_equal(frame.image, IMAGE16) and frame.unique_id == 6
    assert pipeline.run_batches([], lambda b: 1 / 0) == []


def test_decode_frame_is_none_for_a_frame_the_ring_has_no_room_for():
    p, device = fake_gpu_processor(Accumulate, {"gpuSlots": 1}, events_done=False)
    assert p.decodeFrame(ntnda.value_from_image(IMAGE16, 1)).unique_id == 1
    assert p.decodeFrame(ntnda.value_from_image(IMAGE16, 2)) is None
    assert processor_stats(p)["nRingOverruns"] == 1


def test_the_unique_id_of_a_value_that_has_none_is_none():
    assert unique_id(ntnda.value_from_image(IMAGE16, 12)) == 12
    assert unique_id({}) is None and unique_id({"uniqueId": "x"}) is None
