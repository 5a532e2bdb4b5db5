"""Connections spread over replicas and move when one goes: keepalive, connection age, drain.

Three replicas share one PostgreSQL database and one key set. A client that
balances round robin over the three reaches every one of them (each writes
its own audit sink, which names the reads it served). The server closes a
connection once it reaches ``PII_VAULT_MAX_CONNECTION_AGE`` (GOAWAY, then a
grace), so a client pinned to one replica reconnects and would be spread
again by a load balancer. A replica stopped mid-run with SIGTERM costs the
round-robin client no failed call: it drains with UNAVAILABLE, which the
client's retry policy retries on another replica.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from pg_databases import drop_postgres_database, new_postgres_database
from pii_vault_client.v1 import vault_pb2 as pb
from vault_server import VaultServer

from vault.client import VaultClient

SHARED_FILES = ("keyring.json", "policy.toml", "receipt-signing.key", "receipt-signing.pub")
RETRY_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        # Client-side health checking (Health/Watch): a replica that turns
        # NOT_SERVING on SIGTERM is taken out of the rotation during its drain delay.
        "healthCheckConfig": {"serviceName": ""},
        "methodConfig": [
            {
                "name": [{"service": "vault.v1.VaultService"}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


@pytest.fixture
def replicas(
    tmp_path: Path, start_vault_server: type[VaultServer], run_vault: Callable[..., object]
) -> Iterator[list[VaultServer]]:
    database_url = new_postgres_database()
    source = tmp_path / "source"
    assert run_vault("init", "--data-dir", str(source)).returncode == 0  # type: ignore[attr-defined]
    servers: list[VaultServer] = []
    try:
        for name in ("a", "b", "c"):
            replica = tmp_path / name
            replica.mkdir(mode=0o700)
            for shared in SHARED_FILES:
                shutil.copy2(source / shared, replica / shared)
            shutil.copytree(source / "tls", replica / "tls")
            env = {
                "PII_VAULT_AUDIT_JSONL": str(replica / "audit.jsonl"),
                "PII_VAULT_MAX_CONNECTION_AGE": "1",
                "PII_VAULT_DRAIN_DELAY": "0.5",
            }
            servers.append(
                start_vault_server(replica, database_url=database_url, init=False, env=env)
            )
        yield servers
    finally:
        codes = [(server.stop(), server.output) for server in servers]
        drop_postgres_database(database_url)
    for code, output in codes:
        assert code == 0, output


def balanced_client(servers: list[VaultServer]) -> VaultClient:
    tls = servers[0].data_dir / "tls"
    target = "ipv4:" + ",".join(f"127.0.0.1:{s.port}" for s in servers)
    return VaultClient(
        target,
        ca_cert=(tls / "ca.crt").read_bytes(),
        client_cert=(tls / "clients" / "registration.crt").read_bytes(),
        client_key=(tls / "clients" / "registration.key").read_bytes(),
        options=[
            ("grpc.ssl_target_name_override", "localhost"),
            ("grpc.service_config", RETRY_CONFIG),
            ("grpc.enable_retries", 1),
        ],
    )


def reads_served(server: VaultServer, subject: str) -> int:
    sink = server.data_dir / "audit.jsonl"
    if not sink.exists():
        return 0
    events = [json.loads(line) for line in sink.read_text().splitlines() if line.strip()]
    return sum(e["action"] == "get" and e["subject_id"] == subject for e in events)


def put(client: VaultClient, subject: str) -> None:
    client.vault.PutField(
        pb.PutFieldRequest(
            subject_id=subject,
            field="phone",
            value=pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567")),
        ),
        timeout=30,
    )


@pytest.mark.slow
def test_a_round_robin_client_reaches_every_replica_and_loses_none_when_one_stops(
    replicas: list[VaultServer],
) -> None:
    subject = f"rr-{uuid.uuid4()}"
    with balanced_client(replicas) as client:
        put(client, subject)
        read = pb.GetFieldRequest(subject_id=subject, field="phone", view=pb.VIEW_MASKED)
        for _ in range(60):
            client.vault.GetField(read, timeout=30)
        deadline = time.monotonic() + 15  # masked reads reach the sink in batches
        while not all(reads_served(s, subject) for s in replicas):
            assert time.monotonic() < deadline, [reads_served(s, subject) for s in replicas]
            time.sleep(0.2)

        codes: Counter[str] = Counter()
        stop = threading.Event()

        def keep_reading() -> None:
            while not stop.is_set():
                try:
                    client.vault.GetField(read, timeout=30)
                    codes["OK"] += 1
                except grpc.RpcError as error:
                    codes[error.code().name] += 1

        readers = [threading.Thread(target=keep_reading) for _ in range(8)]
        for reader in readers:
            reader.start()
        time.sleep(1.0)
        assert replicas[2].stop() == 0, replicas[2].output
        time.sleep(1.5)
        stop.set()
        for reader in readers:
            reader.join()
    assert codes["OK"] > 100 and set(codes) == {"OK"}, codes


def test_a_connection_past_its_maximum_age_is_closed_and_the_client_reconnects(
    start_vault_server: type[VaultServer], tmp_path: Path
) -> None:
    server = start_vault_server(tmp_path / "vault", env={"PII_VAULT_MAX_CONNECTION_AGE": "1"})
    client = server.client("registration")
    states: list[grpc.ChannelConnectivity] = []
    client.channel.subscribe(states.append, try_to_connect=True)
    subject = f"age-{uuid.uuid4()}"
    put(client, subject)
    read = pb.GetFieldRequest(subject_id=subject, field="phone", view=pb.VIEW_MASKED)
    ended = time.monotonic() + 4
    while time.monotonic() < ended:
        client.vault.GetField(read, timeout=30)  # never fails: GOAWAY lets calls finish
        time.sleep(0.05)
    ready = [i for i, s in enumerate(states) if s == grpc.ChannelConnectivity.READY]
    assert server.stop() == 0, server.output
    assert len(ready) >= 3, states  # connected, then again after each age-out
