"""Overload: past its concurrency limit the server refuses at once, and admitted calls succeed.

A server admitting 4 calls at once (``PII_VAULT_MAX_CONCURRENT_RPCS``) gets 32
callers in a tight loop of batch reads. The calls over the limit are refused
RESOURCE_EXHAUSTED (which clients back off from) instead of queueing until
their deadlines pass; every call that was admitted is answered OK.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import grpc
from pii_vault_client.v1 import vault_pb2 as pb
from vault_server import VaultServer


def test_calls_over_the_concurrency_limit_are_refused_resource_exhausted(
    start_vault_server: type[VaultServer], tmp_path: Path
) -> None:
    server = start_vault_server(
        tmp_path / "vault", env={"PII_VAULT_MAX_CONCURRENT_RPCS": "4", "PII_VAULT_THREADS": "4"}
    )
    try:
        writer = server.client("registration").vault
        subjects = [f"load-{uuid.uuid4()}" for _ in range(20)]
        for subject in subjects:
            writer.PutField(
                pb.PutFieldRequest(
                    subject_id=subject,
                    field="phone",
                    value=pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567")),
                ),
                timeout=30,
            )
        batch = pb.BatchGetFieldsRequest(
            items=[
                pb.GetFieldRequest(subject_id=s, field="phone", view=pb.VIEW_MASKED)
                for s in subjects * 5
            ]
        )
        codes: Counter[str] = Counter()
        lock = threading.Lock()
        ends = time.monotonic() + 3

        def hammer() -> None:
            vault = server.client("registration").vault
            seen: Counter[str] = Counter()
            while time.monotonic() < ends:
                try:
                    vault.BatchGetFields(batch, timeout=20)
                    seen["OK"] += 1
                except grpc.RpcError as error:
                    seen[error.code().name] += 1
            with lock:
                codes.update(seen)

        threads = [threading.Thread(target=hammer) for _ in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        assert server.stop() == 0, server.output
    assert codes["RESOURCE_EXHAUSTED"] > 0, codes
    assert codes["OK"] > 0 and set(codes) == {"OK", "RESOURCE_EXHAUSTED"}, codes
