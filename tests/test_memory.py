"""pvagpu.memory.tune_malloc: glibc's thresholds, with an opt-out."""
import platform

import pytest

from pvagpu.memory import tune_malloc


def test_opt_out_changes_nothing(monkeypatch):
    monkeypatch.setenv("PVAGPU_MALLOPT", "0")
    assert tune_malloc() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_thresholds(monkeypatch):
    monkeypatch.delenv("PVAGPU_MALLOPT", raising=False)
    assert tune_malloc() is True
