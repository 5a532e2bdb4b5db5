"""Prometheus metrics over a real run: counted, timed, and free of personal data.

The server is started with ``PII_VAULT_METRICS_LISTEN`` on a loopback port;
after writes, masked and plaintext reads, a denial and a shred, one scrape
of ``/metrics`` shows the calls by method and status, the audit events by
action, the key provider's unwraps, the seal, and not one subject id, value
or token anywhere in the text.
"""

from __future__ import annotations

import re
import socket
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from pii_vault_client.v1 import vault_pb2 as pb
from vault_server import VaultServer

PHONE = "+372 5123 4567"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sample(text: str, name: str, **labels: str) -> float:
    """The value of ``name`` with (at least) ``labels``, summed over the other labels."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_calls_audit_events_and_unwraps_and_carry_no_personal_data(
    start_vault_server: type[VaultServer], tmp_path: Path
) -> None:
    port = free_port()
    server = start_vault_server(
        tmp_path / "vault", env={"PII_VAULT_METRICS_LISTEN": f"127.0.0.1:{port}"}
    )
    try:
        writer = server.client("registration").vault
        subjects = [f"metrics-{uuid.uuid4()}" for _ in range(3)]
        tokens = []
        for subject in subjects:
            answer = writer.PutField(
                pb.PutFieldRequest(
                    subject_id=subject,
                    field="phone",
                    value=pb.FieldValue(phone=pb.PhoneNumber(number=PHONE)),
                ),
                timeout=30,
            )
            tokens.append(answer.view.token)
            for _ in range(4):
                writer.GetField(
                    pb.GetFieldRequest(subject_id=subject, field="phone", view=pb.VIEW_MASKED),
                    timeout=30,
                )
        desk = server.client("privacy-desk").vault
        desk.GetField(
            pb.GetFieldRequest(
                subject_id=subjects[0], field="phone", view=pb.VIEW_PLAINTEXT, purpose="dsar"
            ),
            timeout=30,
        )
        with pytest.raises(grpc.RpcError):  # registration may not reveal
            writer.GetField(
                pb.GetFieldRequest(subject_id=subjects[1], field="phone", view=pb.VIEW_PLAINTEXT),
                timeout=30,
            )
        server.client("deletion").vault.ShredSubject(
            pb.ShredSubjectRequest(
                subject_id=subjects[2], reason="account closed", request_id=uuid.uuid4().hex
            ),
            timeout=30,
        )
        time.sleep(1.5)  # the masked reads' events are flushed every half second
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    finally:
        assert server.stop() == 0, server.output

    assert sample(text, "vault_rpc_total", method="PutField", code="OK") == 3
    assert sample(text, "vault_rpc_total", method="GetField", code="OK") == 13
    assert sample(text, "vault_rpc_total", method="GetField", code="PERMISSION_DENIED") == 1
    assert sample(text, "vault_rpc_seconds_count", method="GetField") == 14
    assert sample(text, "vault_audit_events_total", action="shred") >= 1
    assert sample(text, "vault_key_provider_calls_total", operation="wrap", outcome="ok") >= 3
    assert sample(text, "vault_sealed") == 0
    assert "vault_audit_buffered_events" in text and "vault_key_cache_entries" in text
    # The 12 masked reads are 3 kinds of access (one per subject): aggregated access
    # records, at least one chained event each (more if a flush fell between them).
    assert sample(text, "vault_audit_flushed_events_total") >= 3
    assert sample(text, "vault_audit_flush_seconds_count") >= 1
    assert 'vault_key_cache_misses_total{cache="data"}' in text
    # Nothing of a person: no subject id, no digits of the number, no token.
    for secret in [*subjects, *tokens, "51234567", "5123 4567", "4567"]:
        assert secret not in text, secret
    assert not re.search(r"metrics-[0-9a-f]{8}", text)
