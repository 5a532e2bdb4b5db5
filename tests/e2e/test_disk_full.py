"""SQLite on a full disk: writes are refused cleanly, nothing is corrupt, nothing acknowledged lost.

The server runs with every file it writes capped (RLIMIT_FSIZE a little above
the database's size: what a full file system does to a writer). It is
written to until writes fail. Each failure is UNAVAILABLE, never INTERNAL or
a half-written field; reads go on; the database passes SQLite's integrity
check afterwards; and once the cap is gone (the disk has room again) every
acknowledged write is there.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from pii_vault_client.v1 import vault_pb2 as pb
from vault_server import VaultServer

from vault.client import error_reason

ROOM = 1024 * 1024  # bytes the files may grow by
PHONE = "+372 5123 4567"


def put(vault: object, subject: str) -> None:
    vault.PutField(  # type: ignore[attr-defined]
        pb.PutFieldRequest(
            subject_id=subject,
            field="phone",
            value=pb.FieldValue(phone=pb.PhoneNumber(number=PHONE)),
        ),
        timeout=30,
    )


def masked(vault: object, subject: str) -> str:
    answer = vault.GetField(  # type: ignore[attr-defined]
        pb.GetFieldRequest(subject_id=subject, field="phone", view=pb.VIEW_MASKED), timeout=30
    )
    return str(answer.view.masked)


@pytest.mark.slow
def test_a_full_disk_refuses_writes_cleanly_and_loses_nothing_acknowledged(
    start_vault_server: type[VaultServer], run_vault: Callable[..., object], tmp_path: Path
) -> None:
    data_dir = tmp_path / "vault"
    assert run_vault("init", "--data-dir", str(data_dir)).returncode == 0  # type: ignore[attr-defined]
    largest = max(p.stat().st_size for p in data_dir.rglob("*") if p.is_file())
    server = start_vault_server(data_dir, init=False, max_file_bytes=largest + ROOM)
    acknowledged: list[str] = []
    refused: Counter[str] = Counter()
    try:
        vault = server.client("registration").vault
        for _ in range(20_000):
            subject = f"full-{uuid.uuid4()}"
            try:
                put(vault, subject)
                acknowledged.append(subject)
            except grpc.RpcError as error:
                refused[f"{error.code().name} {error_reason(error)}"] += 1
                if sum(refused.values()) >= 5:
                    break
        assert acknowledged, "nothing was written before the disk filled"
        assert refused, "the disk never filled"
        assert set(refused) == {"UNAVAILABLE UNAVAILABLE"}, refused  # code, then reason
        assert masked(vault, acknowledged[0]) == "+372 **** **67"  # reads go on
    finally:
        assert server.stop() == 0, server.output

    with sqlite3.connect(data_dir / "vault.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    again = start_vault_server(data_dir, init=False)  # room on the disk again
    try:
        reader = again.client("registration").vault
        for subject in acknowledged[-50:] + acknowledged[:50]:
            assert masked(reader, subject) == "+372 **** **67"
        put(reader, f"full-{uuid.uuid4()}")  # and writes work again
    finally:
        assert again.stop() == 0, again.output
