"""The database drops every connection under a write load: nothing acknowledged is lost.

Eight client threads write new subjects through a real server on
PostgreSQL while every server connection to the database is killed, three
times over (what a PostgreSQL restart or failover does to a client). A write
may fail while its connection dies, and then only with a retriable status;
every write that was acknowledged is there afterwards and opens, nothing is
half-written, and the server serves again without a restart.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from pg_databases import POSTGRES_ADMIN_URL, drop_postgres_database, new_postgres_database
from pii_vault_client.v1 import vault_pb2 as pb
from sqlalchemy import create_engine, text
from vault_server import VaultServer, policy_with_put_budget

RETRIABLE = {"OK", "UNAVAILABLE", "ABORTED"}


@pytest.fixture
def database_url() -> Iterator[str]:
    url = new_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


def kill_connections(database: str) -> int:
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as admin:
            killed = admin.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": database},
            ).scalar_one()
    finally:
        engine.dispose()
    return int(killed)


@pytest.mark.slow
def test_killed_database_connections_lose_no_acknowledged_write(
    start_vault_server: type[VaultServer], database_url: str, tmp_path: Path
) -> None:
    policy = policy_with_put_budget(tmp_path / "policy.toml")
    server = start_vault_server(
        tmp_path / "vault", database_url=database_url, env={"PII_VAULT_POLICY": str(policy)}
    )
    database = database_url.rsplit("/", 1)[1]
    codes: Counter[str] = Counter()
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def write() -> None:
        vault = server.client("registration").vault
        seen: Counter[str] = Counter()
        mine: list[str] = []
        while not stop.is_set():
            subject = f"fault-{uuid.uuid4()}"
            request = pb.PutFieldRequest(
                subject_id=subject,
                field="phone",
                value=pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567")),
            )
            try:
                vault.PutField(request, timeout=30)
                seen["OK"] += 1
                mine.append(subject)
            except grpc.RpcError as error:
                seen[error.code().name] += 1
        with lock:
            codes.update(seen)
            acknowledged.extend(mine)

    try:
        writers = [threading.Thread(target=write) for _ in range(8)]
        for writer in writers:
            writer.start()
        killed = 0
        for _ in range(3):
            time.sleep(0.7)
            killed += kill_connections(database)
        time.sleep(0.7)
        stop.set()
        for writer in writers:
            writer.join()
        assert killed > 0  # the fault really happened
        assert codes["OK"] > 20 and set(codes) <= RETRIABLE, codes

        reader = server.client("registration").vault
        for subject in acknowledged:  # every acknowledged write is whole and opens
            answer = reader.GetField(
                pb.GetFieldRequest(subject_id=subject, field="phone", view=pb.VIEW_MASKED),
                timeout=30,
            )
            assert answer.view.masked == "+372 **** **67"
    finally:
        assert server.stop() == 0, server.output
