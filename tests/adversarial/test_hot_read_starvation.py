"""More concurrent masked reads than RPC threads, sustained: every one is answered.

A hot read pinned one pooled connection to each RPC thread; on SQLite the
pool held 15 against 16 threads, so once all threads had run the sixteenth
waited out the pool timeout twice on every read and answered UNAVAILABLE,
for the life of the process and without a log line (seen by clients as
DEADLINE_EXCEEDED). This keeps three times as many calls in flight as the
server has RPC threads, from a pool of gRPC clients, for a while, and counts
every answer that is not OK.

The normal run lasts ``SHORT_SECONDS`` per store; ``PII_VAULT_SOAK_SECONDS``
makes it a soak test (e.g. 600 for ten minutes).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from pii_vault_client.v1 import vault_pb2 as pb
from vault_server import VaultServer

from vault.client import VaultClient
from vault.config import Settings

# A starved call waits out the 30 s pool timeout twice, so it fails at CALL_TIMEOUT
# whenever the run is longer than that: the run need not be much longer.
SHORT_SECONDS = 7.0
SECONDS = float(os.environ.get("PII_VAULT_SOAK_SECONDS", SHORT_SECONDS))
RPC_THREADS = Settings(data_dir=Path()).threads  # what the server runs with by default
IN_FLIGHT = 3 * RPC_THREADS
CHANNELS = 6
# A thousand times a masked read on a slow shared machine, far shorter than the 2 x 30 s a
# starved thread waited.
CALL_TIMEOUT = 5.0


@pytest.mark.slow
def test_three_times_more_concurrent_reads_than_rpc_threads_all_succeed(
    vault_server: VaultServer, new_subject_id: Callable[[], str]
) -> None:
    subjects = [new_subject_id() for _ in range(8)]
    writer = vault_server.client("registration")
    for subject in subjects:
        writer.vault.PutField(
            pb.PutFieldRequest(
                subject_id=subject,
                field="phone",
                value=pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567")),
            ),
            timeout=30,
        )
    clients = [
        VaultClient.for_caller(vault_server.data_dir, "registration", vault_server.target)
        for _ in range(CHANNELS)
    ]
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    start = time.monotonic()

    def keep_reading(worker: int) -> None:
        stub = clients[worker % CHANNELS].vault
        request = pb.GetFieldRequest(
            subject_id=subjects[worker % len(subjects)], field="phone", view=pb.VIEW_MASKED
        )
        seen: Counter[str] = Counter()
        while time.monotonic() - start < SECONDS:
            try:
                answer = stub.GetField(request, timeout=CALL_TIMEOUT)
                seen["OK" if "*" in answer.view.masked else "OK without a mask"] += 1
            except grpc.RpcError as error:
                seen[error.code().name] += 1
        with lock:
            outcomes.update(seen)

    try:
        with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
            for finished in [pool.submit(keep_reading, w) for w in range(IN_FLIGHT)]:
                finished.result()
    finally:
        for client in clients:
            client.close()
    assert set(outcomes) == {"OK"}, dict(outcomes)
    # Every RPC thread has served many calls: the starved one would have had its turn.
    assert outcomes["OK"] > 10 * IN_FLIGHT
    assert "pool timed out" not in vault_server.output
