"""pvapy's input and output modes (-im/-om pva, pvas, rpc) in pvagpu-consumer
(pvaPy pvapy/hpc/pvasDataReceiver.py, rpcDataReceiver.py, pvaDataPublisher.py,
rpcDataPublisher.py; documentation/streamingFramework.md "Input/Output Modes").

PVA tests run on loopback ports of their own (conftest), wait on conditions
and stop every server they start.
"""
import threading

import numpy as np
import pytest
from p4p.client.thread import Context
from p4p.server import Server
from p4p.server.thread import SharedPV

from conftest import wait_for
from pvagpu import ntnda
from pvagpu.cli import consumer as cli
from pvagpu.consumer import Consumer
from pvagpu.errors import ConfigurationError
from pvagpu.hpc import UserDataProcessor
from pvagpu.pva.input_record import InputRecord
from pvagpu.pva.objects import ntndarray_type
from pvagpu.pva.remote_output import RemoteOutput
from pvagpu.runtime.config import ConsumerConfig, parse_mode

IMAGE = np.arange(8 * 10, dtype=np.uint16).reshape(8, 10)


def frame(uid):
    return ntnda.value_from_image(IMAGE + uid, uid)


class Recorder(UserDataProcessor):
    """Keeps the uniqueIds and pixel sums it processed; publishes each frame."""

    def __init__(self, configDict={}):
        super().__init__(configDict)
        self.ids, self.sums = [], []

    def process(self, pvObject):
        self.ids.append(int(pvObject["uniqueId"]))
        self.sums.append(int(ntnda.frame_from_value(pvObject).image.sum()))
        self.updateOutputChannel(pvObject)
        return pvObject


def test_mode_names_as_pvapy_reads_them():
    assert parse_mode("PVAS", "input") == "pvas"
    assert parse_mode("2", "input") == "rpc"          # OperationMode numbers
    assert parse_mode(1, "output") == "pvas"
    with pytest.raises(ConfigurationError, match="ejfat.*E2SAR"):
        parse_mode("ejfat", "output")
    assert parse_mode("CA", "input") == "ca"          # Channel Access input (pvagpu.pva.ca_input)
    with pytest.raises(ConfigurationError, match="input mode only"):
        parse_mode("ca", "output")
    config = ConsumerConfig("in", input_mode="pvas", output_mode="pva", input_args='{"a": 1}')
    d = config.processor_config()
    assert (d["inputMode"], d["outputMode"], d["inputArgs"]) == (1, 0, '{"a": 1}')


def test_cli_modes_and_args(capsys):
    args = cli.build_parser().parse_args(["-ic", "x", "-im", "RPC", "-om", "pva",
                                          "-ia", '{"k": 2}'])
    config = cli.config_from_args(args)
    assert (config.input_mode, config.output_mode, config.input_args) == ("rpc", "pva", '{"k": 2}')
    for bad in (["-im", "ejfat"], ["-om", "ca"], ["-ia", "[1]"], ["-oa", "{x"]):
        with pytest.raises(SystemExit) as exc:
            cli.build_parser().parse_args(["-ic", "x"] + bad)
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "EJFAT" in err and "expected a JSON object" in err and "not valid JSON" in err


def test_version_flag(capsys):
    from pvagpu import __version__
    with pytest.raises(SystemExit) as exc:
        cli.main(["-v"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"pvagpu-consumer {__version__}"


def test_receiver_queue_size_zero_warns_and_keeps_a_bound(caplog):
    from pvagpu.runtime.delivery import DEFAULT_FRAME_QUEUE_SIZE
    assert cli.receiver_queue_size(None) == -1
    assert cli.receiver_queue_size(7) == 7
    assert not caplog.records
    assert cli.receiver_queue_size(0) == DEFAULT_FRAME_QUEUE_SIZE
    assert "without a bound" in caplog.text and str(DEFAULT_FRAME_QUEUE_SIZE) in caplog.text


@pytest.mark.pva
def test_pvas_input_record_processes_frames_clients_put(pva_env):
    processor = Recorder()
    with Consumer("stage2:input", processor, input_mode="pvas", skip_initial_updates=0,
                  status_channel="stage2:status") as consumer:
        assert isinstance(consumer.receiver, InputRecord)
        with Context("pva", nt=False) as ctxt:
            for uid in range(1, 6):
                ctxt.put("stage2:input", frame(uid), timeout=10, get=False)
            # the PUT completes after the frame was processed (inline delivery)
            assert processor.ids == [1, 2, 3, 4, 5]
            assert processor.sums == [int((IMAGE + uid).sum()) for uid in range(1, 6)]
            # monitors of the input record see the last frame put into it
            assert ctxt.get("stage2:input", timeout=5)["uniqueId"] == 5
            ctxt.put("stage2:input", frame(8), timeout=10, get=False)   # 6, 7 never sent
        stats = consumer.stats()
    assert stats["processorStats"]["nProcessed"] == 6
    assert stats["processorStats"]["nMissed"] == 2
    assert stats["receiverStats"]["nReceived"] == 6


@pytest.mark.pva
def test_pvas_input_full_queue_fails_the_put_and_is_counted(pva_env):
    release = threading.Event()

    class Slow(Recorder):
        def process(self, pvObject):
            release.wait(10)
            return super().process(pvObject)

    processor = Slow()
    with Consumer("q:input", processor, input_mode="pvas", skip_initial_updates=0,
                  receiver_queue_size=1) as consumer:
        with Context("pva", nt=False) as ctxt:
            ctxt.put("q:input", frame(1), timeout=10, get=False)   # taken by the thread
            wait_for(lambda: consumer.delivery.queue_length == 0, message="frame 1 taken")
            ctxt.put("q:input", frame(2), timeout=10, get=False)   # queued
            with pytest.raises(Exception, match="input queue full"):
                ctxt.put("q:input", frame(3), timeout=10, get=False)
            release.set()
            wait_for(lambda: processor.ids == [1, 2], message="queued frames processed")
        assert consumer.stats()["receiverStats"]["nOverruns"] == 1


@pytest.mark.pva
def test_pva_output_puts_into_a_remote_record(pva_env):
    """-om pva: every published frame is PUT into a record a test server hosts."""
    received = []
    target = SharedPV(initial=frame(0))

    @target.put
    def on_put(pv, op):
        received.append((int(op.value()["uniqueId"]),
                         int(ntnda.frame_from_value(op.value()).image.sum())))
        pv.post(op.value())
        op.done()

    source = SharedPV(initial=frame(0))
    with Server(providers=[{"remote:target": target, "remote:source": source}]):
        consumer = Consumer("remote:source", Recorder(), output_channel="remote:target",
                            output_mode="pva")
        with consumer:
            assert isinstance(consumer.publisher, RemoteOutput)
            wait_for(lambda: consumer.receiver.connected, timeout=30, message="connected")
            for uid in range(1, 6):
                source.post(frame(uid))
            wait_for(lambda: len(received) == 5, timeout=20, message="5 frames put")
        stats = consumer.stats()
    assert received == [(uid, int((IMAGE + uid).sum())) for uid in range(1, 6)]
    assert stats["publisherStats"]["nPublished"] == 5
    assert stats["publisherStats"]["nErrors"] == 0


@pytest.mark.pva
def test_pva_output_to_a_missing_record_is_counted(pva_env):
    output = RemoteOutput("nobody:home", "pva", timeout=0.3)
    try:
        output.updateOutputChannel(frame(1))
    finally:
        output.close()
    assert output.counters.counts() == {"n_published": 0, "n_errors": 1}


@pytest.mark.pva
def test_rpc_output_into_rpc_input_chain(pva_env):
    """-om rpc -> -im rpc: consumer 1's output reaches consumer 2 through RPC."""
    downstream = Recorder()
    source = SharedPV(initial=frame(0))
    with Server(providers=[{"chain:source": source}]):
        with Consumer("chain:rpc", downstream, input_mode="rpc", skip_initial_updates=0,
                      consumer_id=2) as second:
            with Consumer("chain:source", Recorder(), output_channel="chain:rpc",
                          output_mode="rpc") as first:
                wait_for(lambda: first.receiver.connected, timeout=30, message="connected")
                for uid in range(1, 5):
                    source.post(frame(uid))
                wait_for(lambda: len(downstream.ids) == 4, timeout=20, message="4 frames")
                assert first.stats()["publisherStats"]["nPublished"] == 4
            assert downstream.ids == [1, 2, 3, 4]
            assert second.stats()["processorStats"]["nProcessed"] == 4


@pytest.mark.pva
def test_pvas_input_record_type_comes_from_the_processor(pva_env):
    class Typed(Recorder):
        def getInputPvObjectType(self):
            return ntndarray_type({"tileIndexX": "i"})

    with Consumer("typed:input", Typed(), input_mode="pvas", skip_initial_updates=0):
        with Context("pva", nt=False) as ctxt:
            fields = ctxt.get("typed:input", timeout=10).keys()
    assert "tileIndexX" in fields and "uniqueId" in fields
