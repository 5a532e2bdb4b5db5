"""Search as a plaintext oracle: recovering a phone number from its mask through FindSubjects.

``registration`` may see only masks. Before, it could try every number
consistent with ``+372 **** **43`` through ``FindSubjects`` -- about 10^5
candidates, unthrottled and unaudited -- and the one that answered with a
subject id was the number. Now a search answers only ``found`` (its grant
says ``answers = "exists"``), each caller has a search budget (a token bucket
from ``policy.toml``), misses that share one mask sound the enumeration alarm
(CRITICAL log line, high-severity audit event, searches refused for a window),
and every search is in the audit log.

At the default limits (1 search a second, bursts of 30; alarm after 20
missed values sharing one mask within 10 minutes, then 10 minutes refused) an
attacker gets about 21 candidates per 10 minutes: the 5x10^4 expected guesses
take about 17 days and some 2,400 alarms; without the alarm, 14 hours.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import VaultClient

if TYPE_CHECKING:
    from vault_server import VaultServer

TIMEOUT = 10
DEADLINE = 20.0
TRUE_VALUE_AT = 150  # the true number's place in the attacker's candidate order: past any budget


def phone(number: str) -> pb.FieldValue:
    return pb.FieldValue(phone=pb.PhoneNumber(number=number))


def limit_details(error: grpc.RpcError) -> tuple[float, str]:
    """The RetryInfo delay (seconds) and ErrorInfo reason of a RESOURCE_EXHAUSTED answer."""
    status = rpc_status.from_call(cast(grpc.Call, error))
    assert status is not None, "a rate limit answers with google.rpc details"
    delay, reason = -1.0, ""
    for detail in status.details:
        retry = error_details_pb2.RetryInfo()
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(retry):
            delay = retry.retry_delay.ToTimedelta().total_seconds()
        elif detail.Unpack(info):
            reason = info.reason
    return delay, reason


def find(client: VaultClient, number: str) -> pb.FindSubjectsResponse | grpc.RpcError:
    try:
        return client.vault.FindSubjects(pb.FindSubjectsRequest(value=phone(number)), timeout=10)
    except grpc.RpcError as error:
        return error


def wait_for(what: str, predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {DEADLINE}s waiting for {what}")


def events(
    admin: VaultClient, caller: str, action: pb.AuditAction.ValueType
) -> list[pb.AuditEvent]:
    found: list[pb.AuditEvent] = []
    token = ""
    while True:
        page = admin.audit.ListEvents(
            pb.ListEventsRequest(caller=caller, action=action, page_size=500, page_token=token),
            timeout=TIMEOUT,
        )
        found.extend(page.events)
        token = page.next_page_token
        if not token:
            return found


def counted(event: pb.AuditEvent) -> int:
    """The count in a counted event's detail: ``count=N: ...``."""
    assert event.detail.startswith("count="), event.detail
    return int(event.detail.split(":", 1)[0].removeprefix("count="))


def times(event: pb.AuditEvent) -> int:
    """How many accesses an event records: 1, or N for an aggregated ``count=N: ...``."""
    return counted(event) if event.detail.startswith("count=") else 1


def what(event: pb.AuditEvent) -> str:
    """An event's detail without its ``count=N: `` prefix."""
    return event.detail.split(": ", 1)[1] if event.detail.startswith("count=") else event.detail


def candidates_for(mask: str, true_number: str) -> Iterator[str]:
    """Every Estonian mobile number 5xxxxxNN consistent with the mask, the true one at
    ``TRUE_VALUE_AT``: the attacker's loop, in the order it would try them."""
    shown = mask.replace(" ", "")[-2:]
    assert shown.isdigit(), mask
    for n in range(10**5):
        if n == TRUE_VALUE_AT:
            yield true_number
        candidate = f"+3725{n:05d}{shown}"
        if candidate != true_number:
            yield candidate


def test_recovering_a_phone_number_from_its_mask_through_search_fails(
    vault_server: VaultServer, subject_id: str
) -> None:
    registration = vault_server.client("registration")
    admin = vault_server.client("admin")
    true_number = f"+3725{secrets.randbelow(10**5):05d}43"
    registration.vault.PutField(
        pb.PutFieldRequest(subject_id=subject_id, field="phone", value=phone(true_number)),
        timeout=TIMEOUT,
    )
    mask = registration.vault.GetField(
        pb.GetFieldRequest(subject_id=subject_id, field="phone"), timeout=TIMEOUT
    ).view.masked
    assert mask.endswith("43") and true_number[4:8] not in mask

    answered: list[pb.FindSubjectsResponse] = []
    refusals: list[grpc.RpcError] = []
    for number, candidate in enumerate(candidates_for(mask, true_number)):
        if number > TRUE_VALUE_AT:
            break
        answer = find(registration, candidate)
        if isinstance(answer, grpc.RpcError):
            assert answer.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, answer.details()
            refusals.append(answer)
        else:
            assert not refusals, "once refused, the searches stay refused for the window"
            answered.append(answer)

    # The true value, tried past the budget, was never confirmed; no answer named a subject.
    assert not any(answer.found for answer in answered)
    assert all(not answer.subject_ids for answer in answered)
    # Throttled after at most one burst, with RetryInfo saying how long to wait.
    assert 0 < len(answered) <= 30
    assert len(refusals) == TRUE_VALUE_AT + 1 - len(answered)
    delay, reason = limit_details(refusals[0])
    assert delay > 0
    assert reason in ("ENUMERATION_ALARM", "SEARCH_RATE_LIMITED")
    # The misses sharing one mask sounded the alarm: a CRITICAL log line ...
    assert reason == "ENUMERATION_ALARM"
    alarm_lines = [line for line in vault_server.output.splitlines() if "ENUMERATION ALARM" in line]
    assert len(alarm_lines) == 1
    assert " CRITICAL vault.alarm " in alarm_lines[0] and "registration" in alarm_lines[0]
    assert true_number[-8:] not in vault_server.output and mask not in alarm_lines[0]

    # ... and a high-severity audit event, with every search on the record: each answered
    # one (batched: type and hit or miss, never the value), the refused ones counted.
    def all_searches_recorded() -> bool:
        found = events(admin, "registration", pb.AUDIT_ACTION_FIND)
        # Equal searches before a flush are one aggregated record with their count.
        answered_count = sum(times(e) for e in found if e.outcome == pb.AUDIT_OUTCOME_OK)
        refused_count = sum(counted(e) for e in found if e.outcome == pb.AUDIT_OUTCOME_REFUSED)
        return answered_count == len(answered) and refused_count == len(refusals)

    wait_for("every search in the audit log", all_searches_recorded)
    found = events(admin, "registration", pb.AUDIT_ACTION_FIND)
    [alarm] = [e for e in found if e.outcome == pb.AUDIT_OUTCOME_ALARM]
    assert alarm.detail.startswith("severity=high: enumeration suspected")
    assert alarm.status_code == "RESOURCE_EXHAUSTED"
    assert {what(e) for e in found if e.outcome == pb.AUDIT_OUTCOME_OK} == {
        "field_type=phone result=miss"
    }
    for event in found:
        assert true_number[-8:] not in str(event) and "43" not in event.detail


@pytest.fixture(scope="module")
def own_server(
    tmp_path_factory: pytest.TempPathFactory, start_vault_server: type[VaultServer]
) -> Iterator[VaultServer]:
    """A server of its own, so the budget spent here is nobody else's."""
    server = start_vault_server(Path(tmp_path_factory.mktemp("search-budget")))
    try:
        yield server
    finally:
        assert server.stop() == 0, server.output


def test_searches_are_throttled_after_the_burst_with_retry_info(
    own_server: VaultServer, subject_id: str
) -> None:
    registration = own_server.client("registration")
    number = f"+3725{secrets.randbelow(10**5):05d}21"
    registration.vault.PutField(
        pb.PutFieldRequest(subject_id=subject_id, field="phone", value=phone(number)),
        timeout=TIMEOUT,
    )
    # Hits, so the enumeration alarm (which counts misses) stays quiet: only the bucket acts.
    answers: list[pb.FindSubjectsResponse] = []
    refused: grpc.RpcError | None = None
    for _ in range(60):  # a burst of 30 refilled at 1 a second cannot last 60 quick calls
        answer = find(registration, number)
        if isinstance(answer, grpc.RpcError):
            refused = answer
            break
        answers.append(answer)
    assert refused is not None, "60 searches in a row were all answered"
    assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(answers) >= 30
    assert all(answer.found and not answer.subject_ids for answer in answers)
    delay, reason = limit_details(refused)
    assert reason == "SEARCH_RATE_LIMITED"
    assert 0 < delay <= 1.0  # one token at 1 a second
    assert "ENUMERATION ALARM" not in own_server.output
