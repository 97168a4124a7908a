"""pvagpu.runtime: the consumer's configuration, its delivery strategies and
frame runner, and the statistics it gives its subscribers.

Frames here are plain dicts given straight to the delivery strategies (no
PVA); the consumer over real PVA channels is tested in test_consumer.py.
"""
import pytest

from conftest import wait_for
from pvagpu.cli import consumer as cli
from pvagpu.consumer import Consumer
from pvagpu.errors import BatchFramesError, CodecError, ConfigurationError, FrameError
from pvagpu.hpc import UserDataProcessor
from pvagpu.processors import FrameCounter
from pvagpu.pva.receiver import SKIPPED
from pvagpu.runtime.config import ConsumerConfig
from pvagpu.runtime.delivery import (DEFAULT_FRAME_QUEUE_SIZE, BatchedDelivery, InlineDelivery,
                                     QueuedDelivery, make_delivery)
from pvagpu.runtime.frames import FrameRunner

# ---------------------------------------------------------------------------
# ConsumerConfig and the processor's configDict
# ---------------------------------------------------------------------------

EXPECTED_CONFIG_DICT = {
    "threshold": 3, "processorId": 7, "inputChannel": "det007:image", "inputMode": 0,
    "inputArgs": None, "outputChannel": "out:007", "outputMode": 1, "outputArgs": None,
    "objectIdField": "uniqueId", "skipInitialUpdates": 2, "objectIdOffset": 4,
    "nSequentialUpdates": 3, "fieldRequest": "value", "gpu": "none",
}


def test_config_dict_has_the_processor_args_and_the_framework_keys():
    config = ConsumerConfig("det*:image", consumer_id=7, id_format_spec="03d",
                            output_channel="out:*", status_channel="_",
                            processor_args='{"threshold": 3, "processorId": 99}',
                            skip_initial_updates=2, oid_offset=4, distributor={"updates": 3},
                            field_request="value", gpu="none")
    assert config.processor_config() == EXPECTED_CONFIG_DICT    # the framework's id wins
    assert (config.input_name, config.output_name, config.status_name, config.control_name) \
        == ("det007:image", "out:007", "pvapy:consumer:007:status", None)
    plain = ConsumerConfig("det:image").processor_config()
    assert (plain["objectIdOffset"], plain["nSequentialUpdates"], plain["outputChannel"]) \
        == (1, 1, None) and "gpu" not in plain


def test_the_command_line_builds_the_same_config():
    args = cli.build_parser().parse_args([
        "-ic", "det*:image", "-id", "7", "-ifs", "03d", "-oc", "out:*", "-sc", "_",
        "-pa", '{"threshold": 3, "processorId": 99}', "-siu", "2", "-oo", "4", "-du", "3",
        "-fr", "value", "--gpu", "none"])
    assert cli.config_from_args(args).processor_config() == EXPECTED_CONFIG_DICT


@pytest.mark.parametrize("options, message", [
    ({"processor_args": "[1, 2]"}, "must be a JSON object"),
    ({"processor_args": "{nope"}, "not valid JSON"),
    ({"consumer_id": 4, "id_format_spec": "s"}, "cannot format consumer id 4"),
])
def test_bad_configs_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        ConsumerConfig("in:image", **options)


def test_a_consumer_builds_the_processor_its_config_names():
    config = ConsumerConfig("in:image", consumer_id=3,
                            processor_class="pvagpu.processors:FrameCounter",
                            processor_args={"publish": False})
    consumer = Consumer(config)
    assert type(consumer.processor) is FrameCounter and consumer.processor.publish is False
    assert consumer.processor.processorId == 3
    passthrough = Consumer(config, processor_class=None, receiver_queue_size=8)
    assert type(passthrough.processor) is UserDataProcessor
    assert passthrough.config.receiver_queue_size == 8 and config.receiver_queue_size == 0
    assert isinstance(passthrough.delivery, QueuedDelivery)
    with pytest.raises(TypeError):
        Consumer("in:image", no_such_option=1)


# ---------------------------------------------------------------------------
# delivery strategies and the one frame runner
# ---------------------------------------------------------------------------

class Picky(UserDataProcessor):
    """Fails frame 3 (a bad frame) and frame 5 (a codec error)."""

    FAILURES = {3: FrameError("bad dimensions"), 5: CodecError("corrupt payload")}

    def __init__(self, configDict=None):
        super().__init__(configDict)
        self.ids = []

    def process(self, pvObject):
        uid = pvObject["uniqueId"]
        if uid in self.FAILURES:
            raise self.FAILURES[uid]
        self.ids.append(uid)


class PickyBatches(Picky):
    """The same failures, reported by processBatch."""

    def __init__(self, configDict=None):
        super().__init__(configDict)
        self.batches = []

    def processBatch(self, values):
        uids = [v["uniqueId"] for v in values]
        self.batches.append(uids)
        failures = [(uid, self.FAILURES[uid]) for uid in uids if uid in self.FAILURES]
        self.ids += [uid for uid in uids if uid not in self.FAILURES]
        if failures:
            raise BatchFramesError(failures, len(uids) - len(failures))


def feed(delivery, ids):
    """Offer ``ids`` (after one skipped snapshot); what offer() answered."""
    return [delivery.offer(SKIPPED, {"uniqueId": 0})] + \
        [delivery.offer(uid, {"uniqueId": uid}) for uid in ids]


def counts(runner):
    c = runner.counters
    return {"processed": c.n_processed, "errors": c.n_errors, "frame": c.n_frame_errors,
            "codec": c.n_codec_errors, "first": c.first_object_id, "last": c.last_object_id}


EXPECTED_COUNTS = {"processed": 6, "errors": 2, "frame": 1, "codec": 1, "first": 1, "last": 8}


@pytest.mark.parametrize("strategy", ["inline", "queued", "batched", "batched-per-frame"])
def test_every_strategy_counts_the_same_through_the_frame_runner(strategy):
    processor = PickyBatches() if strategy == "batched" else Picky()
    runner = FrameRunner(processor)
    delivery = {"inline": lambda: InlineDelivery(runner),
                "queued": lambda: QueuedDelivery(runner, 16),
                "batched": lambda: BatchedDelivery(runner, 16, 3, 10.0),
                "batched-per-frame": lambda: BatchedDelivery(runner, 16, 3, 10.0)}[strategy]()
    delivery.start()
    answers = feed(delivery, range(1, 9))
    delivery.stop(timeout=10)
    assert False not in answers and delivery.queue_length == 0
    assert counts(runner) == EXPECTED_COUNTS
    assert processor.ids == [1, 2, 4, 6, 7, 8]
    if strategy == "batched":
        assert processor.batches == [[1, 2, 3], [4, 5, 6], [7, 8]]


def test_a_full_queue_refuses_frames_and_the_rest_are_drained_at_stop():
    runner = FrameRunner(Picky())
    delivery = QueuedDelivery(runner, 3)
    assert feed(delivery, [1, 2, 4]) == [True, True, True, False]   # before the thread runs
    assert (delivery.queue_length, delivery.queue_max) == (3, 3)
    delivery.start()
    delivery.stop(timeout=10)
    assert delivery.queue_length == 0 and runner.processor.ids == [1, 2]
    delivery.resize(0)
    assert delivery.queue_max == DEFAULT_FRAME_QUEUE_SIZE


def test_a_batch_that_fails_as_a_whole_counts_each_frame():
    class Broken(UserDataProcessor):
        def processBatch(self, values):
            raise FrameError("all of them")

    runner = FrameRunner(Broken())
    runner.run_batch([(uid, {"uniqueId": uid}) for uid in (4, 5, 6)])
    assert counts(runner) == {"processed": 0, "errors": 3, "frame": 3, "codec": 0,
                              "first": 4, "last": 6}


def test_the_strategy_follows_the_config():
    runner = FrameRunner(Picky())
    assert isinstance(make_delivery(ConsumerConfig("x"), runner), InlineDelivery)
    assert make_delivery(ConsumerConfig("x"), runner).queue_max == 0
    queued = make_delivery(ConsumerConfig("x", receiver_queue_size=5), runner)
    assert type(queued) is QueuedDelivery and queued.queue_max == 5
    batched = make_delivery(ConsumerConfig("x", accumulate_objects=4, accumulation_timeout=0.5),
                            runner)
    assert isinstance(batched, BatchedDelivery) and batched.queue_max == DEFAULT_FRAME_QUEUE_SIZE
    assert (batched.batch_size, batched.timeout) == (4, 0.5)


# ---------------------------------------------------------------------------
# statistics subscribers (on_stats)
# ---------------------------------------------------------------------------

@pytest.mark.pva
def test_subscribers_get_the_statistics_every_report_period_and_at_the_end(pva_env):
    reports = []

    def broken(stats):
        raise RuntimeError("subscriber bug")

    consumer = Consumer("runtime:nosuch", report_period=0.05, status_channel="st",
                        on_stats=[broken, reports.append])
    with consumer:
        wait_for(lambda: len(reports) >= 3, message="three reports")
    assert reports[-1] is consumer.final_stats
    assert all(r["consumerId"] == 1 and "processorStats" in r for r in reports)
    assert reports[-1]["processorStats"]["endTime"] > 0
