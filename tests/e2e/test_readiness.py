"""Readiness follows the database and the key provider; liveness only the process.

A server on PostgreSQL answers SERVING on both. When its database stops
taking connections, readiness (the empty health name, what load balancers
ask) turns NOT_SERVING within a few checks while liveness stays SERVING, so
an orchestrator takes the replica out of rotation without restarting it;
when the database takes connections again the replica is ready again by
itself. The exec probe ``pii-vault health --as probe`` reports the same,
with the ``probe`` certificate that opens no data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2
from pg_databases import POSTGRES_ADMIN_URL, drop_postgres_database, new_postgres_database
from sqlalchemy import create_engine, text
from vault_server import VaultServer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def status(server: VaultServer, service: str) -> int:
    answer = server.client("probe").health.Check(
        health_pb2.HealthCheckRequest(service=service), timeout=10
    )
    return int(answer.status)


def wait_for(server: VaultServer, service: str, wanted: int) -> None:
    deadline = time.monotonic() + 20
    while status(server, service) != wanted:
        assert time.monotonic() < deadline, f"{service!r} never became {wanted}:\n{server.output}"
        time.sleep(0.1)


def allow_connections(database: str, allowed: bool) -> None:
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as admin:
            admin.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {allowed}'))
            if not allowed:
                admin.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": database},
                )
    finally:
        engine.dispose()


@pytest.fixture
def database_url() -> Iterator[str]:
    url = new_postgres_database()
    try:
        yield url
    finally:
        allow_connections(url.rsplit("/", 1)[1], True)
        drop_postgres_database(url)


def test_a_lost_database_makes_the_replica_unready_but_alive_and_it_recovers(
    start_vault_server: type[VaultServer],
    run_vault: Callable[..., object],
    database_url: str,
    tmp_path: Path,
) -> None:
    server = start_vault_server(tmp_path / "vault", database_url=database_url)
    database = database_url.rsplit("/", 1)[1]
    probe = ["health", "--as", "probe", "--target", server.target, "--data-dir"]
    probe.append(str(server.data_dir))
    try:
        assert status(server, "") == SERVING and status(server, "liveness") == SERVING
        assert run_vault(*probe).returncode == 0  # type: ignore[attr-defined]

        allow_connections(database, False)
        wait_for(server, "", NOT_SERVING)
        assert status(server, "liveness") == SERVING
        assert run_vault(*probe).returncode == 1  # type: ignore[attr-defined]
        live = run_vault(*probe, "--service", "liveness")
        assert live.returncode == 0  # type: ignore[attr-defined]

        allow_connections(database, True)
        wait_for(server, "", SERVING)
    finally:
        allow_connections(database, True)
        assert server.stop() == 0, server.output
    assert "database unreachable" in server.output and "database reachable again" in server.output
