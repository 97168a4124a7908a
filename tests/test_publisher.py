"""pvagpu.pva.publisher: the consumer's output channel."""
import numpy as np
import pytest
from p4p.client.thread import Context
from p4p.nt import NTNDArray

from conftest import wait_for
from pvagpu import ntnda
from pvagpu.pva.publisher import LocalServer, Publisher


@pytest.mark.pva
def test_a_record_opened_from_the_input_takes_the_first_objects_structure(pva_env):
    """The record is opened from the input's snapshot (here p4p's NTNDArray,
    which has no descriptor field) and the processor publishes NTNDArrays
    it builds itself: before its first publication the record is re-opened
    once with their structure, so nothing is lost."""
    server = LocalServer()
    publisher = Publisher(server, "test:reopen:output")
    try:
        publisher.open(NTNDArray().wrap(np.zeros((2, 3), np.uint8)))
        for unique_id in (1, 2):
            publisher.updateOutputChannel(
                ntnda.value_from_image(np.full((2, 3), unique_id, np.uint16), unique_id))
        assert publisher.counters.n_errors == 0 and publisher.counters.n_published == 2
        assert publisher.n_type_changes == 1
        with Context("pva", nt=False) as ctx:
            value = ctx.get("test:reopen:output", timeout=10)
        assert value["uniqueId"] == 2
        np.testing.assert_array_equal(ntnda.frame_from_value(value).image,
                                      np.full((2, 3), 2, np.uint16))
    finally:
        publisher.close()
        server.stop()


@pytest.mark.pva
def test_publish_failures_are_counted_and_publishing_goes_on(pva_env):
    """A dict with a field the record lacks cannot be published: counted as
    an error, the next object is published."""
    server = LocalServer()
    publisher = Publisher(server, "test:errors:output")
    try:
        publisher.updateOutputChannel(ntnda.value_from_image(np.zeros((2, 2), np.uint8), 1))
        publisher.updateOutputChannel({"noSuchField": 1})
        publisher.updateOutputChannel(ntnda.value_from_image(np.ones((2, 2), np.uint8), 3))
        assert (publisher.counters.n_published, publisher.counters.n_errors) == (2, 1)
        with Context("pva", nt=False) as ctx:
            assert ctx.get("test:errors:output", timeout=10)["uniqueId"] == 3
        publisher.reset_stats()
        assert publisher.counters.counts() == {"n_published": 0, "n_errors": 0}
    finally:
        publisher.close()
        server.stop()
    assert server.channels == []


@pytest.mark.pva
def test_equal_structures_built_elsewhere_go_out_on_the_open_record(pva_env):
    """The record opened from pva.NtNdArray(extraFields) (as pvapy's split
    example's getOutputPvObjectType) takes tiles from generateNtNdArray2D,
    whose Type is another object of the same structure: every tile reaches a
    subscribed client, the record is never re-opened (issue 13: 20 of 124)."""
    from pvagpu import pva
    from pvagpu.utility import AdImageUtility

    server = LocalServer()
    publisher = Publisher(server, "test:tiles:output")
    seen = []
    try:
        publisher.open(pva.NtNdArray({"tileIndexX": pva.INT, "tileIndexY": pva.INT}))
        with Context("pva", nt=False) as ctx:
            sub = ctx.monitor("test:tiles:output", seen.append,
                              request="record[queueSize=200]field()")
            wait_for(lambda: seen, message="client subscribed")
            n_tiles = 0
            for frame_id in range(1, 32):
                for i in range(2):
                    for j in range(2):
                        coordinates = pva.PvObject({"tileIndexX": pva.INT, "tileIndexY": pva.INT},
                                                   {"tileIndexX": i, "tileIndexY": j})
                        publisher.updateOutputChannel(AdImageUtility.generateNtNdArray2D(
                            frame_id, np.full((3, 4), frame_id, np.uint16),
                            extraFieldsPvObject=coordinates))
                        n_tiles += 1
            wait_for(lambda: len(seen) >= 1 + n_tiles, message=f"{n_tiles} tiles at the client")
            sub.close()
        tiles = seen[1:]
        assert len(tiles) == 124 == n_tiles
        assert [(t["uniqueId"], t["tileIndexX"], t["tileIndexY"]) for t in tiles] == [
            (f, i, j) for f in range(1, 32) for i in range(2) for j in range(2)]
        assert all(ntnda.frame_from_value(t).image[0, 0] == t["uniqueId"] for t in tiles)
        assert publisher.n_type_changes == 0 and publisher.n_converted == 124
        assert (publisher.counters.n_published, publisher.counters.n_errors) == (124, 0)
    finally:
        publisher.close()
        server.stop()


@pytest.mark.pva
def test_a_different_structure_after_the_first_publication_is_refused_and_counted(
        pva_env, caplog):
    """Opened from pva.NtNdArray() with nothing published, the record takes
    the first tile's structure (re-opened once); after that, an object of
    another structure is refused as pvapy refuses it: counted, logged, not
    published, and publishing goes on (clients never see a re-open)."""
    from pvagpu import pva

    server = LocalServer()
    publisher = Publisher(server, "test:other:output")
    try:
        publisher.open(pva.NtNdArray())
        tile = pva.NtNdArray({"tileIndexX": pva.INT})
        tile["uniqueId"] = 5
        publisher.updateOutputChannel(tile)
        plain = pva.NtNdArray()
        plain["uniqueId"] = 6
        with caplog.at_level("WARNING", logger="pvagpu.pva.publisher"):
            publisher.updateOutputChannel(plain)
        tile["uniqueId"] = 7
        publisher.updateOutputChannel(tile)
        assert publisher.n_type_changes == 1
        assert (publisher.counters.n_published, publisher.counters.n_errors) == (2, 1)
        assert "fields added: none; removed: ['tileIndexX']" in caplog.text
        assert "refused, as pvapy refuses it" in caplog.text
        with Context("pva", nt=False) as ctx:
            value = ctx.get("test:other:output", timeout=10)
        assert "tileIndexX" in value and value["uniqueId"] == 7
    finally:
        publisher.close()
        server.stop()
