"""`make demo` runs `python -m pvagpu.cli.demo`: keep it working (short run)."""
import subprocess
import sys

import pytest


@pytest.mark.pva
def test_demo_streams_every_frame_and_says_so():
    result = subprocess.run(
        [sys.executable, "-m", "pvagpu.cli.demo", "--seconds", "2", "--fps", "50",
         "--nx", "256", "--ny", "256"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "demo: OK: 100 of 100 frames processed, 0 missed" in result.stdout
