"""Unidentified callers are refused and audited; audit events stream out as JSON lines.

A mutual-TLS client without a certificate never reaches the vault (the TLS
handshake refuses it; see test_flows). The plain-text loopback port, which an
operator must ask for explicitly, identifies callers by metadata: a call
without it is the authentication failure the vault itself sees.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from pii_vault_client.v1 import vault_pb2 as pb
from pii_vault_client.v1 import vault_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e
_LISTENING = re.compile(r"^listening on \S+:(\d+)$", re.MULTILINE)


@pytest.fixture
def plaintext_server(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    data_dir = tmp_path / "vault"
    log = tmp_path / "server.log"
    jsonl = tmp_path / "audit.jsonl"
    env = {"PATH": "/usr/bin:/bin", "VAULT_AUDIT_JSONL": str(jsonl)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vault",
                "serve",
                "--init",
                "--data-dir",
                str(data_dir),
                "--listen",
                "127.0.0.1:0",
                "--plaintext",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 30
        port = 0
        while time.monotonic() < deadline and not port:
            found = _LISTENING.search(log.read_text(errors="replace"))
            port = int(found.group(1)) if found else 0
            assert process.poll() is None, log.read_text()
            time.sleep(0.05)
        assert port, log.read_text()
        yield port, jsonl, log
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


def test_an_unidentified_call_is_refused_and_audited(
    plaintext_server: tuple[int, Path, Path],
) -> None:
    port, jsonl, log = plaintext_server
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        vault = pb_grpc.VaultServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            vault.GetField(pb.GetFieldRequest(subject_id="s-1", field="phone"))
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED

        audit = pb_grpc.AuditServiceStub(channel)
        events = audit.ListEvents(
            pb.ListEventsRequest(page_size=100), metadata=[("x-vault-caller", "admin")]
        ).events
    failures = [e for e in events if e.status_code == "UNAUTHENTICATED"]
    assert [(e.action, e.caller, e.outcome) for e in failures] == [
        (pb.AUDIT_ACTION_AUTHENTICATE, "", pb.AUDIT_OUTCOME_DENIED)
    ]
    assert failures[0].detail.startswith("GetField: ")  # the RPC that was refused

    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert {"action": "authenticate", "status_code": "UNAUTHENTICATED"}.items() <= lines[0].items()
    assert lines[0]["detail"].startswith("GetField: ")
    assert "Traceback" not in log.read_text()
