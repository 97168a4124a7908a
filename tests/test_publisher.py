"""pvagpu.pva.publisher: the consumer's output channel."""
import numpy as np
import pytest
from p4p.client.thread import Context
from p4p.nt import NTNDArray

from pvagpu import ntnda
from pvagpu.pva.publisher import LocalServer, Publisher


@pytest.mark.pva
def test_publisher_reopens_for_a_value_of_another_type(pva_env):
    """A processor may open its output from the received frame and then
    publish NTNDArrays it builds itself: p4p refuses to post a Value of
    another type object, so the record is re-opened once with the new type."""
    server = LocalServer()
    publisher = Publisher(server, "test:reopen:output")
    try:
        publisher.updateOutputChannel(NTNDArray().wrap(np.zeros((2, 3), np.uint8)))
        for unique_id in (1, 2):
            publisher.updateOutputChannel(
                ntnda.value_from_image(np.full((2, 3), unique_id, np.uint16), unique_id))
        assert publisher.counters.n_errors == 0 and publisher.counters.n_published == 3
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
