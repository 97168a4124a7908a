"""Proof under load and faults (issue 11 section 4): benchmarks/soak.py's
scenarios, run here with the short profile (marked ``soak``; each well under
20 s) and with the full one (marked ``soak`` and ``long``, left out of the
default run: ``pytest -m "soak and long"`` runs them; the 10-minute rated run
is ``python benchmarks/soak.py``)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import soak  # noqa: E402

pytestmark = [pytest.mark.soak, pytest.mark.pva]

LONG = pytest.mark.long
SHORT, FULL = soak.PROFILES["short"], soak.PROFILES["full"]


def check(result):
    assert not result["failed"], result


@pytest.mark.parametrize("profile", [SHORT, pytest.param(FULL, marks=LONG)],
                         ids=["short", "full"])
def test_rated_rate_with_the_defaults_loses_nothing_and_memory_stays_flat(pva_env, profile):
    check(soak.rated(pva_env, profile["rated_s"], profile["rated_fps"], profile["rated_shape"]))


def test_server_killed_restarted_stopped_resumed(pva_env):
    result = soak.faults(pva_env, SHORT["fault_fps"])
    check(result)
    assert result["disconnects"] >= 1 and result["connects"] >= 2


@pytest.mark.parametrize("profile", [SHORT, pytest.param(FULL, marks=LONG)],
                         ids=["short", "full"])
def test_hostile_server_every_bad_frame_counted_every_good_one_processed(pva_env, profile):
    result = soak.hostile(pva_env, profile["hostile_bad"])
    check(result)
    assert result["frame_errors"] > 0 and result["codec_errors"] > 0


@pytest.mark.parametrize("profile", [SHORT, pytest.param(FULL, marks=LONG)],
                         ids=["short", "full"])
def test_slow_processor_misses_counted_memory_bounded_status_answers(pva_env, profile):
    check(soak.slow(pva_env, profile["slow_s"], server_queue=profile["slow_queue"]))


@pytest.mark.parametrize("profile", [SHORT, pytest.param(FULL, marks=LONG)],
                         ids=["short", "full"])
def test_tampered_envelopes_all_rejected_good_frames_bit_for_bit(pva_env, profile, tmp_path):
    result = soak.tampered(pva_env, profile["tampered"], workdir=tmp_path)
    check(result)
    assert result["rejected"] == result["tampered"] == profile["tampered"]


def test_id_gaps_counts_absent_ids_and_restarts():
    assert soak.id_gaps([1, 2, 5, 6, 1, 2, 4]) == 3
