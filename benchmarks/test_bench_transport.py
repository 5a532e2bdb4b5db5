"""gRPC transport costs, all over loopback on this machine. Every test here is slow.

1. Threaded ``grpc.server`` vs ``grpc.aio.server`` serving a trivial unary echo
   (``benchmarks/echo_server.py``, each server in its own process), insecure and
   over mutual TLS: client-observed latency of 3 000 sequential calls per server
   (three repetitions of 1 000, alternating with the other server), and the
   server's CPU time per call read from ``/proc/PID/stat`` around the same calls;
   then 8 client threads sharing one channel (wall time and server CPU per call).
   The ratio is aio / threaded.

2. The real vault (``python -m vault serve --init``) over mTLS: a masked
   ``GetField`` against a ``grpc.health.v1`` Check on the same channel, as the
   ``registration`` caller. The ratio GetField / Check is what a masked read costs
   on top of the gRPC call itself.

The client runs in the pytest process; the machine has few cores, so client and
server compete for them: compare within a pair, not across machines.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from bench_support import RatioTable, process_cpu_seconds
from grpc_health.v1 import health_pb2
from pii_vault_client.v1 import vault_pb2 as pb
from pytest_benchmark.fixture import BenchmarkFixture

from vault.bootstrap.pki import TlsPaths, create_dev_pki
from vault.client import VaultClient

pytestmark = pytest.mark.slow

# Each pair runs as baseline, subject, baseline, subject, ...: a burst of load
# from a neighbour then spoils one repetition of a side, not all of it.
REPEATS = 3
SEQUENTIAL_CALLS = 1000  # per repetition: 3 000 per side
WARMUP_CALLS = 100
CLIENT_THREADS = 8
CALLS_PER_THREAD = 50  # one round: 400 calls
CONCURRENT_ROUNDS = 2  # per repetition, after one warm-up round
PAYLOAD = b"x" * 64
STARTUP_TIMEOUT = 30.0
ECHO_SERVER = Path(__file__).with_name("echo_server.py")
ECHO_METHOD = "/bench.Echo/Echo"
_LISTENING = re.compile(r"^listening on (?P<host>\S+):(?P<port>\d+)$", re.MULTILINE)


@dataclass
class ServerProcess:
    """A server in a subprocess, its output in a file, its port from its 'listening on' line."""

    process: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0

    @classmethod
    def start(cls, command: list[str], log_path: Path) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 (our own interpreter and script)
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        server = cls(process, log_path)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            found = _LISTENING.search(log_path.read_text(errors="replace"))
            if found:
                server.port = int(found.group("port"))
                return server
            if process.poll() is not None:
                break
            time.sleep(0.05)
        server.stop()
        pytest.fail(f"{command} did not start:\n{log_path.read_text(errors='replace')}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsPaths:
    paths = TlsPaths.under(tmp_path_factory.mktemp("echo-pki"))
    create_dev_pki(paths, callers=("bench",))
    return paths


@pytest.fixture(scope="module")
def echo_servers(
    pki: TlsPaths, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str, str], ServerProcess]]:
    """Starts each (kind, security) echo server on first use; stops them all at the end."""
    running: dict[tuple[str, str], ServerProcess] = {}
    logs = tmp_path_factory.mktemp("echo-logs")

    def get(kind: str, security: str) -> ServerProcess:
        if (kind, security) not in running:
            command = [sys.executable, str(ECHO_SERVER), kind]
            if security == "mtls":
                command += ["--tls", str(pki.ca_cert.parent)]
            running[kind, security] = ServerProcess.start(command, logs / f"{kind}-{security}.log")
        return running[kind, security]

    yield get
    for server in running.values():
        server.stop()


def _echo_channel(pki: TlsPaths, security: str, port: int) -> grpc.Channel:
    if security == "insecure":
        return grpc.insecure_channel(f"127.0.0.1:{port}")
    credentials = grpc.ssl_channel_credentials(
        pki.ca_cert.read_bytes(),
        pki.client_key("bench").read_bytes(),
        pki.client_cert("bench").read_bytes(),
    )
    return grpc.secure_channel(f"localhost:{port}", credentials)


def _cpu_per_call(pid: int, calls: int, run: Callable[[], object]) -> float:
    before = process_cpu_seconds(pid)
    run()
    return (process_cpu_seconds(pid) - before) / calls


def _pedantic(
    benchmark: BenchmarkFixture,
    target: Callable[..., object],
    args: tuple[object, ...] = (),
    rounds: int = 1,
    warmup_rounds: int = 0,
) -> None:
    """One call per round: a round is one RPC (or one batch), never a loop of them."""
    benchmark.pedantic(  # type: ignore[no-untyped-call]
        target, args=args, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1
    )


def _role(kind: str) -> str:
    return "baseline" if kind == "threaded" else "subject"


# -- 1. threaded vs aio -----------------------------------------------------------------

ECHO_PAIRS = pytest.mark.parametrize(
    ("security", "rep", "kind"),
    [
        (security, rep, kind)
        for security in ("insecure", "mtls")
        for rep in range(REPEATS)
        for kind in ("threaded", "aio")
    ],
    ids=lambda value: f"rep{value}" if isinstance(value, int) else str(value),
)
_NOTE_CPU = "server process utime+stime per call (/proc/PID/stat, 10 ms ticks)"


@ECHO_PAIRS
def test_echo_sequential(
    benchmark: BenchmarkFixture,
    ratios: RatioTable,
    echo_servers: Callable[[str, str], ServerProcess],
    pki: TlsPaths,
    security: str,
    rep: int,
    kind: str,
) -> None:
    server = echo_servers(kind, security)
    with _echo_channel(pki, security, server.port) as channel:
        echo: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO_METHOD)
        assert echo(PAYLOAD, timeout=10) == PAYLOAD
        benchmark.group = f"grpc {security}: sequential latency"
        cpu = _cpu_per_call(
            server.pid,
            SEQUENTIAL_CALLS + WARMUP_CALLS,
            lambda: _pedantic(
                benchmark,
                echo,
                args=(PAYLOAD,),
                rounds=SEQUENTIAL_CALLS,
                warmup_rounds=WARMUP_CALLS,
            ),
        )
    if not benchmark.enabled:
        return
    benchmark.extra_info["server_cpu_us_per_call"] = round(cpu * 1e6, 2)
    ratios.add_benchmark(f"grpc {security}: sequential latency", _role(kind), kind, benchmark)
    group = f"grpc {security}: sequential server CPU/call"
    ratios.declare(group, note=_NOTE_CPU)
    ratios.add(group, _role(kind), kind, cpu)


@ECHO_PAIRS
def test_echo_concurrent(
    benchmark: BenchmarkFixture,
    ratios: RatioTable,
    echo_servers: Callable[[str, str], ServerProcess],
    pki: TlsPaths,
    security: str,
    rep: int,
    kind: str,
) -> None:
    """8 client threads on one channel; a round is 8 x 50 calls, timed as a whole."""
    server = echo_servers(kind, security)
    calls_per_round = CLIENT_THREADS * CALLS_PER_THREAD
    with ExitStack() as stack:
        channel = stack.enter_context(_echo_channel(pki, security, server.port))
        pool = stack.enter_context(futures.ThreadPoolExecutor(CLIENT_THREADS))
        echo: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO_METHOD)
        assert echo(PAYLOAD, timeout=10) == PAYLOAD

        def one_client() -> None:
            for _ in range(CALLS_PER_THREAD):
                echo(PAYLOAD)

        def one_round() -> None:
            for done in [pool.submit(one_client) for _ in range(CLIENT_THREADS)]:
                done.result()

        benchmark.group = f"grpc {security}: 8 client threads, one round of 400 calls"
        cpu = _cpu_per_call(
            server.pid,
            calls_per_round * (CONCURRENT_ROUNDS + 1),
            lambda: _pedantic(benchmark, one_round, rounds=CONCURRENT_ROUNDS, warmup_rounds=1),
        )
    if not benchmark.enabled:
        return
    stats = benchmark.stats.stats  # type: ignore[union-attr]
    benchmark.extra_info["server_cpu_us_per_call"] = round(cpu * 1e6, 2)
    group = f"grpc {security}: 8 threads, wall time/call"
    ratios.declare(group, note="round time / 400 calls: the inverse of throughput")
    ratios.add(
        group,
        _role(kind),
        kind,
        stats.median / calls_per_round,
        stats.min / calls_per_round,
    )
    group = f"grpc {security}: 8 threads, server CPU/call"
    ratios.declare(group, note=_NOTE_CPU)
    ratios.add(group, _role(kind), kind, cpu)


# -- 2. masked GetField through the real vault vs the gRPC call itself ---------------------

SUBJECT = "bench-subject-1"


@dataclass
class VaultUnderTest:
    server: ServerProcess
    client: VaultClient


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaultUnderTest]:
    data_dir = tmp_path_factory.mktemp("vault")
    server = ServerProcess.start(
        [
            sys.executable,
            "-m",
            "vault",
            "serve",
            "--init",
            "--data-dir",
            str(data_dir),
            "--listen",
            "127.0.0.1:0",
        ],
        tmp_path_factory.mktemp("vault-log") / "server.log",
    )
    try:
        with VaultClient.for_caller(data_dir, "registration", f"localhost:{server.port}") as client:
            client.vault.PutField(
                pb.PutFieldRequest(
                    subject_id=SUBJECT,
                    field="phone",
                    value=pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567")),
                ),
                timeout=30,
            )
            yield VaultUnderTest(server, client)
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("rep", "call"),
    [(rep, call) for rep in range(REPEATS) for call in ("health_check", "get_field_masked")],
    ids=lambda value: f"rep{value}" if isinstance(value, int) else str(value),
)
def test_vault_masked_read(
    benchmark: BenchmarkFixture, ratios: RatioTable, vault: VaultUnderTest, rep: int, call: str
) -> None:
    client = vault.client
    check = health_pb2.HealthCheckRequest(service="")
    get = pb.GetFieldRequest(subject_id=SUBJECT, field="phone", view=pb.VIEW_MASKED)

    def health() -> object:
        return client.health.Check(check)

    def get_field() -> object:
        return client.vault.GetField(get)

    fn = health if call == "health_check" else get_field
    answer = fn()
    if call == "get_field_masked":
        assert "*" in answer.view.masked  # type: ignore[attr-defined]
    benchmark.group = "vault over mTLS: GetField(VIEW_MASKED) vs health Check"
    cpu = _cpu_per_call(
        vault.server.pid,
        SEQUENTIAL_CALLS + WARMUP_CALLS,
        lambda: _pedantic(benchmark, fn, rounds=SEQUENTIAL_CALLS, warmup_rounds=WARMUP_CALLS),
    )
    if not benchmark.enabled:
        return
    benchmark.extra_info["server_cpu_us_per_call"] = round(cpu * 1e6, 2)
    role = "baseline" if call == "health_check" else "subject"
    ratios.add_benchmark("vault mTLS: latency", role, call, benchmark)
    ratios.declare("vault mTLS: server CPU/call", note=_NOTE_CPU)
    ratios.add("vault mTLS: server CPU/call", role, call, cpu)
