"""``kill -9`` in the middle of a rewrap: no key is lost, and running it again finishes it.

Two hundred subjects, a new master key version, and a rewrap in batches of
ten streaming its progress; the server is killed with SIGKILL once the
first batches are reported. After a restart every subject still opens
(each key is wrapped under the old version or the new one, never neither),
and a second rewrap moves the rest and retires the old version (the server's
own maintenance loop does the same at start when it is on).
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import grpc
from pii_vault_client.v1 import vault_pb2 as pb
from vault_server import VaultServer

SUBJECTS = 200
PHONE = "+372 5123 4567"


def test_a_server_killed_mid_rewrap_loses_no_key_and_a_rerun_finishes(
    start_vault_server: type[VaultServer], tmp_path: Path
) -> None:
    data_dir = tmp_path / "vault"
    server = start_vault_server(data_dir)
    subjects = [f"rewrap-{uuid.uuid4()}" for _ in range(SUBJECTS)]
    writer = server.client("registration").vault
    for subject in subjects:
        writer.PutField(
            pb.PutFieldRequest(
                subject_id=subject,
                field="phone",
                value=pb.FieldValue(phone=pb.PhoneNumber(number=PHONE)),
            ),
            timeout=30,
        )
    admin = server.client("admin").keys
    admin.RotateMasterKey(pb.RotateMasterKeyRequest(), timeout=30)
    stream = admin.RewrapKeys(pb.RewrapKeysRequest(batch_size=10), timeout=60)
    seen = 0
    try:
        for progress in stream:
            seen = progress.done
            if progress.done >= 30:
                server.process.send_signal(signal.SIGKILL)
                break
    except grpc.RpcError:
        pass
    server.process.wait()
    server.returncode = 0  # killed on purpose
    assert 0 < seen < SUBJECTS, seen

    # Maintenance off: the server would otherwise finish the rewrap on its own at start.
    again = start_vault_server(data_dir, init=False, env={"PII_VAULT_RETENTION_INTERVAL": "0"})
    try:
        desk = again.client("privacy-desk").vault
        for subject in subjects:  # nothing lost: every value opens
            answer = desk.GetField(
                pb.GetFieldRequest(
                    subject_id=subject, field="phone", view=pb.VIEW_PLAINTEXT, purpose="dsar"
                ),
                timeout=30,
            )
            assert answer.value.phone.number == "+37251234567"
        status = again.client("admin").keys.GetKeyStatus(pb.GetKeyStatusRequest(), timeout=30)
        assert status.schedule.keys_to_rewrap > 0  # the kill left work to do
        finished = list(
            again.client("admin").keys.RewrapKeys(pb.RewrapKeysRequest(batch_size=50), timeout=60)
        )
        assert finished and finished[-1].done == finished[-1].total
        status = again.client("admin").keys.GetKeyStatus(pb.GetKeyStatusRequest(), timeout=30)
        assert status.schedule.keys_to_rewrap == 0
        assert [v.state for v in status.versions].count(pb.MASTER_KEY_STATE_RETIRED) >= 1
    finally:
        assert again.stop() == 0, again.output
