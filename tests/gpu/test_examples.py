"""The GPU examples on a machine without a GPU (NumPy backend): end to end
over PVA with every codec, through the Consumer and through
pvagpu-consumer, and photon counting's reset on the frame path."""
import json
import signal
from pathlib import Path

import numpy as np
import pytest
from p4p.client.thread import Context
from p4p.server import Server
from p4p.server.thread import SharedPV

from conftest import wait_for
from pvagpu import ntnda
from pvagpu.consumer import Consumer

from .fakes import CODECS, IMAGE16, RNG, Recorder, example


@pytest.fixture
def image_source(pva_env):
    pv = SharedPV(initial=ntnda.value_from_image(IMAGE16, 0))
    server = Server(providers=[{"gpu:image": pv}])
    yield pv
    server.stop()


@pytest.mark.pva
@pytest.mark.parametrize("codec", CODECS)
def test_frame_stats_example_over_pva(image_source, codec):
    cls = example("gpu_frame_stats.py", "GpuFrameStats")
    processor = cls({"threshold": 4, "gpu": "none"})
    ctx = Context("pva", nt=False)
    outputs = []
    try:
        with Consumer("gpu:image", processor, output_channel="_", status_channel="_",
                      server_queue_size=16) as consumer:
            wait_for(lambda: consumer.receiver.connected, timeout=20, message="connected")
            sub = ctx.monitor("pvapy:consumer:1:output", outputs.append)
            try:
                images = [IMAGE16 + i for i in range(1, 6)]
                for i, image in enumerate(images, 1):
                    n = consumer.receiver.counters.n_received
                    image_source.post(ntnda.value_from_image(image, i, codec=codec))
                    wait_for(lambda: consumer.receiver.counters.n_received > n, timeout=10,
                             message=f"frame {i}")
                wait_for(lambda: consumer.stats()["processorStats"]["nProcessed"] >= 5,
                         timeout=20, message="5 frames processed")
                wait_for(lambda: any(o["uniqueId"] == 5 for o in outputs if "mean" in o),
                         timeout=10, message="the last result on the output channel")
            finally:
                sub.close()
            stats = consumer.stats()
    finally:
        ctx.close()
    assert stats["processorStats"]["nErrors"] == 0
    user = stats["userStats"]
    assert user["nFrames"] == 5 and user["gpuBackend"] == "numpy"
    last = [o for o in outputs if "mean" in o and o["uniqueId"] == 5][-1]
    assert last["mean"] == pytest.approx(float((IMAGE16 + 5).mean()))
    assert last["max"] == float((IMAGE16 + 5).max())
    assert last["nAbove"] == int(np.count_nonzero(IMAGE16 + 5 > 4))


@pytest.mark.pva
@pytest.mark.parametrize("codec", ["", "bslz4"])
def test_photon_counting_example_over_pva(image_source, codec):
    cls = example("gpu_photon_counting.py", "GpuPhotonCounting")
    processor = cls({"threshold": 5, "publishEvery": 3, "gpu": "none"})
    ctx = Context("pva", nt=False)
    outputs = []
    frames = [RNG.poisson(4, IMAGE16.shape).astype(np.uint16) for _ in range(6)]
    try:
        with Consumer("gpu:image", processor, output_channel="_",
                      server_queue_size=16) as consumer:
            wait_for(lambda: consumer.receiver.connected, timeout=20, message="connected")
            sub = ctx.monitor("pvapy:consumer:1:output", outputs.append)
            try:
                for i, image in enumerate(frames, 1):
                    n = consumer.receiver.counters.n_received
                    image_source.post(ntnda.value_from_image(image, i, codec=codec))
                    wait_for(lambda: consumer.receiver.counters.n_received > n, timeout=10,
                             message=f"frame {i}")
                wait_for(lambda: any(o["uniqueId"] == 6 for o in outputs),
                         timeout=20, message="the sum after frame 6")
            finally:
                sub.close()
    finally:
        ctx.close()
    last = [o for o in outputs if o["uniqueId"] == 6][-1]
    image = ntnda.frame_from_value(last).image
    expect = sum((f.astype(np.float32) > 5).astype(np.uint32) for f in frames)
    assert image.dtype == np.uint32 and np.array_equal(image, expect)
    assert processor.nPhotons == int(expect.sum())


@pytest.mark.pva
@pytest.mark.parametrize("example, cls, args, output_field", [
    ("gpu_frame_stats.py", "GpuFrameStats", {"threshold": 10}, "mean"),
    ("gpu_photon_counting.py", "GpuPhotonCounting", {"threshold": 5, "publishEvery": 4},
     "value"),
])
def test_gpu_examples_run_through_pvagpu_consumer_on_a_cpu_only_machine(
        processes, example, cls, args, output_field):
    """What a user without a GPU types: pvagpu-sim-server, and
    pvagpu-consumer with an example GPU processor (NumPy backend)."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    # the server runs until the test stops it, so the consumer's start-up
    # time (imports, on a busy machine) does not matter
    sim = processes.start("pvagpu-sim-server", "-cn", "ex:image", "-nx", "64", "-ny", "48",
                          "-dt", "uint16", "-dist", "poisson", "-cdc", "bslz4", "-fps", "50",
                          "-nf", "10", "-rt", "300", "-std", "0", "-shd", "0", "-dc")
    proc = processes.start("pvagpu-consumer", "-ic", "ex:image", "-sc", "_", "-oc", "_",
                           "-pf", str(examples / example), "-pc", cls,
                           "-pa", json.dumps({**args, "gpu": "none"}), "-dc")
    ctx = Context("pva", nt=False)

    def status(condition, message):
        def check():
            value = ctx.get("pvapy:consumer:1:status", timeout=1, throw=False)
            return value if not isinstance(value, Exception) and condition(value) else None
        return wait_for(check, timeout=90, message=message)
    try:
        status(lambda v: v["processorStats.nProcessed"] >= 60, "60 frames processed")
        output = ctx.get("pvapy:consumer:1:output", timeout=10)
        sim.terminate()
        sim.communicate(timeout=30)
        final = status(lambda v: not v["receiverStats.connected"], "consumer saw the server go")
    finally:
        ctx.close()
    p = final["processorStats"]
    assert p["nProcessed"] >= 60 and p["nMissed"] == 0 and p["nErrors"] == 0
    assert final["userStats.nFrames"] == p["nProcessed"]
    assert final["userStats.gpuBackend"] == "numpy"
    assert final["userStats.nGpuFrames"] == p["nProcessed"]
    assert output_field in output
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out


def test_photon_counting_reset_zeroes_the_sum_in_place_on_the_frame_path():
    """configure({"reset": true}) (the control thread) only asks; the next
    frame zeroes the same array, so no device memory is freed under
    kernels of earlier frames."""
    cls = example("gpu_photon_counting.py", "GpuPhotonCounting")
    p = cls({"threshold": 5, "publishEvery": 1, "gpu": "none"})
    p.dataPublisher = Recorder()
    p.start()
    frames = [RNG.poisson(4, IMAGE16.shape).astype(np.uint16) for _ in range(5)]
    for i, image in enumerate(frames[:3], 1):
        p.process(ntnda.value_from_image(image, i))
    total = p.sumImage
    p.configure({"reset": True})
    assert p.sumImage is total and p.resetRequested
    for i, image in enumerate(frames[3:], 4):
        p.process(ntnda.value_from_image(image, i))
    p.flush(wait=True)
    assert p.sumImage is total and not p.resetRequested
    expect = sum((f.astype(np.float32) > 5).astype(np.uint32) for f in frames[3:])
    last = ntnda.frame_from_value(p.dataPublisher.values[-1]).image
    assert np.array_equal(last, expect) and np.array_equal(total, expect)


def test_frame_stats_example_batches_like_frames():
    """gpu_frame_stats' processFrameBatch gives each frame the result that
    processFrame gives it."""
    cls = example("gpu_frame_stats.py", "GpuFrameStats")
    values = [ntnda.value_from_image(IMAGE16 + i, i, codec="bslz4") for i in range(1, 5)]
    one, batched = cls({"threshold": 4, "gpu": "none"}), cls({"threshold": 4, "gpu": "none"})
    for p in (one, batched):
        p.dataPublisher = Recorder()
        p.start()
    for value in values:
        one.process(value)
    batched.processBatch(values)
    assert [v.todict() for v in batched.dataPublisher.values] == \
        [v.todict() for v in one.dataPublisher.values]
    assert batched.getStats() == one.getStats() and one.getStats()["nFrames"] == 4
