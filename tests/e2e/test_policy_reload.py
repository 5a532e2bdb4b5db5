"""SIGHUP reloads ``DIR/policy.toml`` in the running server: atomically, under load, safely.

Each test starts a server of its own, because each rewrites its policy. The
server's stdout and stderr go to ``DIR/server.log``; the tests read the
reload lines from there. Waits poll against deadlines.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status
from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import VaultClient
from vault.policy import DEFAULT_POLICY_TOML

if TYPE_CHECKING:
    from vault_server import VaultServer

pytestmark = pytest.mark.e2e

DEADLINE = 20.0
RPC_TIMEOUT = 10.0
PHONE = "+372 5123 4567"
VISA_PAN = "4242424242424242"
RELOADED = "policy reloaded from"
NOT_RELOADED = "policy not reloaded, keeping the old one"

# The change: checkout may now read phones (masked) -- a new grant, callers.checkout.grants[4]
# -- and registration may no longer ask "is this phone registered?". The load
# below (registration and checkout putting and reading their own fields) is
# allowed under both policies.
CHANGED_POLICY = (
    DEFAULT_POLICY_TOML.replace('actions = ["put", "get", "find"]', 'actions = ["put", "get"]')
    + '\n[[callers.checkout.grants]]\nactions = ["get"]\nfield_types = ["phone"]\n'
)
assert CHANGED_POLICY.count('actions = ["put", "get"]\n') == 1


def phone() -> pb.FieldValue:
    return pb.FieldValue(phone=pb.PhoneNumber(number=PHONE))


def card() -> pb.FieldValue:
    return pb.FieldValue(card=pb.PaymentCard(pan=VISA_PAN, exp_month=12, exp_year=2030))


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def allowed(call: Callable[[], object]) -> bool:
    """Whether the policy allows the call; any other error fails the test.

    Denied is PERMISSION_DENIED, or NOT_FOUND for a field that exists but that
    no grant of the caller could read (answered as if missing, so a denial does
    not tell what exists). A search over the caller's search budget
    (RESOURCE_EXHAUSTED) was allowed by the policy, which is decided first.
    """
    try:
        call()
    except grpc.RpcError as error:
        if error.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND):
            return False
        if error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
            # Over the denial budget means denied; over the search budget, allowed.
            return limit_reason(error) != "DENIAL_RATE_LIMITED"
        raise
    return True


def limit_reason(error: grpc.RpcError) -> str:
    """The ``google.rpc.ErrorInfo`` reason of a RESOURCE_EXHAUSTED answer: which limit."""
    status = rpc_status.from_call(cast(grpc.Call, error))
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


class Probes:
    """The two calls the change flips: one deny → allow, one allow → deny."""

    def __init__(self, server: VaultServer, subject: str) -> None:
        self.checkout = server.client("checkout")
        self.registration = server.client("registration")
        self.subject = subject
        self.registration.vault.PutField(
            pb.PutFieldRequest(subject_id=subject, field="phone", value=phone()),
            timeout=RPC_TIMEOUT,
        )

    def checkout_reads_phone(self) -> bool:
        return allowed(
            lambda: self.checkout.vault.GetField(
                pb.GetFieldRequest(subject_id=self.subject, field="phone"), timeout=RPC_TIMEOUT
            )
        )

    def registration_finds_phone(self) -> bool:
        return allowed(
            lambda: self.registration.vault.FindSubjects(
                pb.FindSubjectsRequest(value=phone()), timeout=RPC_TIMEOUT
            )
        )

    def state(self) -> tuple[bool, bool]:
        return self.checkout_reads_phone(), self.registration_finds_phone()


DEFAULT_STATE = (False, True)
CHANGED_STATE = (True, False)


def sighup(server: VaultServer, expect_line: str) -> None:
    """Send one SIGHUP and wait for the one log line it must produce."""
    before = server.output.count(expect_line)
    server.process.send_signal(signal.SIGHUP)
    wait_for(
        f"{expect_line!r} in the server log",
        lambda: server.output.count(expect_line) > before,
    )
    assert server.process.poll() is None, server.output


class Load:
    """Four client threads putting and reading fields until stopped, recording every failure.

    Two play registration (phones), two play checkout (cards). Each iteration
    also makes the one call the policy change flips for its caller; only that
    call may answer PERMISSION_DENIED, and both of its outcomes are counted.
    """

    def __init__(self, server: VaultServer, probes: Probes) -> None:
        self.failures: list[str] = []
        self.iterations = [0, 0, 0, 0]
        self.flipped: list[dict[bool, int]] = [{True: 0, False: 0} for _ in range(4)]
        self._stop = threading.Event()
        self._probes = probes
        self._clients = [
            server.client("registration" if number % 2 == 0 else "checkout") for number in range(4)
        ]
        self._threads = [
            threading.Thread(target=self._run, args=(number,), name=f"load-{number}")
            for number in range(4)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=DEADLINE)
        assert not any(thread.is_alive() for thread in self._threads)

    def settle(self, iterations: int = 3) -> None:
        """Wait until every thread has finished ``iterations`` more full rounds."""
        marks = list(self.iterations)
        wait_for(
            "the load threads to go round",
            lambda: all(
                now >= mark + iterations for now, mark in zip(self.iterations, marks, strict=True)
            ),
        )

    def _run(self, number: int) -> None:
        client = self._clients[number]
        subject = f"load-{number}-{os.getpid()}"
        registration = number % 2 == 0
        field, value = ("phone", phone()) if registration else ("card.primary", card())
        while not self._stop.is_set():
            try:
                client.vault.PutField(
                    pb.PutFieldRequest(subject_id=subject, field=field, value=value),
                    timeout=RPC_TIMEOUT,
                )
                for view in (pb.VIEW_MASKED, pb.VIEW_TOKEN):
                    client.vault.GetField(
                        pb.GetFieldRequest(subject_id=subject, field=field, view=view),
                        timeout=RPC_TIMEOUT,
                    )
            except grpc.RpcError as error:
                self.failures.append(
                    f"load-{number} {field}: {error.code().name} {error.details()}"
                )
            try:
                if registration:
                    ok = allowed(
                        lambda: client.vault.FindSubjects(
                            pb.FindSubjectsRequest(value=phone()), timeout=RPC_TIMEOUT
                        )
                    )
                else:
                    ok = allowed(
                        lambda: client.vault.GetField(
                            pb.GetFieldRequest(subject_id=self._probes.subject, field="phone"),
                            timeout=RPC_TIMEOUT,
                        )
                    )
                self.flipped[number][ok] += 1
            except grpc.RpcError as error:
                self.failures.append(f"load-{number} flip: {error.code().name} {error.details()}")
            self.iterations[number] += 1


@pytest.fixture
def server(start_vault_server: type[VaultServer], tmp_path: Path) -> Iterator[VaultServer]:
    """A server of this test's own: its policy file is the test's to rewrite."""
    server = start_vault_server(tmp_path / "vault")
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, f"the server exited with {code}:\n{server.output}"


@pytest.mark.slow
def test_sighup_under_load_swaps_the_policy_and_fails_no_call(server: VaultServer) -> None:
    policy_file = server.data_dir / "policy.toml"
    assert policy_file.read_text(encoding="utf-8") == DEFAULT_POLICY_TOML
    probes = Probes(server, "reload-probe")
    assert probes.state() == DEFAULT_STATE

    with Load(server, probes) as load:
        load.settle()
        for _round in range(3):
            policy_file.write_text(CHANGED_POLICY, encoding="utf-8")
            sighup(server, RELOADED)
            assert probes.state() == CHANGED_STATE  # in force as soon as the line is logged
            load.settle()
            sighup(server, RELOADED)  # the same file again: a no-op reload under load
            load.settle()
            policy_file.write_text(DEFAULT_POLICY_TOML, encoding="utf-8")
            sighup(server, RELOADED)
            assert probes.state() == DEFAULT_STATE
            load.settle()

    assert load.failures == [], "\n".join(load.failures)
    assert min(load.iterations) >= 3 * 3 * 3
    for number, outcomes in enumerate(load.flipped):
        assert outcomes[True] > 0 and outcomes[False] > 0, (number, outcomes)
    assert server.output.count(RELOADED) == 9
    assert NOT_RELOADED not in server.output


@pytest.mark.parametrize(
    ("bad_text", "named_place"),
    [
        # The change would flip the probes if any of it were applied.
        (
            CHANGED_POLICY + '\n[[callers.checkout.grants]]\nactions = ["grab"]\n',
            "callers.checkout.grants[5].actions: unknown action 'grab'",
        ),
        (
            CHANGED_POLICY + "\n[[callers.checkout.grants]\n",
            f"policy: invalid TOML: Expected ']]' at the end of an array declaration"
            f" (at line {CHANGED_POLICY.count(chr(10)) + 2}, column",
        ),
        (
            CHANGED_POLICY.replace('views = ["plaintext"]', 'views = ["plaintxt"]', 1),
            "callers.checkout.grants[2].views: unknown view 'plaintxt'",
        ),
        (None, "No such file or directory"),
    ],
    ids=["unknown-action", "bad-toml", "unknown-view", "missing-file"],
)
def test_sighup_with_a_bad_file_keeps_serving_the_old_policy(
    server: VaultServer, bad_text: str | None, named_place: str
) -> None:
    policy_file = server.data_dir / "policy.toml"
    probes = Probes(server, "bad-reload-probe")
    assert probes.state() == DEFAULT_STATE

    if bad_text is None:
        policy_file.unlink()
    else:
        policy_file.write_text(bad_text, encoding="utf-8")
    sighup(server, NOT_RELOADED)

    [line] = [line for line in server.output.splitlines() if NOT_RELOADED in line]
    assert " ERROR " in line
    assert str(policy_file) in line
    assert named_place in line
    assert probes.state() == DEFAULT_STATE  # nothing of the bad file applied
    health = server.client("admin").health.Check(
        health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING

    # Fixing the file and signalling again applies it.
    policy_file.write_text(CHANGED_POLICY, encoding="utf-8")
    sighup(server, RELOADED)
    assert probes.state() == CHANGED_STATE
    assert server.process.poll() is None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve_two_workers(data_dir: Path, log_path: Path, listen: str) -> subprocess.Popen[bytes]:
    """``pii-vault serve --workers 2``, output to ``log_path``, in a process group of its own."""
    command = [
        sys.executable, "-m", "vault", "serve", "--init", "--data-dir", str(data_dir),
        "--listen", listen, "--workers", "2",
    ]  # fmt: skip
    env = {name: value for name, value in os.environ.items() if not name.startswith("VAULT_")}
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group: teardown reaches the workers too
        )


@pytest.mark.slow
def test_sighup_reaches_every_worker(tmp_path: Path) -> None:
    """With --workers the parent forwards SIGHUP to each worker instead of dying of it."""
    data_dir = tmp_path / "vault"
    log_path = tmp_path / "server.log"
    port = _free_port()
    parent = _serve_two_workers(data_dir, log_path, f"127.0.0.1:{port}")

    def output() -> str:
        return log_path.read_bytes().decode("utf-8", errors="replace")

    try:
        wait_for(
            "both workers to listen",
            lambda: len(re.findall(r"^listening on ", output(), re.MULTILINE)) == 2,
            timeout=60,
        )
        (data_dir / "policy.toml").write_text(CHANGED_POLICY, encoding="utf-8")
        parent.send_signal(signal.SIGHUP)
        wait_for("both workers to reload", lambda: output().count(RELOADED) == 2)
        assert parent.poll() is None, output()
        # Fresh connections, spread by the kernel over both workers: each has the new policy.
        for _ in range(6):
            with VaultClient.for_caller(data_dir, "registration", f"localhost:{port}") as client:
                assert not allowed(
                    lambda: client.vault.FindSubjects(
                        pb.FindSubjectsRequest(value=phone()), timeout=RPC_TIMEOUT
                    )
                )
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=60) == 0, output()
    finally:
        # The whole group: workers outlive a parent that died of the signal.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


@pytest.mark.slow
def test_workers_asked_for_any_free_port_all_listen_on_the_same_one(tmp_path: Path) -> None:
    """``--listen HOST:0 --workers 2`` picks one port for all workers, not one each."""
    data_dir = tmp_path / "vault"
    log_path = tmp_path / "server.log"
    parent = _serve_two_workers(data_dir, log_path, "127.0.0.1:0")

    def ports() -> list[str]:
        text = log_path.read_bytes().decode("utf-8", errors="replace")
        return re.findall(r"^listening on 127\.0\.0\.1:(\d+)$", text, re.MULTILINE)

    try:
        wait_for("both workers to listen", lambda: len(ports()) == 2, timeout=60)
        assert len(set(ports())) == 1, ports()
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=60) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
