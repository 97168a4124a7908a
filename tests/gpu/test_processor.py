"""GpuAdImageProcessor on the NumPy backend: its hooks (process,
processBatch, processFrame, processFrameBatch), the Values it publishes
(pvagpu.gpu.results), and its statistics merged with the user's."""
import numpy as np
import pytest
from p4p import Value

from pvagpu import ntnda
from pvagpu.errors import (BatchFramesError, ConfigurationError, CorruptPayloadError,
                           FrameError)
from pvagpu.gpu import (FrameBatch, GPU_STATS_TYPES, GpuAdImageProcessor, processor_stats,
                        processor_stats_types, reset_processor_stats)
from pvagpu.gpu.results import ResultValues, code, scalar
from pvagpu.hpc import UserDataProcessor

from .fakes import CODECS, IMAGE16, RNG, Recorder, fake_gpu_processor, started


class Echo(GpuAdImageProcessor):
    """Returns each image doubled; keeps the frames it saw."""

    def __init__(self, configDict=None):
        GpuAdImageProcessor.__init__(self, configDict)
        self.seen = []

    def processFrame(self, frame):
        self.seen.append(frame)
        return frame.image * 2


class Scalars(GpuAdImageProcessor):
    def processFrame(self, frame):
        return {"total": float(self.xp.sum(frame.image)), "big": bool(frame.image.max() > 5)}

    def getOutputFieldTypes(self):
        return {"total": "d", "big": "?"}

    def getStats(self):
        return {"mine": 1}

    def getStatsPvaTypes(self):
        return {"mine": "I"}


class Batched(GpuAdImageProcessor):
    def __init__(self, configDict=None):
        GpuAdImageProcessor.__init__(self, configDict)
        self.batches = []

    def processFrameBatch(self, batch):
        self.batches.append(batch)
        return [{"sum": float(img.sum())} for img in batch.images]


def _corrupt(value):
    payload = np.array(value["value"])
    payload[4:40] = 0xFF
    value["value"] = ("ubyteValue", payload)
    return value


@pytest.mark.parametrize("codec", CODECS)
def test_processor_sees_the_decoded_image_with_every_codec(codec):
    p = started(Echo)
    value = ntnda.value_from_image(IMAGE16, 7, codec=codec)
    p.process(value)
    frame = p.seen[-1]
    assert np.array_equal(frame.image, IMAGE16) and frame.unique_id == 7
    assert frame.codec == codec
    out = p.dataPublisher.values[-1]
    back = ntnda.frame_from_value(out)
    assert np.array_equal(back.image, IMAGE16 * 2) and back.unique_id == 7
    stats = processor_stats(p)
    assert stats["gpuBackend"] == "numpy" and stats["nGpuFrames"] == 1
    # the NumPy backend runs the same pipeline: staged or host-decoded
    assert stats["nDeviceDecodes"] + stats["nHostDecodes"] == 1
    assert stats["nDeviceDecodes"] == (codec in ("", "lz4", "bslz4"))


def test_colour_frames_reach_processFrame_as_ny_nx_3():
    rgb = RNG.integers(0, 255, (6, 9, 3), dtype=np.uint8)
    p = started(Echo)
    for mode in (ntnda.ColorMode.RGB1, ntnda.ColorMode.RGB2, ntnda.ColorMode.RGB3):
        p.process(ntnda.value_from_image(rgb, int(mode), color_mode=mode))
        assert p.seen[-1].image.shape == (6, 9, 3)
        assert np.array_equal(p.seen[-1].image, rgb)
        back = ntnda.frame_from_value(p.dataPublisher.values[-1])
        assert back.color_mode == mode and np.array_equal(back.image, rgb * 2)


def test_dict_results_are_published_as_a_structure_and_stats_merge():
    p = started(Scalars)
    value = ntnda.value_from_image(IMAGE16, 3, codec="bslz4")
    out_type = p.getOutputPvObjectType(value)
    assert set(out_type.keys()) >= {"uniqueId", "timeStamp", "total", "big"}
    p.process(value)
    out = p.dataPublisher.values[-1]
    assert out["uniqueId"] == 3 and out["total"] == float(IMAGE16.sum()) and out["big"]
    stats = processor_stats(p)
    assert stats["mine"] == 1 and set(GPU_STATS_TYPES) <= set(stats)
    assert set(processor_stats_types(p)) == set(GPU_STATS_TYPES) | {"mine"}
    reset_processor_stats(p)
    assert processor_stats(p)["nGpuFrames"] == 0


def test_the_user_statistics_are_the_users_own():
    """No hidden merging: getStats is what the class says; the framework's
    GPU statistics are separate, and merged by the runtime's functions."""
    p = started(Scalars)
    assert p.getStats() == {"mine": 1} and p.getStatsPvaTypes() == {"mine": "I"}
    assert set(p.getGpuStats()) == set(GPU_STATS_TYPES) == set(p.getGpuStatsPvaTypes())
    plain = started(Echo)
    assert plain.getStats() == {} and plain.getStatsPvaTypes() == {}

    class Resets(Scalars):
        def getStats(self):
            return {"nGpuFrames": 42}          # a user's key wins

        def resetStats(self):
            self.reset = True
    r = started(Resets)
    r.process(ntnda.value_from_image(IMAGE16, 1))
    assert processor_stats(r)["nGpuFrames"] == 42
    assert r.getGpuStats()["nGpuFrames"] == 1
    reset_processor_stats(r)
    assert r.reset and r.getGpuStats()["nGpuFrames"] == 0


def test_statistics_of_a_plain_processor_are_its_own():
    class Plain(UserDataProcessor):
        def getStats(self):
            return {"n": 1}

        def getStatsPvaTypes(self):
            return {"n": "I"}

        def resetStats(self):
            self.reset = True
    p = Plain()
    assert processor_stats(p) == {"n": 1} and processor_stats_types(p) == {"n": "I"}
    reset_processor_stats(p)
    assert p.reset


def test_statistics_before_a_backend_is_chosen():
    p = Echo({"gpu": "none"})
    stats = processor_stats(p)
    assert stats["gpuBackend"] == "numpy" and stats["ringSlots"] == 0
    assert set(stats) == set(GPU_STATS_TYPES)
    p.resetGpuStats()                         # nothing to reset yet
    p.flush(wait=True)


def test_a_frame_before_start_chooses_the_numpy_backend():
    p = Echo({"gpu": "7"})
    p.dataPublisher = Recorder()
    p.process(ntnda.value_from_image(IMAGE16, 1))
    assert p.backend.name == "numpy" and "no backend selected" in p.backend.reason
    assert len(p.dataPublisher.values) == 1


def test_processFrameBatch_gets_stacked_frames_grouped_by_shape():
    p = started(Batched)
    small = np.ones((4, 5), np.uint16)
    values = [ntnda.value_from_image(IMAGE16, 1, codec="lz4"),
              ntnda.value_from_image(IMAGE16 + 1, 2),
              ntnda.value_from_image(small, 3, codec="bslz4")]
    p.processBatch(values)
    assert [len(b) for b in p.batches] == [2, 1]
    first = p.batches[0]
    assert isinstance(first, FrameBatch) and first.images.shape == (2, 24, 40)
    assert first.unique_ids == [1, 2] and np.array_equal(first.images[1], IMAGE16 + 1)
    assert first.frames[1].image is not None and np.shares_memory(first.frames[1].image,
                                                                  first.images)
    assert [v["sum"] for v in p.dataPublisher.values] == [
        float(IMAGE16.sum()), float((IMAGE16 + 1).sum()), 20.0]
    assert processor_stats(p)["nGpuFrames"] == 3


def test_a_corrupt_frame_costs_a_batch_only_itself():
    """processBatch: the frames around a corrupt one are processed and
    published; BatchFramesError names the corrupt one (and the count)."""
    p = started(Batched)
    values = [ntnda.value_from_image(IMAGE16 + i, i, codec="bslz4") for i in range(1, 6)]
    _corrupt(values[2])
    with pytest.raises(BatchFramesError) as err:
        p.processBatch(values)
    assert err.value.n_processed == 4 and [oid for oid, _ in err.value.failures] == [3]
    assert isinstance(err.value.failures[0][1], CorruptPayloadError)
    assert [b.unique_ids for b in p.batches] == [[1, 2, 4, 5]]
    assert [v["sum"] for v in p.dataPublisher.values] == [
        float((IMAGE16 + i).sum()) for i in (1, 2, 4, 5)]


def test_without_processFrameBatch_a_batch_runs_frame_by_frame():
    """A class without processFrameBatch gets no stacking: each frame goes
    through processFrame; a frame that fails (even in processFrame) costs
    only itself."""
    class Picky(Echo):
        def processFrame(self, frame):
            if frame.unique_id == 4:
                raise FrameError("not this one")
            return Echo.processFrame(self, frame)

    p = started(Picky)
    values = [ntnda.value_from_image(IMAGE16 + i, i, codec="bslz4") for i in range(1, 6)]
    _corrupt(values[1])
    with pytest.raises(BatchFramesError) as err:
        p.processBatch(values)
    assert [oid for oid, _ in err.value.failures] == [2, 4] and err.value.n_processed == 3
    assert [f.unique_id for f in p.seen] == [1, 3, 5]
    assert [v["uniqueId"] for v in p.dataPublisher.values] == [1, 3, 5]
    assert p.processBatch(values[:1]) is None


def test_the_default_processFrameBatch_processes_each_frame():
    p = started(Echo)
    frames = [ntnda.frame_from_value(ntnda.value_from_image(IMAGE16, i)) for i in (1, 2)]
    results = p.processFrameBatch(FrameBatch(np.stack([f.image for f in frames]), frames))
    assert len(results) == 2 and np.array_equal(results[1], IMAGE16 * 2)
    assert GpuAdImageProcessor({}).processFrame(frames[0]) is None


def test_corrupt_frames_raise_and_do_not_poison_the_next():
    p = started(Echo)
    value = ntnda.value_from_image(IMAGE16, 1, codec="bslz4")
    bad = _corrupt(ntnda.value_from_image(IMAGE16, 2, codec="bslz4"))
    with pytest.raises(CorruptPayloadError):
        p.process(bad)
    p.process(value)
    assert np.array_equal(p.seen[-1].image, IMAGE16)


def test_a_frame_without_dimensions_is_passed_over():
    p = started(Echo)
    empty = ntnda.value_from_image(IMAGE16, 1)
    empty["dimension"] = []
    assert p.process(empty) is empty
    assert p.seen == [] and p.dataPublisher.values == []


def test_a_kernel_that_cannot_run_fails_start_with_a_clear_error():
    p, device = fake_gpu_processor()

    def broken():
        raise RuntimeError("NVVM not found")
    p.pipeline.decoder.warm_up = broken
    with pytest.raises(ConfigurationError, match="bit-unshuffle kernel does not run on cupy "
                                                 "on GPU 0.*NVVM not found.*--gpu none"):
        p.start()


def test_a_new_backend_publishes_what_the_old_one_still_held():
    p, device = fake_gpu_processor(events_done=False)
    p.process(ntnda.value_from_image(IMAGE16, 1))
    assert p.dataPublisher.values == []
    p.setBackend(p.backend, device=device)
    assert [v["uniqueId"] for v in p.dataPublisher.values] == [1]


def test_decodeFrame_gives_the_frame_on_the_backend():
    p = started(Echo)
    frame = p.decodeFrame(ntnda.value_from_image(IMAGE16, 4, codec="blosc"))
    assert frame.unique_id == 4 and np.array_equal(frame.image, IMAGE16)


# ---------------------------------------------------------------------------
# the output Values (pvagpu.gpu.results)
# ---------------------------------------------------------------------------

def test_undeclared_result_fields_are_typed_by_their_values():
    frame = ntnda.frame_from_value(ntnda.value_from_image(IMAGE16, 8))
    values = ResultValues(dict, "test")
    out = values.scalar_value({"b": True, "i": np.int32(3), "f": np.float64(0.5), "s": "x",
                               "z": np.array(7)}, frame)
    assert isinstance(out, Value) and out["uniqueId"] == 8
    assert (out["b"], out["i"], out["f"], out["s"], out["z"]) == (True, 3, 0.5, "x", 7)
    assert values.output_type() is ntnda.NTNDARRAY_TYPE
    with pytest.raises(FrameError, match="returned a list"):
        values.scalar_value({"bad": [1, 2]}, frame)


def test_declared_result_fields_keep_their_type_and_unknown_keys_are_dropped():
    frame = ntnda.frame_from_value(ntnda.value_from_image(IMAGE16, 8))
    values = ResultValues(lambda: {"mean": "d"}, "test")
    out = values.scalar_value({"mean": 2, "other": 1}, frame)
    assert out["mean"] == 2.0 and "other" not in out
    assert values.output_type() is values.output_type()       # one type, made once


def test_scalar_and_code_helpers():
    assert scalar(np.float32(1.5)) == 1.5 and type(scalar(np.float32(1.5))) is float
    assert scalar(np.array(3)) == 3 and scalar("s") == "s"
    assert [code(v) for v in (True, 1, 1.0, "s")] == ["?", "l", "d", "s"]


def test_image_results_keep_the_frames_metadata():
    value = ntnda.value_from_image(IMAGE16, 9, time_stamp=ntnda.TimeStamp(5, 6, 7))
    frame = ntnda.frame_from_value(value)
    out = ResultValues(dict, "described").image_value(IMAGE16.astype(np.float32), frame)
    back = ntnda.frame_from_value(out)
    assert back.unique_id == 9 and back.image.dtype == np.float32
    assert back.time_stamp == ntnda.TimeStamp(5, 6, 7) and out["descriptor"] == "described"
