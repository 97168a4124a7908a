"""The README's port-a-processor diff is real: the pvapy processor in
examples/ and its pvagpu port differ only as the README shows, and both give
the same statistics for the same frames."""
import difflib
import importlib.util
import re
from pathlib import Path

import numpy as np

from pvagpu import ntnda

ROOT = Path(__file__).resolve().parents[1]
ORIGINAL = ROOT / "examples" / "pvapy_frame_stats.py"
PORT = ROOT / "examples" / "frame_stats.py"


def code_lines(path):
    """The file's lines after its module docstring."""
    text = path.read_text()
    return text[text.index('"""', 3) + 4:].splitlines()


def changed_lines(diff_lines):
    return [line for line in diff_lines
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FrameStatsProcessor


def test_readme_diff_is_the_real_diff():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```diff\n(.*?)```", readme, re.S).group(1).splitlines()
    real = difflib.unified_diff(code_lines(ORIGINAL), code_lines(PORT), lineterm="")
    assert changed_lines(block) == changed_lines(real)
    assert len(changed_lines(block)) == 6  # two imports and one accessor


def test_port_gives_the_same_stats_as_the_pvapy_original():
    import pvaccess as pva
    from pvapy.utility.adImageUtility import AdImageUtility

    rng = np.random.default_rng(7)
    config = {"threshold": 5, "processorId": 1}
    theirs, ours = load(ORIGINAL)(config), load(PORT)(config)
    for unique_id in range(1, 6):
        image = rng.poisson(4.0, (32, 48)).astype(np.uint16)
        pv_object = AdImageUtility.generateNtNdArray2D(unique_id, image)
        pv_object["attribute"] = [pva.NtAttribute("ColorMode", pva.PvInt(0)),
                                  pva.NtAttribute("AcquireTime", pva.PvDouble(0.25))]
        value = ntnda.value_from_image(
            image, unique_id, attributes=[{"name": "AcquireTime", "value": ("d", 0.25)}])
        theirs.process(pv_object)
        ours.process(value)
    a, b = theirs.getStats(), ours.getStats()
    a.pop("processingTime"), b.pop("processingTime")
    assert a == b and b["nFrames"] == 5 and b["exposureTime"] == 1.25
    assert {k: int(v) for k, v in theirs.getStatsPvaTypes().items()} == \
           {k: int(v) for k, v in ours.getStatsPvaTypes().items()}
