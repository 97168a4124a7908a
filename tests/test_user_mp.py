"""UserMpDataProcessor / UserMpWorker / UserMpWorkerController: the seed's API,
the command protocol under fork, spawn and forkserver, frames through shared
memory, a hung worker, GPU binding."""
import ast
import inspect
import multiprocessing as mp
import os
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import wait_for
from mp_processors import GpuProbeProcessor, HoldingProcessor, RecordingProcessor, describe
from pvagpu import ntnda
from pvagpu.errors import ConfigurationError
from pvagpu.hpc import UserMpDataProcessor, UserMpWorker, UserMpWorkerController
from pvagpu.mp import RingFullError, ShmQueue, gpu_binding

SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "pvapy-hpc-api-reference.txt"
CLASSES = [UserMpDataProcessor, UserMpWorker, UserMpWorkerController]


# -- the seed's API ------------------------------------------------------------------

def seed_block(class_name):
    blocks = re.split(r"^- class pvapy\.hpc\.\w+\.", SEED.read_text(), flags=re.M)
    return next(b for b in blocks[1:] if b.startswith(class_name + "\n"))


def parameters(func):
    return [p for p in inspect.signature(func).parameters if p not in ("self", "cls")]


@pytest.mark.skipif(not SEED.exists(), reason="seed reference not beside the checkout")
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_seed_name_exists_with_the_seed_parameters(cls):
    block = seed_block(cls.__name__)
    constructor = re.search(rf"^{cls.__name__}\(([^)]*)\)$", block, re.M).group(1)
    seed_args = [a.split("=")[0].strip() for a in constructor.split(",")]
    assert parameters(cls.__init__)[:len(seed_args)] == seed_args
    # the seed lists ProcessNotResponding's members inside the controller's block
    exception = re.search(r"^- exception ProcessNotResponding.*?(?=^- [A-Z_]+ = )", block,
                          re.M | re.S)
    if exception:
        block = block.replace(exception.group(0), "")
        for name in re.findall(r"^- (\w+)\(", exception.group(0), re.M):
            assert callable(getattr(cls.ProcessNotResponding, name, None)), name
    methods = re.findall(r"^- (?:classmethod |static )?(\w+)\(([^)]*)\)", block, re.M)
    assert methods
    for name, args in methods:
        assert callable(getattr(cls, name, None)), name
        if name == "configure":
            continue   # the seed shows pvapy's configure() without its configDict (a bug)
        seed = [a.split("=")[0].strip() for a in args.split(",") if a.strip()]
        assert parameters(getattr(cls, name))[:len(seed)] == seed, name
    for name, text in re.findall(r"^- ([A-Z_]+) = (.+)$", block, re.M):
        assert getattr(cls, name) == ast.literal_eval(text), name
    if cls is not UserMpDataProcessor:
        assert parameters(cls.configure) == ["configDict"]


def test_process_not_responding_is_a_nested_exception():
    exc = UserMpWorkerController.ProcessNotResponding("no answer")
    assert isinstance(exc, Exception) and exc.args == ("no answer",)


def test_the_base_processor_does_nothing_and_has_no_stats():
    proc = UserMpDataProcessor(processorId=4)
    assert proc.processorId == 4 and proc.logger is not None
    proc.start()
    proc.configure({"x": 1})
    proc.process(np.zeros(2))
    proc.resetStats()
    proc.stop()
    assert proc.getStats() == {}


# -- running workers -----------------------------------------------------------------

@pytest.fixture
def workers():
    """Starts controllers and stops every one of them (and their queues) at the end."""
    started = []

    def start(processor_class, method, *, slots=4, **kwargs):
        ctx = mp.get_context(method)
        results = ctx.Queue()
        frames = ShmQueue(slots=slots, start_method=method)
        controller = UserMpWorkerController(f"w{len(started)}", processor_class(results),
                                            frames, **kwargs)
        started.append((controller, frames, results))
        controller.start()
        return controller, frames, results

    yield start
    for controller, frames, results in started:
        controller.stop()
        assert not controller.uwProcess.is_alive()
        frames.close()
        results.close()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_command_protocol_and_frames(workers, method):
    controller, frames, results = workers(RecordingProcessor, method)
    assert results.get(timeout=20)[0] == "start"   # start() runs in the worker
    image = np.arange(48, dtype=np.uint16).reshape(6, 8)
    value = ntnda.value_from_image(image, 9, attributes=[{"name": "Gain", "value": ("f", 2.5)}])
    for obj in (image, value, 17):
        frames.put(obj)
        assert results.get(timeout=10) == describe(obj)
    frames.put("raise")                                   # a processing error is counted
    wait_for(lambda: controller.getStats()["nWorkerErrors"] == 1, message="the error count")

    controller.configure({"threshold": 3})                # pvapy's configure raises TypeError
    stats = controller.getStats()
    assert stats["config"] == {"threshold": 3} and stats["nObjects"] == 3
    assert (stats["nWorkerProcessed"], stats["nRingPuts"], stats["ringSlotsInUse"]) == (3, 2, 0)
    with pytest.raises(RuntimeError, match="configuration refused"):
        controller._invokeCommandRequest(controller.CONFIGURE_COMMAND,
                                         {"configDict": {"fail": True}})
    controller.configure({"fail": True})                  # logged, as in pvapy
    with pytest.raises(RuntimeError, match="unknown command"):
        controller._invokeCommandRequest("dance")

    controller.resetStats()
    stats = controller.getStats("w_")
    assert (stats["w_nObjects"], stats["w_nWorkerProcessed"], stats["w_nRingPuts"]) == (0, 0, 0)

    frames.put(image)
    assert results.get(timeout=10) == describe(image)
    final = controller.stop(statsKeyPrefix="w_")
    assert final["w_nObjects"] == 1 and final["w_nWorkerDiscarded"] == 0
    assert results.get(timeout=10) == ("stop", 1)
    assert controller.uwProcess.exitcode == 0
    assert controller.getStats() == controller.stop()     # stopped: the last statistics


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_hung_worker_raises_process_not_responding_and_is_killed(workers, method):
    controller, frames, results = workers(RecordingProcessor, method)
    controller.WAIT_TIME = 0.3     # keep the test short; the protocol is the same
    assert results.get(timeout=20)[0] == "start"
    controller.configure({"statsDelay": 60})              # getStats() now hangs
    with pytest.raises(UserMpWorkerController.ProcessNotResponding):
        controller._invokeCommandRequest(controller.GET_STATS_COMMAND)
    stats = controller.getStats()                         # logged; the last stats + ring
    assert stats["ringSlots"] == 4 and "nObjects" not in stats
    controller.stop()                                     # no answer: terminated
    assert not controller.uwProcess.is_alive() and controller.uwProcess.exitcode != 0
    with pytest.raises(UserMpWorkerController.ProcessNotResponding, match="not running"):
        controller._invokeCommandRequest(controller.GET_STATS_COMMAND)


def test_a_late_response_does_not_desynchronise_later_commands(workers):
    controller, frames, results = workers(RecordingProcessor, "fork")
    controller.WAIT_TIME = 0.3
    assert results.get(timeout=20)[0] == "start"
    controller.configure({"statsDelay": 0.6})
    with pytest.raises(UserMpWorkerController.ProcessNotResponding):
        controller._invokeCommandRequest(controller.GET_STATS_COMMAND)
    controller.WAIT_TIME = 5.0
    controller.configure({"statsDelay": 0})               # its answer comes after the late one
    assert controller._invokeCommandRequest(controller.GET_STATS_COMMAND)["config"] == \
        {"statsDelay": 0}


def test_a_worker_keeping_frames_holds_their_slots(workers):
    controller, frames, results = workers(HoldingProcessor, "fork", slots=2)
    assert results.get(timeout=20)[0] == "start"
    for i in (1, 2):
        frames.put(np.full(1000, i, np.uint16))
        assert results.get(timeout=10) == ("got", i)
    with pytest.raises(RingFullError):
        frames.put(np.full(1000, 3, np.uint16), timeout=0.2)
    assert controller.getStats()["nRingFull"] == 1
    controller.configure({"drop": True})
    assert results.get(timeout=10) == ("held", [1, 2])    # never overwritten
    frames.put(np.full(1000, 3, np.uint16), timeout=10)
    assert results.get(timeout=10) == ("got", 3)


def test_stop_counts_what_was_left_on_the_queue(workers):
    controller, frames, results = workers(RecordingProcessor, "fork")
    assert results.get(timeout=20)[0] == "start"
    controller.configure({"statsDelay": 0})
    frames.put(np.zeros(4))
    assert results.get(timeout=10)[0] == "array"
    stats = controller.stop()
    assert stats["nWorkerProcessed"] + stats["nWorkerDiscarded"] == 1
    assert frames.ring_stats()["ringSlotsInUse"] == 0


# -- GPU binding -----------------------------------------------------------------

def test_a_gpu_worker_is_spawned_and_bound_before_the_processor_loads(workers, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    controller = UserMpWorkerController("gpu", GpuProbeProcessor(results), ctx.Queue(), gpu=1)
    assert controller.uwProcess._start_method == "spawn"
    controller.start()
    try:
        # physical device 7 is the worker's only device, before its processor was unpickled
        assert results.get(timeout=20) == ("gpu", "7", "7")
    finally:
        controller.stop()
    assert not controller.uwProcess.is_alive()


def test_a_gpu_worker_cannot_be_forked():
    with pytest.raises(ConfigurationError, match="spawn"):
        UserMpWorkerController("gpu", RecordingProcessor(None), mp.get_context("fork").Queue(),
                               gpu=0, startMethod="fork")
    frames = ShmQueue(slots=1, start_method="fork")
    with pytest.raises(ConfigurationError, match="spawn"):
        UserMpWorker("gpu", RecordingProcessor(None), None, None, frames, gpu=0)
    frames.close()


def test_bind_gpu_sets_the_device_and_uses_an_imported_cupy(monkeypatch):
    used = []
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        Device=lambda n: types.SimpleNamespace(use=lambda: used.append(n))))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert gpu_binding.bind_gpu(2, None) == "2"
    assert used == [0]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    assert gpu_binding.bind_gpu(1, "GPU-a, GPU-b") == "GPU-b"
    with pytest.raises(ConfigurationError, match="shows only 2"):
        gpu_binding.physical_device(2, "3,5")
    with pytest.raises(ConfigurationError):
        gpu_binding.physical_device(-1, None)
