"""The real ``pii-vault serve`` process on a real socket, over mTLS, as test fixtures.

A plain module (like ``pg_databases``) so that every suite that attacks or
exercises the running server -- ``tests/e2e`` and ``tests/adversarial`` --
imports the same fixtures into its ``conftest.py``.

The server is started exactly as an operator would start it
(``python -m vault serve --init --data-dir DIR --listen 127.0.0.1:0``); the
kernel picks a free port and the server announces it on its ``listening on``
line, so there is no window in which another process could take the port.
Everything the process writes (stdout and stderr) goes to ``DIR/server.log``,
which the leak tests scan. Teardown sends SIGTERM and asserts exit status 0.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import pytest
from pg_databases import drop_postgres_database, new_postgres_database

from vault.client import VaultClient

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
_LISTENING = re.compile(r"^listening on (?P<host>\S+):(?P<port>\d+)$", re.MULTILINE)


def clean_env() -> dict[str, str]:
    """The test runner's environment without any ``PII_VAULT_*`` or (deprecated) ``VAULT_*``
    setting that could leak in."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("VAULT_", "PII_VAULT_"))
    }


def vault_command(*args: str) -> list[str]:
    """``pii-vault ARGS`` run with the interpreter that runs the tests."""
    return [sys.executable, "-m", "vault", *args]


class VaultServer:
    """One running ``pii-vault serve`` process and the way to call it."""

    def __init__(
        self,
        data_dir: Path,
        *,
        database_url: str | None = None,
        init: bool = True,
        env: dict[str, str] | None = None,
        max_file_bytes: int | None = None,
    ) -> None:
        """``max_file_bytes`` caps every file the server writes (RLIMIT_FSIZE): a full disk."""
        self.data_dir = data_dir
        self.database_url = database_url
        self.log_path = data_dir / "server.log"
        self.port = 0
        self.returncode: int | None = None
        self._clients: list[VaultClient] = []
        data_dir.mkdir(parents=True, exist_ok=True)
        args = ["serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"]
        if init:
            args.append("--init")
        if database_url:
            args += ["--database-url", database_url]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                vault_command(*args),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**clean_env(), **(env or {})},
                preexec_fn=None if max_file_bytes is None else _cap_files(max_file_bytes),
            )
        try:
            self.port = self._wait_until_listening()
        except BaseException:
            self.process.kill()
            self.process.wait()
            raise

    def _wait_until_listening(self) -> int:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            found = _LISTENING.search(self.output)
            if found:
                return int(found.group("port"))
            if self.process.poll() is not None:
                pytest.fail(
                    f"vault server exited with {self.process.returncode} before listening:\n"
                    f"{self.output}"
                )
            time.sleep(0.05)
        pytest.fail(f"vault server did not listen within {STARTUP_TIMEOUT}s:\n{self.output}")

    @property
    def target(self) -> str:
        return f"localhost:{self.port}"

    @property
    def output(self) -> str:
        """Everything the server process wrote to stdout and stderr so far."""
        return self.log_path.read_bytes().decode("utf-8", errors="replace")

    def client(self, caller: str) -> VaultClient:
        """A client presenting ``caller``'s certificate from the dev PKI; closed on stop."""
        # retry=None: tests observe the server's own answers, not the client's retries.
        client = VaultClient.for_caller(self.data_dir, caller, self.target, retry=None)
        self._clients.append(client)
        return client

    def stop(self) -> int:
        """SIGTERM the server and wait for it; returns (and remembers) its exit status."""
        if self.returncode is None:
            for client in self._clients:
                client.close()
            self._clients.clear()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.returncode = self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"vault server ignored SIGTERM for {STOP_TIMEOUT}s:\n{self.output}")
        return self.returncode


def policy_with_put_budget(path: Path, caller: str = "registration") -> Path:
    """The default policy, written to ``path``, with ``caller``'s put budget lifted.

    For load tests whose subject is not the budget: closed-loop writers outrun
    the default 100 puts/s (bursts of 1,000) within seconds and are answered
    RESOURCE_EXHAUSTED, which is the budget working.
    """
    default = (resources.files("vault.policy") / "default_policy.toml").read_text("utf-8")
    path.write_text(
        default + f"\n[limits.callers.{caller}]\nput_per_second = 100000.0\nput_burst = 100000\n",
        encoding="utf-8",
    )
    return path


def _cap_files(limit: int) -> Callable[[], None]:
    def cap() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return cap


def _serve(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, store: str
) -> Iterator[VaultServer]:
    """Start a server on ``store`` ("sqlite" or "postgres"); stop it and check exit 0."""
    # The function-scoped ``postgres_url`` fixture cannot feed a module-scoped
    # server, so its two helpers are called directly: same probe, same skip reason.
    database_url = new_postgres_database() if store == "postgres" else None
    try:
        server = VaultServer(tmp_path_factory.mktemp(f"vault-{store}"), database_url=database_url)
        try:
            yield server
        finally:
            code = server.stop()
        assert code == 0, f"vault server exited with {code}:\n{server.output}"
    finally:
        if database_url is not None:
            drop_postgres_database(database_url)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def vault_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VaultServer]:
    """A server per test module and store: the same tests run on SQLite and PostgreSQL."""
    yield from _serve(request, tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def sqlite_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VaultServer]:
    """A server on the embedded SQLite store, whose files the tests can open."""
    yield from _serve(request, tmp_path_factory, "sqlite")


@pytest.fixture(scope="session")
def start_vault_server() -> type[VaultServer]:
    """Start a server of one's own: ``start_vault_server(data_dir, init=False, env={...})``."""
    return VaultServer


@pytest.fixture(scope="session")
def run_vault() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``pii-vault ARGS`` to completion: ``run_vault("init", ..., stdin="...")``."""

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            vault_command(*args),
            input=stdin,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
            check=False,
        )

    return run


@pytest.fixture
def new_subject_id() -> Callable[[], str]:
    """Fresh subject ids, so that tests sharing a server never see each other's data."""
    return lambda: f"e2e-{uuid.uuid4()}"


@pytest.fixture
def subject_id(new_subject_id: Callable[[], str]) -> str:
    return new_subject_id()
