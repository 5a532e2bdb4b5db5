"""Denials as a write amplifier: a caller makes the vault write the audit log for it.

Before, one ``BatchGetFields`` of 100 denied items made 100 separately
committed audit writes, and nothing limited how many such batches a caller
could send, while every other caller's writes queued behind them. Now all
events of one request are one durable write (still before the answer
leaves), and each caller has a denial budget (``denials_*`` in
``policy.toml``, default bursts of 100, refilled at 1 a second): over it, a
denied item answers ``RESOURCE_EXHAUSTED`` with ``RetryInfo`` and costs no
audit write of its own; the suppressed denials are counted in one buffered
event.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from pii_vault_client.v1 import vault_pb2 as pb
from sqlalchemy import create_engine, text

from vault.client import VaultClient

if TYPE_CHECKING:
    from vault_server import VaultServer

TIMEOUT = 15
DEADLINE = 20.0
BATCH = 100  # the largest batch the vault takes


def phone() -> pb.FieldValue:
    return pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567"))


def details(status: status_pb2.Status) -> tuple[float, str]:
    """RetryInfo delay (seconds) and ErrorInfo reason of one item's error."""
    delay, reason = -1.0, ""
    for detail in status.details:
        retry = error_details_pb2.RetryInfo()
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(retry):
            delay = retry.retry_delay.ToTimedelta().total_seconds()
        elif detail.Unpack(info):
            reason = info.reason
    return delay, reason


def denied_batch(client: VaultClient, subject: str) -> list[status_pb2.Status]:
    """One BatchGetFields of 100 items the caller may not read; every item's error."""
    answer = client.vault.BatchGetFields(
        pb.BatchGetFieldsRequest(
            items=[pb.GetFieldRequest(subject_id=subject, field="phone")] * BATCH
        ),
        timeout=TIMEOUT,
    )
    assert all(result.WhichOneof("result") == "error" for result in answer.results)
    return [cast(status_pb2.Status, result.error) for result in answer.results]


def events(admin: VaultClient, **filters: str) -> list[pb.AuditEvent]:
    found: list[pb.AuditEvent] = []
    token = ""
    while True:
        page = admin.audit.ListEvents(
            pb.ListEventsRequest(page_size=1000, page_token=token, **filters), timeout=TIMEOUT
        )
        found.extend(page.events)
        token = page.next_page_token
        if not token:
            return found


def test_a_batch_of_denials_is_one_write_and_a_flood_of_them_is_throttled(
    vault_server: VaultServer, subject_id: str
) -> None:
    vault_server.client("registration").vault.PutField(
        pb.PutFieldRequest(subject_id=subject_id, field="phone", value=phone()), timeout=TIMEOUT
    )
    admin = vault_server.client("admin")  # operators read no field: every item is denied

    first = denied_batch(admin, subject_id)
    assert {s.code for s in first} == {grpc.StatusCode.PERMISSION_DENIED.value[0]}
    logged = [
        e for e in events(admin, subject_id=subject_id) if e.outcome == pb.AUDIT_OUTCOME_DENIED
    ]
    assert len(logged) == BATCH
    # All 100 events of the request were appended together: consecutive in the chain ...
    sequences = sorted(e.sequence for e in logged)
    assert sequences == list(range(sequences[0], sequences[0] + BATCH))
    # ... and, where the database can show it, committed by one transaction.
    if vault_server.database_url is not None:
        engine = create_engine(
            vault_server.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
        )
        try:
            with engine.connect() as conn:
                transactions = conn.execute(
                    text(
                        "SELECT count(DISTINCT xmin::text) FROM audit_events"
                        " WHERE subject_id = :s AND outcome = 'denied'"
                    ),
                    {"s": subject_id},
                ).scalar_one()
        finally:
            engine.dispose()
        assert transactions == 1

    # The flood goes on: the caller's denial budget is spent, so the next batch is
    # refused with RetryInfo, without an audit write per item.
    second = denied_batch(admin, subject_id)
    exhausted = [s for s in second if s.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]]
    assert len(exhausted) >= BATCH - 5  # a token or two may refill while the first batch runs
    delay, reason = details(exhausted[0])
    assert reason == "DENIAL_RATE_LIMITED" and 0 < delay <= 1.0
    denied_now = [
        e for e in events(admin, subject_id=subject_id) if e.outcome == pb.AUDIT_OUTCOME_DENIED
    ]
    assert len(denied_now) == BATCH + (BATCH - len(exhausted))

    # The suppressed denials are on the record, counted in one buffered event.
    def suppressed() -> int:
        found = events(admin, caller="admin", action=pb.AUDIT_ACTION_DENIALS_SUPPRESSED)
        return sum(int(e.detail.split(":", 1)[0].removeprefix("count=")) for e in found)

    deadline = time.monotonic() + DEADLINE
    while suppressed() < len(exhausted) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert suppressed() == len(exhausted)

    # Another caller's budget is its own: its denial is still answered and audited.
    with pytest.raises(grpc.RpcError) as caught:
        vault_server.client("checkout").vault.GetField(
            pb.GetFieldRequest(
                subject_id=subject_id, field="phone", view=pb.VIEW_PLAINTEXT, purpose="x"
            ),
            timeout=TIMEOUT,
        )
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_denied_operator_and_erasure_calls_spend_the_same_denial_budget(
    vault_server: VaultServer, subject_id: str
) -> None:
    # registration may neither shred nor read key status: each try is a denial that
    # costs an audit write, so a flood of them runs out of budget like denied reads.
    client = vault_server.client("registration")
    codes: list[grpc.StatusCode] = []
    reasons: set[str] = set()
    for attempt in range(BATCH + 30):
        try:
            if attempt % 2:
                client.keys.GetKeyStatus(pb.GetKeyStatusRequest(), timeout=TIMEOUT)
            else:
                client.vault.ShredSubject(
                    pb.ShredSubjectRequest(
                        subject_id=subject_id, reason="probe", request_id=f"probe-{attempt}"
                    ),
                    timeout=TIMEOUT,
                )
        except grpc.RpcError as error:
            codes.append(error.code())
            if error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                status = rpc_status_of(error)
                reasons.add(details(status)[1])
    assert codes[0] is grpc.StatusCode.PERMISSION_DENIED
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert reasons == {"DENIAL_RATE_LIMITED"}
    assert set(codes) == {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.RESOURCE_EXHAUSTED}


def rpc_status_of(error: grpc.RpcError) -> status_pb2.Status:
    from grpc_status import rpc_status

    status = rpc_status.from_call(cast(grpc.Call, error))
    assert status is not None
    return status
