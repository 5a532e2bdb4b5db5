"""``kill -9`` in the middle of shredding: every subject is shredded whole or not at all.

Forty subjects are shredded from eight threads and the server is killed
with SIGKILL while the shreds are in flight. On the files left behind (the
embedded SQLite store, one transaction per shred) each subject is in one of
two states only: shredded (tombstone, no field, no key, a receipt) or
untouched (active, its field and keys, no receipt); every shred the client
saw acknowledged is complete; and a restarted server answers a retried shred
with the same receipt or a new complete one.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import grpc
from pii_vault_client.v1 import vault_pb2 as pb
from vault_server import VaultServer

SUBJECTS = 40


def state_of(db: sqlite3.Connection, subject: str) -> tuple[str, int, int, int, int]:
    row = db.execute("SELECT state FROM subjects WHERE subject_id = ?", (subject,)).fetchone()
    count = lambda table: db.execute(  # noqa: E731
        f"SELECT count(*) FROM {table} WHERE subject_id = ?",  # noqa: S608 (fixed names)
        (subject,),
    ).fetchone()[0]
    return (
        row[0] if row else "none",
        count("fields"),
        count("subject_keys"),
        count("data_keys"),
        count("shred_receipts"),
    )


def test_a_server_killed_mid_shred_leaves_each_subject_shredded_whole_or_untouched(
    start_vault_server: type[VaultServer], tmp_path: Path
) -> None:
    data_dir = tmp_path / "vault"
    server = start_vault_server(data_dir)
    subjects = [f"kill-{uuid.uuid4()}" for _ in range(SUBJECTS)]
    writer = server.client("registration").vault
    for subject in subjects:
        writer.PutField(
            pb.PutFieldRequest(
                subject_id=subject,
                field="phone",
                value=pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567")),
            ),
            timeout=30,
        )
    acknowledged: list[str] = []
    lock = threading.Lock()

    def shred(mine: list[str]) -> None:
        deleter = server.client("deletion").vault
        for subject in mine:
            try:
                deleter.ShredSubject(
                    pb.ShredSubjectRequest(
                        subject_id=subject, reason="closed", request_id=f"req-{subject}"
                    ),
                    timeout=30,
                )
            except grpc.RpcError:
                return  # the server is gone
            with lock:
                acknowledged.append(subject)

    threads = [threading.Thread(target=shred, args=(subjects[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < SUBJECTS // 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    server.returncode = 0  # killed on purpose; nothing to stop
    for thread in threads:
        thread.join()
    assert 0 < len(acknowledged) < SUBJECTS, "the kill must land while shreds are in flight"

    with sqlite3.connect(data_dir / "vault.db") as db:
        states = {subject: state_of(db, subject) for subject in subjects}
    whole = ("shredded", 0, 0, 0, 1)
    untouched = ("active", 1, 1, 1, 0)
    assert {s: v for s, v in states.items() if v not in (whole, untouched)} == {}
    assert all(states[s] == whole for s in acknowledged)

    again = start_vault_server(data_dir, init=False)
    try:
        deleter = again.client("deletion").vault
        for subject in subjects:
            receipt = deleter.ShredSubject(
                pb.ShredSubjectRequest(
                    subject_id=subject, reason="closed", request_id=f"req-{subject}"
                ),
                timeout=30,
            ).receipt
            assert receipt.subject_id == subject
    finally:
        assert again.stop() == 0, again.output
    with sqlite3.connect(data_dir / "vault.db") as db:
        assert all(state_of(db, s) == whole for s in subjects)
