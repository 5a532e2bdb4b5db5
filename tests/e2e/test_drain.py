"""SIGTERM under load: health first, then a drain delay, then UNAVAILABLE, never CANCELLED.

A separate client process keeps 16 threads writing and reading, and watches
health as a load balancer does. The server is stopped with SIGTERM and a
drain delay: it turns NOT_SERVING at once, keeps serving for the delay
while the client moves away, then refuses new calls UNAVAILABLE (which
retry policies retry) and closes. No call may end CANCELLED or in any other
non-retriable status, and every write the client saw acknowledged is there
when the server is started again on the same data.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from pii_vault_client.v1 import vault_pb2 as pb
from vault_server import VaultServer, clean_env, policy_with_put_budget

CLIENT = Path(__file__).with_name("drain_client.py")
RETRIABLE = {"OK", "UNAVAILABLE"}


@pytest.mark.slow
def test_sigterm_under_load_loses_no_write_and_answers_nothing_non_retriable(
    start_vault_server: type[VaultServer], tmp_path: Path
) -> None:
    data_dir = tmp_path / "vault"
    policy = policy_with_put_budget(tmp_path / "policy.toml")
    server = start_vault_server(
        data_dir, env={"PII_VAULT_DRAIN_DELAY": "1", "PII_VAULT_POLICY": str(policy)}
    )
    client = subprocess.Popen(
        [sys.executable, str(CLIENT), str(data_dir), server.target, "20", "16"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert client.stdout is not None
    assert client.stdout.readline().strip() == "ready"
    time.sleep(1.5)  # under load
    started = time.monotonic()
    assert server.stop() == 0, server.output
    stop_seconds = time.monotonic() - started
    out, err = client.communicate(timeout=60)
    assert client.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    codes, acknowledged = report["codes"], report["acknowledged"]
    assert codes.get("OK", 0) > 50, codes  # it was under load
    assert set(codes) <= RETRIABLE, codes
    assert "draining for up to" in server.output
    assert stop_seconds >= 1.0  # the drain delay was kept

    again = start_vault_server(data_dir, init=False)
    try:
        reader = again.client("registration").vault
        for subject in acknowledged:
            try:
                reader.GetField(
                    pb.GetFieldRequest(subject_id=subject, field="phone", view=pb.VIEW_MASKED),
                    timeout=20,
                )
            except grpc.RpcError as error:  # pragma: no cover - the failure message
                pytest.fail(f"an acknowledged write is gone: {error.code().name}")
    finally:
        assert again.stop() == 0, again.output
