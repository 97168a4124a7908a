"""`make demo` runs `python -m pvagpu.cli.demo`: keep it working (short run)."""
import subprocess
import sys

import pytest

from pvagpu.cli import demo
from pvagpu.runtime.loading import load_processor_class


def test_demo_runs_a_processor_shipped_in_the_package():
    """Installed from a wheel there is no examples/ folder: the demo's
    processor is loaded by module name from pvagpu itself."""
    cls = load_processor_class(None, demo.PROCESSOR)
    assert cls.__module__.startswith("pvagpu.")


@pytest.mark.pva
def test_demo_streams_every_frame_and_says_so():
    result = subprocess.run(
        [sys.executable, "-m", "pvagpu.cli.demo", "--seconds", "2", "--fps", "50",
         "--nx", "256", "--ny", "256"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "demo: OK: 100 of 100 frames processed, 0 missed" in result.stdout
