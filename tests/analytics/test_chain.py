"""Chain: steps in sequence against the NumPy reference of each; over PVA
end to end (pvagpu-sim-server -> pvagpu-consumer -pc pvagpu.analytics:Chain),
reconfigured through the control channel while frames flow."""
import json
import signal

import numpy as np
import pytest
from p4p.client.thread import Context

from conftest import wait_for
from pvagpu import ntnda
from pvagpu.analytics import Chain
from pvagpu.errors import ConfigurationError, FrameError

from .common import RNG, run

STEPS = [{"type": "Rotation", "rotate": 90}, {"type": "Binning", "binX": 2, "binY": 2},
         {"type": "FrameStatistics", "threshold": 20}]


def reference(image, threshold):
    binned = np.rot90(image).astype(np.float64)
    ny, nx = binned.shape[0] // 2 * 2, binned.shape[1] // 2 * 2
    b = binned[:ny:2, :nx:2] + binned[1:ny:2, :nx:2] + binned[:ny:2, 1:nx:2] + \
        binned[1:ny:2, 1:nx:2]
    return {"sum": b.sum(), "max": b.max(), "std": b.std(), "nAbove": int((b > threshold).sum())}


@pytest.mark.parametrize("numba", [True, False])
def test_chain_matches_the_steps_in_sequence(numba):
    steps = [dict(s, numba=numba) for s in STEPS]
    images = [RNG.poisson(6, (21, 34)).astype(np.uint16) for _ in range(3)]
    p, values = run(Chain, {"steps": steps}, images)
    for image, value in zip(images, values):
        for k, v in reference(image, 20).items():
            assert value[k] == pytest.approx(v, rel=1e-12), k
    assert p.getStats()["step3_lastNAbove"] == values[-1]["nAbove"]


def test_chain_with_accumulation_publishes_every_n():
    images = [RNG.poisson(6, (8, 10)).astype(np.uint16) for _ in range(4)]
    steps = [{"type": "Roi", "x": 1, "y": 2, "width": 5, "height": 4},
             {"type": "Accumulation", "nFrames": 2}]
    p, values = run(Chain, {"steps": steps}, images)
    assert [v["uniqueId"] for v in values] == [2, 4]
    out = ntnda.frame_from_value(values[1]).image
    assert np.array_equal(out, sum(i[2:6, 1:6].astype(np.int64) for i in images[2:]))
    # a partial configure keeps the running sum of the unchanged Accumulation
    p.process(ntnda.value_from_image(images[0], 5))
    acc = p.step.steps[1]
    p.configure({"steps": [{"x": 0}, {}]})
    p.process(ntnda.value_from_image(images[1], 6))
    assert p.step.steps[1] is acc and p.step.steps[0].x == 0


def test_bad_chains_are_refused():
    with pytest.raises(ConfigurationError, match="only be the last"):
        Chain({"steps": [{"type": "FrameStatistics"}, {"type": "Binning"}]})
    with pytest.raises(ConfigurationError, match="type 'Blur'"):
        Chain({"steps": [{"type": "Blur"}]})
    with pytest.raises(ConfigurationError, match="step 2: Binning: 'binX'"):
        Chain({"steps": [{"type": "Rotation"}, {"type": "Binning", "binX": -1}]})
    with pytest.raises(ConfigurationError, match="non-empty list"):
        Chain({"steps": []})
    p, _ = run(Chain, {"steps": STEPS}, [np.zeros((20, 30), np.uint16)])
    with pytest.raises(ConfigurationError, match="changes what is published"):
        p.configure({"steps": [{"type": "Binning"}]})
    with pytest.raises(FrameError, match="Mono"):
        p.process(ntnda.value_from_image(np.zeros((20, 30, 3), np.uint8), 2,
                                         color_mode=ntnda.ColorMode.RGB1))


@pytest.mark.pva
def test_chain_over_pva_reconfigured_through_the_control_channel(processes):
    """pvagpu-sim-server -> pvagpu-consumer -pc pvagpu.analytics:Chain; each
    output is checked against the reference of the input frame of the same
    uniqueId; a configure through the control channel changes the
    threshold for the frames after it, a bad one is refused and changes
    nothing."""
    sim = processes.start("pvagpu-sim-server", "-cn", "an:image", "-nx", "40", "-ny", "30",
                          "-dt", "uint16", "-dist", "poisson", "-fps", "40", "-nf", "8",
                          "-rt", "300", "-std", "0", "-shd", "0", "-dc")
    proc = processes.start("pvagpu-consumer", "-ic", "an:image", "-sc", "_", "-oc", "_",
                           "-cc", "_", "-pc", "pvagpu.analytics:Chain",
                           "-pa", json.dumps({"steps": STEPS, "gpu": "none"}), "-dc")
    ctx = Context("pva", nt=False)
    inputs, outputs, messages = {}, {}, []

    def keep_input(v):
        # the channel holds an empty NTNDArray (uniqueId 0) before the first
        # frame; a callback that raised would end the subscription (p4p)
        if v["uniqueId"] > 0:
            inputs[int(v["uniqueId"])] = ntnda.frame_from_value(v).image.copy()
    subs = [ctx.monitor("an:image", keep_input),
            ctx.monitor("pvapy:consumer:1:output", lambda v: outputs.__setitem__(
                int(v["uniqueId"]), v) if "nAbove" in v else None),
            ctx.monitor("pvapy:consumer:1:control", lambda v: messages.append(
                v["statusMessage"]))]

    def matching(threshold, after):
        ids = [u for u in sorted(outputs) if u > after and u in inputs]
        return [u for u in ids
                if outputs[u]["nAbove"] == reference(inputs[u], threshold)["nAbove"]], ids

    def configure(args, reply):
        n = len(messages)
        ctx.put("pvapy:consumer:1:control", {"command": "configure", "args": json.dumps(args)},
                timeout=5)
        wait_for(lambda: any(m.startswith(reply) for m in messages[n:]), timeout=20,
                 message=f"configure reply {reply!r}")
        return max(outputs, default=0)
    try:
        wait_for(lambda: len(matching(20, 0)[1]) >= 10, timeout=90,
                 message="10 outputs with their inputs")
        good, ids = matching(20, 0)
        assert good == ids
        for u in ids:
            for k, v in reference(inputs[u], 20).items():
                assert outputs[u][k] == pytest.approx(v, rel=1e-12), (u, k)
        last = configure({"steps": [{}, {}, {"threshold": 30}]}, "Configuration successful")
        # frames processed after the reply use the new threshold; allow the
        # outputs of frames processed before it some time to arrive
        wait_for(lambda: len(matching(30, last + 10)[1]) >= 5, timeout=60,
                 message="5 outputs after the configure")
        good, ids = matching(30, last + 10)
        assert good == ids
        assert any(reference(inputs[u], 30)["nAbove"] != reference(inputs[u], 20)["nAbove"]
                   for u in ids)
        last = configure({"steps": [{}, {"binX": 0}, {}]}, "Configuration failed")
        assert "binX" in messages[-1]
        wait_for(lambda: len(matching(30, last + 10)[1]) >= 5, timeout=60,
                 message="5 outputs after the refused configure")
        good, ids = matching(30, last + 10)
        assert good == ids
        status = ctx.get("pvapy:consumer:1:status", timeout=5)
        assert status["processorStats.nErrors"] == 0
        assert status["userStats.step3_lastNAbove"] >= 0
    finally:
        for sub in subs:
            sub.close()
        ctx.close()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    sim.terminate()
