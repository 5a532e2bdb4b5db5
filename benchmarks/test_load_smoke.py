"""Smoke test of the load generator: a 2 s run on 200 subjects, masked reads only.

It checks that ``benchmarks/load.py`` starts its server, seeds, loads and reports
(the health floor and the call, with no error); the figures themselves mean
nothing at this size. Run with ``pytest benchmarks/test_load_smoke.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

LOAD = Path(__file__).with_name("load.py")

pytestmark = pytest.mark.slow


def test_load_generator_reports_health_and_masked_reads(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    done = subprocess.run(  # noqa: S603 (our interpreter, our script)
        [
            sys.executable,
            str(LOAD),
            "--subjects",
            "200",
            "--calls",
            "get-masked",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--clients",
            "2",
            "--concurrency",
            "4",
            "--json",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(report_path.read_text())
    rows = {row["call"]: row for row in report["phases"]}
    assert {"health (before)", "get-masked", "health (after)"} <= rows.keys()
    for name in ("health (before)", "get-masked", "health (after)"):
        assert rows[name]["errors"] == {}, rows[name]
        assert rows[name]["rps"] > 0, rows[name]
    assert report["health_rps"] > 0
    assert 0 < rows["get-masked"]["ratio"]
    assert "get-masked" in done.stdout and "health (before)" in done.stdout


def test_soak_paces_the_call_and_reports_memory_per_minute(tmp_path: Path) -> None:
    """``soak.py`` with two 2-second "minutes": paced at the share asked, memory reported."""
    report_path = tmp_path / "soak.json"
    done = subprocess.run(  # noqa: S603 (our interpreter, our script)
        [
            sys.executable,
            str(LOAD.with_name("soak.py")),
            "--subjects",
            "200",
            "--minutes",
            "0.0667",
            "--minute-seconds",
            "2",
            "--share",
            "0.5",
            "--json",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert len(report["minutes"]) == 2
    for minute in report["minutes"]:
        assert minute["errors"] == {} and minute["rss_mb"] > 0
        # Paced: well under the maximum it measured first (an open loop at half of it).
        assert minute["rps"] < 0.8 * report["peak_rps"]
