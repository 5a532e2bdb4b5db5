"""What ``load.py`` needs besides the load itself: server processes and their CPU,
the bench policy, PostgreSQL scratch databases, latency statistics and the table.

Imported by ``load.py`` as a top-level module (``python benchmarks/load.py`` puts
``benchmarks/`` first on ``sys.path``, and spawned client processes inherit it).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import grpc
from bench_support import process_cpu_seconds

CALL_TIMEOUT = 30.0
STARTUP_TIMEOUT = 60.0
_LISTENING = re.compile(r"^listening on (\S+):(\d+)$", re.MULTILINE)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")

# The default policy budgets puts (100/s) and searches (1/s) per caller: a load
# test of put and find would measure the rate limiter. The bench policy is the
# default one with those two budgets lifted; every grant, view and purpose rule
# (and the enumeration alarm) is unchanged.
_LIFTED_BUDGET = re.compile(r"^(search|put)_(per_second|burst) = .*$", re.MULTILINE)


def bench_policy_text() -> str:
    text = (resources.files("vault.policy") / "default_policy.toml").read_text("utf-8")

    def lift(match: re.Match[str]) -> str:
        value = "1000000.0" if match.group(2) == "per_second" else "1000000"
        return f"{match.group(1)}_{match.group(2)} = {value}"

    lifted, count = _LIFTED_BUDGET.subn(lift, text)
    if count != 4:
        raise RuntimeError(f"default policy: expected 4 search/put budget lines, found {count}")
    return lifted


# -- server processes and their CPU --------------------------------------------------------


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (a ``--workers`` supervisor and its worker processes)."""
    children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == pid]
    return [pid, *children]


def listening_pids(port: int) -> list[int]:
    """The processes holding a TCP socket listening on ``port`` (several with SO_REUSEPORT)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") in inodes for fd in fds):
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime summed over ``pids`` (a process gone since is counted as 0)."""
    total = 0.0
    for pid in pids:
        try:
            total += process_cpu_seconds(pid)
        except OSError:
            pass
    return total


def channel_for(data_dir: Path, caller: str, target: str) -> grpc.aio.Channel:
    tls = data_dir / "tls"
    credentials = grpc.ssl_channel_credentials(
        (tls / "ca.crt").read_bytes(),
        (tls / "clients" / f"{caller}.key").read_bytes(),
        (tls / "clients" / f"{caller}.crt").read_bytes(),
    )
    # The dev certificate names localhost; we dial the loopback address itself.
    options = [("grpc.ssl_target_name_override", "localhost")]
    return grpc.aio.secure_channel(target, credentials, options=options)


# -- the server ------------------------------------------------------------------------------


class Server:
    """Our own ``pii-vault serve`` (SIGTERM at the end), or a running one (left alone)."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.admin_url = args.database_url
        self.database_url = ""
        if args.target:
            self.data_dir, self.target = Path(args.data_dir), args.target
            port = int(args.target.rsplit(":", 1)[1])
            self.fixed_pids = args.server_pid or listening_pids(port)
            return
        self.fixed_pids = []
        self.data_dir = work / "data"
        self.log = work / "server.log"
        (work / "policy.toml").write_text(bench_policy_text(), encoding="utf-8")
        listen = "127.0.0.1:0"
        if args.workers > 1:  # workers share one port: it cannot be 0 (each would pick one)
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                listen = f"127.0.0.1:{probe.getsockname()[1]}"
        command = [
            sys.executable,
            "-m",
            "vault",
            "serve",
            "--init",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            listen,
            "--policy",
            str(work / "policy.toml"),
            "--workers",
            str(args.workers),
        ]
        if self.admin_url:
            self.database_url = create_postgres_database(self.admin_url)
            command += ["--database-url", self.database_url]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our interpreter, our arguments)
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            found = _LISTENING.findall(self.log.read_text(errors="replace"))
            if len(found) >= args.workers:
                self.target = f"127.0.0.1:{found[0][1]}"
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"server did not start:\n{self.log.read_text(errors='replace')}")

    def pids(self) -> list[int]:
        return self.fixed_pids or (process_tree(self.process.pid) if self.process else [])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.database_url:
            drop_postgres_database(self.admin_url, self.database_url)
            self.database_url = ""


# -- PostgreSQL scratch databases ----------------------------------------------------------


def create_postgres_database(admin_url: str) -> str:
    """A fresh database on the server of ``admin_url`` (whose own database we connect to)."""
    from sqlalchemy import create_engine, text

    name = f"vault_load_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_postgres_database(admin_url: str, url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    engine.dispose()


# -- statistics and the report -------------------------------------------------------------


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 when empty)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summarize(
    name: str,
    latencies: list[float],
    ends: list[float],
    errors: dict[str, int],
    duration: float,
    server_cpu: float,
    client_cpu_per_call: float,
) -> dict[str, Any]:
    """One phase: ``ends`` are completion times relative to the window start (s)."""
    ok = sum(1 for end in ends if end < duration)
    ordered = sorted(latencies)
    seconds = max(1, math.ceil(duration))
    per_second = [0.0] * seconds
    for latency, end in zip(latencies, ends, strict=True):
        slot = min(seconds - 1, max(0, int(end)))
        per_second[slot] = max(per_second[slot], latency)
    worst = max(range(seconds), key=per_second.__getitem__)
    return {
        "call": name,
        "ok": ok,
        "rps": ok / duration,
        "p50_ms": percentile(ordered, 0.50) * 1e3,
        "p90_ms": percentile(ordered, 0.90) * 1e3,
        "p99_ms": percentile(ordered, 0.99) * 1e3,
        "max_ms": (ordered[-1] if ordered else 0.0) * 1e3,
        "max_per_second_ms": [round(v * 1e3, 2) for v in per_second],
        "worst_second": worst,
        "median_second_max_ms": statistics.median(per_second) * 1e3,
        "seconds_over_1s": sum(1 for v in per_second if v > 1.0),
        "errors": errors,
        "server_cpu_s": server_cpu,
        "server_cores": server_cpu / duration,
        "server_cpu_us_per_call": server_cpu / ok * 1e6 if ok else 0.0,
        "client_cpu_us_per_call": client_cpu_per_call * 1e6,
    }


COLUMNS = (
    ("call", "call", "{}"),
    ("rps", "RPS", "{:,.0f}"),
    ("ratio", "x health", "{:.2f}"),
    ("p50_ms", "p50 ms", "{:.1f}"),
    ("p90_ms", "p90 ms", "{:.1f}"),
    ("p99_ms", "p99 ms", "{:.1f}"),
    ("max_ms", "max ms", "{:.0f}"),
    ("median_second_max_ms", "med max/s ms", "{:.0f}"),
    ("seconds_over_1s", "s>1s", "{}"),
    ("server_cpu_us_per_call", "srv CPU us/call", "{:.0f}"),
    ("server_cores", "srv cores", "{:.2f}"),
    ("client_cpu_us_per_call", "cli CPU us/call", "{:.0f}"),
    ("errors", "errors", "{}"),
)


def render_table(rows: list[dict[str, Any]]) -> list[str]:
    def cell(row: dict[str, Any], key: str, fmt: str) -> str:
        value: Any = row.get(key)
        if key == "errors":
            return ",".join(f"{code}:{n}" for code, n in sorted(value.items())) or "0"
        return "" if value is None else fmt.format(value)

    table = [[title for _, title, _ in COLUMNS]]
    table += [[cell(row, key, fmt) for key, _, fmt in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines
