"""kill -9 of a process in the middle of concurrent enrolments loses no answered enrolment and
leaves no half-written one (benchmarks/store_crash.py, a few trials)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "store_crash.py"


def test_killed_writer_loses_no_answered_enrolment(tmp_path):
    out = tmp_path / "crash.json"
    args = ["--trials", "3", "--threads", "4", "--min-seconds", "0.3", "--max-seconds", "0.8", "--json", str(out)]
    subprocess.run([sys.executable, str(SCRIPT), *args], check=True, capture_output=True, timeout=240)
    summary = json.loads(out.read_text())["summary"]
    assert summary["trials"] == 3 and summary["answered"] > 0  # the writer was killed mid-burst, not idle
    assert summary["lost_answered"] == 0
    assert summary["half_written"] == 0
    assert summary["index_misses"] == 0
    assert summary["integrity_failures"] == 0
