"""Soak: a long run at a share of the measured maximum, with memory and latency per minute.

    python benchmarks/soak.py                       # 30 minutes at 70 % of the maximum
    python benchmarks/soak.py --minutes 3 --share 0.7 --call get-masked --json soak.json

Starts its own server (``load.py``'s), seeds it, measures the maximum RPS of
the call (closed loop, ``--concurrency`` in flight), then paces the same call
at ``--share`` of it for ``--minutes``, one phase a minute, and prints per
minute: RPS, p50/p99/max latency, errors by code, and the server's resident
memory (VmRSS of every server process). Not part of CI: run it on a quiet
machine; BENCHMARKS.md keeps its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from load import parse_args as load_args
from load import run_phase, seed
from load_support import Server

MAX_MINUTES = 240


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--share", type=float, default=0.7, help="of the measured maximum")
    parser.add_argument("--call", default="get-masked", help="one of load.py's calls")
    parser.add_argument("--minute-seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--json", default="")
    own = parser.parse_args(argv)
    if not 0 < own.minutes <= MAX_MINUTES or not 0 < own.share <= 1:
        parser.error(f"--minutes must be in (0, {MAX_MINUTES}] and --share in (0, 1]")
    args = load_args(["--calls", own.call, "--subjects", str(own.subjects)])
    prefix = f"soak-{uuid.uuid4().hex[:8]}"
    minutes: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vault-soak-") as tmp:
        work = Path(tmp)
        server = Server(args, work)
        try:
            asyncio.run(seed(server, args, prefix, work / "tokens.txt"))
            spec: dict[str, Any] = {
                "target": server.target,
                "data_dir": str(server.data_dir),
                "prefix": prefix,
                "pool": args.subjects,
                "duration": args.duration,
                "tokens_path": str(work / "tokens.txt"),
            }
            peak = run_phase(own.call, f"{own.call} (maximum)", server, args, spec)["rps"]
            rate = own.share * peak
            clients = min(args.clients, args.concurrency)
            args.duration, args.warmup = own.minute_seconds, 0.5
            paced = {**spec, "duration": own.minute_seconds, "rate": rate / clients}
            for minute in range(max(1, round(own.minutes * 60 / own.minute_seconds))):
                row = run_phase(own.call, f"minute {minute + 1}", server, args, paced)
                row["rss_mb"] = rss_mb(server.pids())
                minutes.append(row)
        finally:
            server.stop()
    print(f"{own.call}: maximum {peak:,.0f} RPS; paced at {own.share:.0%} = {rate:,.0f} RPS")
    print("minute    RPS   p50 ms   p99 ms   max ms   RSS MB  errors")
    for row in minutes:
        print(
            f"{row['call']:>6} {row['rps']:6,.0f} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f}"
            f" {row['max_ms']:8.0f} {row['rss_mb']:8.1f}  {row['errors'] or 0}"
        )
    if own.json:
        report = {"call": own.call, "peak_rps": peak, "rate": rate, "minutes": minutes}
        Path(own.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
