"""JSON process logs: one object a line, the request id of the call, and no value of a person.

The server runs with ``PII_VAULT_LOG_FORMAT=json``. A canary read (which
logs a CRITICAL alarm while the call is served) sent with ``x-request-id``
shows that id on its log line; every line the server writes in the whole
run parses as JSON and none carries a digit group of the values stored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from pii_vault_client.v1 import vault_pb2 as pb
from vault_server import VaultServer

PHONE = "+372 5123 4567"
DECOY = "+372 5987 6543"


def test_json_logs_carry_the_request_id_and_no_personal_data(
    start_vault_server: type[VaultServer], run_vault: Callable[..., object], tmp_path: Path
) -> None:
    data_dir = tmp_path / "vault"
    assert run_vault("init", "--data-dir", str(data_dir)).returncode == 0  # type: ignore[attr-defined]
    decoy = f"decoy-{uuid.uuid4()}"
    planted = run_vault(
        "canary",
        "plant",
        "--data-dir",
        str(data_dir),
        decoy,
        "phone",
        "--type",
        "phone",
        stdin=DECOY + "\n",
    )
    assert planted.returncode == 0, planted.stderr  # type: ignore[attr-defined]
    server = start_vault_server(data_dir, init=False, env={"PII_VAULT_LOG_FORMAT": "json"})
    try:
        vault = server.client("registration").vault
        subject = f"logs-{uuid.uuid4()}"
        vault.PutField(
            pb.PutFieldRequest(
                subject_id=subject,
                field="phone",
                value=pb.FieldValue(phone=pb.PhoneNumber(number=PHONE)),
            ),
            timeout=30,
        )
        with pytest.raises(grpc.RpcError):
            vault.GetField(
                pb.GetFieldRequest(subject_id=decoy, field="phone", view=pb.VIEW_MASKED),
                timeout=30,
                metadata=(("x-request-id", "req-canary-42"),),
            )
    finally:
        assert server.stop() == 0, server.output

    lines = [line for line in server.output.splitlines() if line.strip()]
    records = []
    for line in lines:
        if line.startswith("listening on "):  # the one line for scripts, by design
            continue
        records.append(json.loads(line))  # every other line is one JSON object
    assert {"time", "level", "logger", "message", "request_id"} <= set(records[0])
    alarms = [r for r in records if r["level"] == "CRITICAL"]
    assert alarms and all(r["request_id"] == "req-canary-42" for r in alarms), alarms
    assert any(r["request_id"] == "-" for r in records)  # start-up lines: no call
    for digits in ("5123", "4567", "5987", "6543"):
        assert digits not in server.output, digits
