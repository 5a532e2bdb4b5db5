"""A signal reaches the server whichever of its threads the kernel hands it to.

The kernel delivers a process-directed signal to any thread that does not
block it; Python runs the handler later, in the main thread. A server whose
main thread slept in a plain ``Event.wait()`` never woke up for a SIGTERM
that landed on one of gRPC's threads, and ignored it (seen now and then in
CI as "vault server ignored SIGTERM for 30s"). These tests aim the signal at
a thread other than the main one, with ``tgkill``, as the kernel sometimes
does on its own.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path

import pytest
from grpc_health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from vault_server import VaultServer

SYS_TGKILL = {"x86_64": 234, "aarch64": 131}.get(os.uname().machine)
pytestmark = pytest.mark.skipif(
    SYS_TGKILL is None or not Path("/proc/self/task").exists(),
    reason="needs Linux tgkill and /proc to aim a signal at one thread",
)


def signal_a_worker_thread(pid: int, signum: int) -> int:
    """Send ``signum`` to one thread of ``pid`` that is not its main thread; returns its id."""
    threads = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    assert threads, "the server runs gRPC threads besides the main one"
    libc = ctypes.CDLL(None, use_errno=True)
    target = threads[-1]
    assert libc.syscall(SYS_TGKILL, pid, target, signum) == 0, os.strerror(ctypes.get_errno())
    return target


def test_sigterm_delivered_to_a_grpc_thread_stops_the_server(
    start_vault_server: type[VaultServer], tmp_path: Path
) -> None:
    server = start_vault_server(tmp_path / "vault")
    answer = server.client("registration").health.Check(HealthCheckRequest(), timeout=10)
    assert answer.status == HealthCheckResponse.SERVING
    signal_a_worker_thread(server.process.pid, signal.SIGTERM)
    try:
        code = server.process.wait(timeout=15)
    except Exception:
        server.process.kill()
        server.process.wait()
        pytest.fail(
            f"the server ignored a SIGTERM that landed on a worker thread:\n{server.output}"
        )
    server.returncode = code
    assert code == 0, server.output
    assert "draining" in server.output


def test_sighup_delivered_to_a_grpc_thread_reloads_the_policy(
    start_vault_server: type[VaultServer], tmp_path: Path
) -> None:
    server = start_vault_server(tmp_path / "vault")
    try:
        signal_a_worker_thread(server.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "policy reloaded" not in server.output:
            assert time.monotonic() < deadline, f"SIGHUP was never handled:\n{server.output}"
            time.sleep(0.05)
    finally:
        assert server.stop() == 0, server.output
