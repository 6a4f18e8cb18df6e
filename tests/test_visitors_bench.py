"""bench/visitors.py, briefly: 8 visitors for 20 seconds on tiny checkpoints, no errors, no lost rating."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def run_bench(*args: str) -> dict:
    run = subprocess.run(
        [sys.executable, "bench/visitors.py", "--tiny", "--json", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_eight_visitors_for_twenty_seconds_lose_nothing():
    summary = run_bench("--visitors", "8", "--seconds", "20")
    assert summary["served"] >= 8 and summary["errors"] == 0, summary
    assert summary["ratings_confirmed"] == summary["ratings_stored"] == summary["served"]
    assert summary["lost_ratings"] == 0 and summary["integrity"] == "ok"


def test_a_sigkill_and_restart_under_load_loses_no_confirmed_rating():
    summary = run_bench("--visitors", "8", "--seconds", "40", "--kill")
    assert summary["killed_and_restarted_in_s"] is not None and summary["errors"] == 0, summary
    assert summary["lost_ratings"] == 0 and summary["integrity"] == "ok"
    assert summary["ratings_stored"] >= summary["ratings_confirmed"] > 0
    # What the kill cut short is marked at the restart; served comparisons never are.
    assert summary["comparisons_interrupted"] <= summary["comparisons_stored"] - summary["served"]
