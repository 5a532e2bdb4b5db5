"""Load generator for pii-vault: asyncio gRPC over mTLS from several client processes.

    python benchmarks/load.py --calls get-masked,put --subjects 10000 --duration 10

Starts its own server (``python -m vault serve --init`` on a fresh data directory
under a temporary directory, SQLite unless ``--database-url`` names a PostgreSQL
server, on which it creates a scratch database and drops it afterwards), or
loads a running one (``--target HOST:PORT --data-dir DIR``). It seeds
``--subjects`` subjects through the real API, then runs one phase per call:
``--clients`` processes, ``--concurrency`` calls in flight in all, a warm-up,
then ``--duration`` measured seconds. Bare ``grpc.health.v1.Health/Check`` is
always measured on the same server in the same run, as the first and the last
phase, and every call is reported as a ratio to it (the mean of the two).
Server CPU per call is utime+stime of the server process(es) over the window.

Loopback only, and bounded: at most 600 s per phase and 2,000,000 subjects.
See BENCHMARKS.md for the figures this produced and how to reproduce them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import signal
import sys
import tempfile
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from load_support import (
    CALL_TIMEOUT,
    LOOPBACK_HOSTS,
    STARTUP_TIMEOUT,
    Server,
    channel_for,
    cpu_seconds,
    render_table,
    summarize,
)
from pii_vault_client.v1 import vault_pb2 as pb
from pii_vault_client.v1 import vault_pb2_grpc as pb_grpc

MAX_DURATION = 600.0
MAX_SUBJECTS = 2_000_000
MAX_CONCURRENCY = 1024
MAX_CLIENTS = 64
SEED_IN_FLIGHT = 32
CALLS = (
    "health",
    "get-masked",
    "get-token",
    "get-plaintext",
    "put",
    "batch-get-100",
    "detokenize",
    "find",
)
# The caller each call is made as: the default policy grants it exactly that.
CALLER = {
    "health": "registration",
    "get-masked": "registration",
    "get-token": "registration",
    "get-plaintext": "privacy-desk",  # grants[1]: plaintext for purpose "dsar"
    "put": "registration",
    "batch-get-100": "registration",
    "detokenize": "checkout",  # grants[3]: payment tokens for purpose "checkout"
    "find": "registration",  # answers "exists"
}


def phone_of(i: int) -> str:
    return f"+3725{i % 10_000_000:07d}"  # valid Estonian mobile numbers


def subject_of(prefix: str, i: int) -> str:
    return f"{prefix}-{i}"


# -- seeding ---------------------------------------------------------------------------------


async def seed(server: Server, args: argparse.Namespace, prefix: str, tokens_path: Path) -> None:
    """Every subject gets a phone; with detokenize in the mix, a payment token as well."""
    with_tokens = "detokenize" in args.calls
    started = time.monotonic()
    tokens: list[str] = [""] * args.subjects if with_tokens else []
    done = 0
    async with (
        channel_for(server.data_dir, "registration", server.target) as reg,
        channel_for(server.data_dir, "checkout", server.target) as checkout,
    ):
        registration = pb_grpc.VaultServiceStub(reg)
        payments = pb_grpc.VaultServiceStub(checkout)
        todo = iter(range(args.subjects))

        async def put(stub: Any, request: pb.PutFieldRequest) -> Any:
            while True:  # a running server's own policy may budget puts: wait for its bucket
                try:
                    return await stub.PutField(request, timeout=CALL_TIMEOUT)
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                    await asyncio.sleep(0.2)

        async def worker() -> None:
            nonlocal done
            for i in todo:
                subject = subject_of(prefix, i)
                phone = pb.FieldValue(phone=pb.PhoneNumber(number=phone_of(i)))
                await put(
                    registration, pb.PutFieldRequest(subject_id=subject, field="phone", value=phone)
                )
                if with_tokens:
                    value = pb.FieldValue(
                        payment_token=pb.PaymentToken(
                            provider="stripe", token=f"pm_{prefix}_{i:012d}"
                        )
                    )
                    answer = await put(
                        payments,
                        pb.PutFieldRequest(subject_id=subject, field="payment", value=value),
                    )
                    tokens[i] = answer.view.token
                done += 1

        async def progress() -> None:
            while True:
                rate = done / max(time.monotonic() - started, 1e-9)
                print(
                    f"\rseeding {done:,}/{args.subjects:,} subjects ({rate:,.0f}/s)",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
                await asyncio.sleep(0.5)

        reporter = asyncio.create_task(progress())
        try:
            await asyncio.gather(*(worker() for _ in range(SEED_IN_FLIGHT)))
        finally:
            reporter.cancel()
    elapsed = time.monotonic() - started
    print(
        f"\rseeded {done:,} subjects in {elapsed:.1f} s ({done / elapsed:,.0f}/s)" + " " * 20,
        file=sys.stderr,
        flush=True,
    )
    tokens_path.write_text("\n".join(tokens), encoding="utf-8")


# -- client processes ------------------------------------------------------------------------


def make_call(
    name: str, channel: grpc.aio.Channel, spec: dict[str, Any]
) -> Callable[[random.Random], Awaitable[object]]:
    vault = pb_grpc.VaultServiceStub(channel)
    prefix, pool = spec["prefix"], spec["pool"]
    tokens = spec["tokens"]
    masked, token_view = pb.VIEW_MASKED, pb.VIEW_TOKEN
    if name == "health":
        health, check = health_pb2_grpc.HealthStub(channel), health_pb2.HealthCheckRequest()
        return lambda rng: health.Check(check, timeout=CALL_TIMEOUT)
    if name in ("get-masked", "get-token", "get-plaintext"):
        view = {"get-masked": masked, "get-token": token_view}.get(name, pb.VIEW_PLAINTEXT)
        purpose = "dsar" if name == "get-plaintext" else ""
        return lambda rng: vault.GetField(
            pb.GetFieldRequest(
                subject_id=subject_of(prefix, rng.randrange(pool)),
                field="phone",
                view=view,
                purpose=purpose,
            ),
            timeout=CALL_TIMEOUT,
        )
    if name == "put":
        run = uuid.uuid4().hex[:8]
        return lambda rng: vault.PutField(
            pb.PutFieldRequest(
                subject_id=subject_of(prefix, rng.randrange(pool)),
                field="email",
                value=pb.FieldValue(email=f"load.{run}.{rng.getrandbits(40):x}@example.com"),
            ),
            timeout=CALL_TIMEOUT,
        )
    if name == "batch-get-100":
        return lambda rng: vault.BatchGetFields(
            pb.BatchGetFieldsRequest(
                items=[
                    pb.GetFieldRequest(
                        subject_id=subject_of(prefix, rng.randrange(pool)),
                        field="phone",
                        view=masked,
                    )
                    for _ in range(100)
                ]
            ),
            timeout=CALL_TIMEOUT,
        )
    if name == "detokenize":
        return lambda rng: vault.Detokenize(
            pb.DetokenizeRequest(token=tokens[rng.randrange(pool)], purpose="checkout"),
            timeout=CALL_TIMEOUT,
        )
    if name == "find":
        return lambda rng: vault.FindSubjects(
            pb.FindSubjectsRequest(
                value=pb.FieldValue(phone=pb.PhoneNumber(number=phone_of(rng.randrange(pool))))
            ),
            timeout=CALL_TIMEOUT,
        )
    raise ValueError(name)


async def drive(spec: dict[str, Any], ready: Any, go: Any, start: Any) -> dict[str, Any]:
    if spec["call"] == "detokenize":
        spec["tokens"] = Path(spec["tokens_path"]).read_text("utf-8").split("\n")
    else:
        spec["tokens"] = []
    async with channel_for(Path(spec["data_dir"]), CALLER[spec["call"]], spec["target"]) as ch:
        await asyncio.wait_for(ch.channel_ready(), STARTUP_TIMEOUT)
        call = make_call(spec["call"], ch, spec)
        ready.put(spec["index"])
        go.wait()  # every client is connected: the warm-up starts together
        t0 = start.value
        t_end = t0 + spec["duration"]
        latencies, ends, errors = array("d"), array("d"), Counter[str]()
        calls = 0
        cpu_before = time.process_time()

        # With "rate" (calls/s for this process) each worker paces itself: an open
        # loop at a fixed rate (soak.py) instead of as fast as answers come back.
        gap = spec["inflight"] / spec["rate"] if spec.get("rate") else 0.0

        async def worker(seed: int) -> None:
            nonlocal calls
            rng = random.Random(seed)
            due = time.monotonic() + rng.random() * gap
            while (begin := time.monotonic()) < t_end:
                if gap:
                    if begin < due:
                        await asyncio.sleep(due - begin)
                        begin = time.monotonic()
                    due += gap
                try:
                    await call(rng)
                    failed = ""
                except grpc.aio.AioRpcError as error:
                    failed = error.code().name
                end = time.monotonic()
                calls += 1
                if end < t0:
                    continue  # warm-up
                if failed:
                    errors[failed] += 1
                else:
                    latencies.append(end - begin)
                    ends.append(end - t0)

        await asyncio.gather(*(worker(spec["seed"] * 1000 + k) for k in range(spec["inflight"])))
        cpu = time.process_time() - cpu_before
    return {
        "lat": latencies.tobytes(),
        "ends": ends.tobytes(),
        "errors": dict(errors),
        "client_cpu": cpu,
        "calls": calls,
    }


def client_main(spec: dict[str, Any], ready: Any, go: Any, start: Any, results: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    results.put(asyncio.run(drive(spec, ready, go, start)))


def run_phase(
    name: str, label: str, server: Server, args: argparse.Namespace, base_spec: dict[str, Any]
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")  # never fork a process that has used gRPC
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    start = ctx.Value("d", 0.0)
    clients = min(args.clients, args.concurrency)
    shares = [
        args.concurrency // clients + (k < args.concurrency % clients) for k in range(clients)
    ]
    procs = [
        ctx.Process(
            target=client_main,
            daemon=True,
            args=(
                {
                    **base_spec,
                    "call": name,
                    "index": k,
                    "inflight": n,
                    "seed": random.getrandbits(32),
                },
                ready,
                go,
                start,
                results,
            ),
        )
        for k, n in enumerate(shares)
    ]
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.get(timeout=STARTUP_TIMEOUT)
        t0 = time.monotonic() + args.warmup
        start.value = t0
        go.set()
        time.sleep(max(0.0, t0 - time.monotonic()))
        pids = server.pids()
        cpu0 = cpu_seconds(pids)
        time.sleep(max(0.0, t0 + args.duration - time.monotonic()))
        server_cpu = cpu_seconds(pids) - cpu0
        outcomes = [results.get(timeout=CALL_TIMEOUT + 30) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    latencies: list[float] = []
    ends: list[float] = []
    errors: Counter[str] = Counter()
    for outcome in outcomes:
        latencies += array("d", outcome["lat"]).tolist()
        ends += array("d", outcome["ends"]).tolist()
        errors.update(outcome["errors"])
    calls = sum(o["calls"] for o in outcomes) or 1
    row = summarize(
        label,
        latencies,
        ends,
        dict(errors),
        args.duration,
        server_cpu,
        sum(o["client_cpu"] for o in outcomes) / calls,
    )
    print(
        f"  {label}: {row['rps']:,.0f} RPS, p99 {row['p99_ms']:.1f} ms, errors {dict(errors) or 0}",
        file=sys.stderr,
        flush=True,
    )
    return row


# -- the run ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--calls", default=",".join(CALLS), help=f"comma list of: {', '.join(CALLS)} (default: all)"
    )
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument(
        "--hot",
        type=int,
        default=0,
        help="draw subjects from the first N only (default: all, uniformly)",
    )
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight, in all")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per call")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--workers", type=int, default=1, help="server processes (own server)")
    parser.add_argument(
        "--database-url",
        default="",
        help="PostgreSQL URL to connect to for CREATE DATABASE (e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:5432/test); the server gets a "
        "fresh database there, dropped at the end (default: SQLite)",
    )
    parser.add_argument("--target", default="", help="HOST:PORT of a running server (loopback)")
    parser.add_argument("--data-dir", default="", help="its data directory (for the dev PKI)")
    parser.add_argument(
        "--server-pid",
        type=int,
        action="append",
        help="its process(es), for server CPU (default: who listens on PORT)",
    )
    parser.add_argument("--json", default="", help="also write the report as JSON to FILE")
    args = parser.parse_args(argv)
    args.calls = [c.strip() for c in args.calls.split(",") if c.strip()]
    unknown = sorted(set(args.calls) - set(CALLS))
    problems = [f"unknown call(s) {unknown}"] if unknown else []
    if not 0 < args.duration <= MAX_DURATION:
        problems.append(f"--duration must be in (0, {MAX_DURATION:.0f}] s")
    if not 0 <= args.warmup <= 60:
        problems.append("--warmup must be in [0, 60] s")
    if not 1 <= args.subjects <= MAX_SUBJECTS:
        problems.append(f"--subjects must be in [1, {MAX_SUBJECTS:,}]")
    if not 0 <= args.hot <= args.subjects:
        problems.append("--hot must be in [0, --subjects]")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY or not 1 <= args.clients <= MAX_CLIENTS:
        problems.append(f"--concurrency in [1, {MAX_CONCURRENCY}], --clients in [1, {MAX_CLIENTS}]")
    if not 1 <= args.workers <= 16:
        problems.append("--workers must be in [1, 16]")
    if args.target:
        if args.target.rsplit(":", 1)[0] not in LOOPBACK_HOSTS:
            problems.append("--target must be a loopback address (127.0.0.1, localhost, ::1)")
        if not args.data_dir:
            problems.append("--target needs --data-dir (its dev PKI has the client certificates)")
    if problems:
        parser.error("; ".join(problems))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prefix = f"load-{uuid.uuid4().hex[:8]}"
    measured = [c for c in args.calls if c != "health"]
    with tempfile.TemporaryDirectory(prefix="vault-load-") as tmp:
        work = Path(tmp)
        server = Server(args, work)
        try:
            print(
                f"server {server.target} (pids {server.pids()}), "
                f"{'PostgreSQL' if server.database_url else 'SQLite'}",
                file=sys.stderr,
            )
            asyncio.run(seed(server, args, prefix, work / "tokens.txt"))
            spec = {
                "target": server.target,
                "data_dir": str(server.data_dir),
                "prefix": prefix,
                "pool": args.hot or args.subjects,
                "duration": args.duration,
                "tokens_path": str(work / "tokens.txt"),
            }
            rows = [run_phase("health", "health (before)", server, args, spec)]
            rows += [run_phase(name, name, server, args, spec) for name in measured]
            rows.append(run_phase("health", "health (after)", server, args, spec))
        finally:
            server.stop()
    floor = (rows[0]["rps"] + rows[-1]["rps"]) / 2
    for row in rows:
        row["ratio"] = row["rps"] / floor if floor else 0.0
        if row["call"] == "batch-get-100":
            row["fields_per_s"] = row["rps"] * 100
    store = (
        f"target {args.target}" if args.target else "PostgreSQL" if args.database_url else "SQLite"
    )
    title = (
        f"{store}, {args.subjects:,} subjects{f' (hot {args.hot:,})' if args.hot else ''}, "
        f"{args.clients} client processes, {args.concurrency} in flight, "
        f"{args.duration:g} s per call after {args.warmup:g} s warm-up, "
        f"workers {args.workers}; x health = RPS / mean RPS of the two health phases"
    )
    print(title)
    print("\n".join(render_table(rows)))
    for row in rows:
        if row["call"] == "batch-get-100":
            print(f"batch-get-100: {row['fields_per_s']:,.0f} fields/s")
        w = row["worst_second"]
        print(f"{row['call']}: worst second {w} max {row['max_per_second_ms'][w]:.0f} ms")
    if args.json:
        report = {
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "title": title,
            "health_rps": floor,
            "phases": rows,
        }
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
