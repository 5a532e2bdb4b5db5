"""``pii-vault keys migrate`` while a real server serves: no call fails, no restart needed.

A server on a default data directory (local keyring) serves PutField and
GetField to six client threads without pause while ``pii-vault keys migrate
--to URI`` moves every key to SoftHSM2 (PKCS#11) or to OpenBao (Transit) and
destroys the keyring. The server follows ``DIR/key-provider`` at its seal
checks (every second), so every call must succeed, and afterwards the same
server process wraps new keys under the new master key.
"""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from pii_vault_client.v1 import vault_pb2 as pb
from vault_server import VaultServer, clean_env, policy_with_put_budget, vault_command

from vault.keys.uri import provider_from_uri

THREADS = 6
# The server checks its provider (and DIR/key-provider) this often; the command waits
# two intervals after each rewrite of the file.
FAST_CHECKS = {"PII_VAULT_SEAL_CHECK_INTERVAL": "0.5"}
SUBJECTS = 30


def _put(client: object, subject: str, n: int) -> None:
    client.vault.PutField(  # type: ignore[attr-defined]
        pb.PutFieldRequest(
            subject_id=subject,
            field="phone",
            value=pb.FieldValue(phone=pb.PhoneNumber(number=f"+372 5{n % 1000:03d} 4567")),
        ),
        timeout=30,
    )


def _get(client: object, subject: str) -> str:
    answer = client.vault.GetField(  # type: ignore[attr-defined]
        pb.GetFieldRequest(subject_id=subject, field="phone", view=pb.VIEW_MASKED), timeout=30
    )
    return str(answer.view.masked)


def _kek_ids(data_dir: Path, subjects: list[str] | None = None) -> set[str]:
    db = sqlite3.connect(data_dir / "vault.db")
    try:
        if subjects is None:
            rows = db.execute("SELECT kek_id FROM subject_keys").fetchall()
        else:
            marks = ",".join("?" * len(subjects))
            rows = db.execute(
                f"SELECT kek_id FROM subject_keys WHERE subject_id IN ({marks})",  # noqa: S608
                subjects,
            ).fetchall()
    finally:
        db.close()
    return {row[0] for row in rows}


@pytest.fixture(params=["pkcs11", "transit"])
def target(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_uri"))


def test_clients_see_no_failed_call_while_the_keys_move_to_a_new_provider(
    start_vault_server: type[VaultServer],
    tmp_path: Path,
    target: str,
) -> None:
    data_dir = tmp_path / "vault"
    # The default put budget (100/s, bursts of 1,000) is not what this test is
    # about: six writers in a closed loop outrun it within seconds.
    policy = policy_with_put_budget(tmp_path / "policy.toml")
    # init: a local keyring, no DIR/key-provider
    server = start_vault_server(data_dir, env={**FAST_CHECKS, "PII_VAULT_POLICY": str(policy)})
    try:
        seed = server.client("registration")
        subjects = [f"seed-{n}" for n in range(SUBJECTS)]
        for n, subject in enumerate(subjects):
            _put(seed, subject, n)

        stop = threading.Event()
        calls: Counter[str] = Counter()
        failures: list[str] = []
        lock = threading.Lock()

        def work(worker: int) -> None:
            client = server.client("registration")
            n = 0
            while not stop.is_set():
                n += 1
                subject = f"w{worker}-{n % 40}" if n % 2 else subjects[(worker * 7 + n) % SUBJECTS]
                try:
                    _put(client, subject, n)
                    assert _get(client, subject) == "+372 **** **67"
                    outcome = "ok"
                except grpc.RpcError as error:
                    outcome = f"{error.code().name}: {error.details()}"
                with lock:
                    calls[outcome] += 2
                    if outcome != "ok":
                        failures.append(outcome)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(THREADS)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        started = time.monotonic()
        migrate = subprocess.run(
            vault_command("keys", "migrate", "--to", target, "--data-dir", str(data_dir)),
            capture_output=True,
            text=True,
            env={**clean_env(), **FAST_CHECKS},
            timeout=120,
            check=False,
        )
        took = time.monotonic() - started
        time.sleep(0.6)  # calls go on after the last switch too
        stop.set()
        for thread in threads:
            thread.join()
        assert migrate.returncode == 0, migrate.stderr
        print(f"\nmigrate to {target.split(':')[0]}: {took:.1f}s; {dict(calls)}\n{migrate.stderr}")
        assert failures == [], failures[:5]
        assert calls["ok"] > 100

        # The same server process, not restarted, now wraps under the new master key.
        new_kek = provider_from_uri(target).kek_id
        assert _kek_ids(data_dir) == {new_kek}
        after = server.client("registration")
        _put(after, "after-migration", 1)
        assert _get(after, "after-migration") == "+372 **** **67"
        assert _kek_ids(data_dir, ["after-migration"]) == {new_kek}
        status = after.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        assert "key provider switched" in server.output
        assert "vault sealed" not in server.output
    finally:
        assert server.stop() == 0, server.output
