"""Distributor options against a server without the plugin (issue 13
item 6): pvagpu-sim-server (pvxs) refuses the distributor request; the
consumer warns once, naming the pvapy-mirror-server route, and receives
every frame without the plugin, counting missed frames with offset 1."""
import logging

import pytest

from conftest import wait_for
from pvagpu.consumer import Consumer
from pvagpu.hpc import UserDataProcessor
from pvagpu.runtime.config import distributor_oid_offset


class IdRecorder(UserDataProcessor):
    def __init__(self, configDict=None):
        super().__init__(configDict)
        self.ids = []

    def process(self, pvObject):
        self.ids.append(pvObject["uniqueId"])


@pytest.mark.pva
def test_distributor_options_on_a_server_without_the_plugin_give_every_frame(
        processes, caplog):
    processes.start("pvagpu-sim-server", "-cn", "nodist:image", "-nx", "16", "-ny", "8",
                    "-fps", "100", "-rp", "0", "-dc")
    # as `pvagpu-consumer -nc 2 -du 1 ...` sets it up: offset 2, every other frame expected
    offset = distributor_oid_offset(n_consumers=2, distributor_updates=1)
    notes = []
    consumer = Consumer("nodist:image", IdRecorder(), oid_offset=offset,
                        distributor={"group": "g", "updates": 1})
    consumer.receiver.on_note = notes.append
    assert consumer.receiver.ids.offset == 2
    with caplog.at_level(logging.INFO, logger="pvagpu.pva.receiver"):
        try:
            consumer.start()
            wait_for(lambda: len(consumer.processor.ids) >= 60, timeout=20,
                     message="60 frames through the fallback")
            stats = consumer.stats()
        finally:
            consumer.shutdown()
    ids = consumer.processor.ids[:60]
    assert ids == list(range(ids[0], ids[0] + 60))            # every frame, none skipped
    receiver = consumer.receiver
    assert receiver.distributor_refused and not receiver.distributing
    assert (receiver.ids.offset, receiver.ids.sequential) == (1, 1)
    assert isinstance(receiver.request, str) and "_[" not in receiver.request
    assert stats["processorStats"]["nMissed"] == 0 and stats["receiverStats"]["nErrors"] == 0
    said = [n for n in notes if "distributor" in n]
    assert len(said) == 1, notes                               # once
    assert "pvapy-mirror-server" in said[0] and "pvagpu[distributor]" in said[0]
    assert "Scaling out" in said[0] and "EVERY frame" in said[0]
