"""Idempotent replays as a value oracle: guessing a stored value through PutField retries.

Before, an idempotency record was keyed by (subject, key) alone and held a MAC
of the request under the blind-index key, which never dies. A replay of a known
key answered OK for the right value and ``ALREADY_EXISTS`` for a wrong one, for
any caller allowed to put that type, unaudited and unlimited, and the record
outlived ``DeleteField``: from a known BIN a card number came back in some
29,000 replays, a date of birth in 312.

Now a record answers only the caller that made it, until it expires, and only
while the value it wrote stands: its fingerprint is keyed under that value's
data key and is disarmed with it (overwrite, ``DeleteField``; a shred deletes
it), after which a retry is ``FAILED_PRECONDITION`` whatever it carries.
Every put, replay or not, is audited and spends the caller's put budget.

Each attack below asks the same question with the right and with a wrong
guess, on fresh subjects, and asserts that the two answers are the same.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import grpc
import pytest
from google.rpc import error_details_pb2
from google.type import date_pb2
from grpc_status import rpc_status
from pg_databases import drop_postgres_database, new_postgres_database
from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import VaultClient
from vault.policy import DEFAULT_POLICY_TOML
from vault.policy.policy import Policy

if TYPE_CHECKING:
    from vault_server import VaultServer

TIMEOUT = 10
DEADLINE = 20.0
BORN = (1979, 3, 28)
WRONG_GUESS = (1979, 3, 29)

# Checkout may store dates of birth too: the attacker is a second caller allowed
# to put the victim's type, which is all the old oracle needed.
ATTACK_POLICY = (
    DEFAULT_POLICY_TOML
    + """
[[callers.checkout.grants]]
actions = ["put"]
field_types = ["date_of_birth"]
"""
)
# Registration may make only a few puts, replays included, before it must wait.
PUT_BUDGET = 4
LIMITED_POLICY = (
    DEFAULT_POLICY_TOML
    + f"""
[limits.callers.registration]
put_per_second = 0.001
put_burst = {PUT_BUDGET}
"""
)


def write_policy(data_dir: Path, text: str) -> None:
    """Write the server's policy before it starts (``init`` keeps an existing one)."""
    Policy.from_toml(text)  # a typo here should fail the test, not the server start
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "policy.toml").write_text(text, encoding="utf-8")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def attack_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    start_vault_server: type[VaultServer],
) -> Iterator[VaultServer]:
    """A server whose policy lets two callers put dates of birth, per store."""
    database_url = new_postgres_database() if request.param == "postgres" else None
    try:
        data_dir = tmp_path_factory.mktemp(f"oracle-{request.param}") / "vault"
        write_policy(data_dir, ATTACK_POLICY)
        server = start_vault_server(data_dir, database_url=database_url)
        try:
            yield server
        finally:
            code = server.stop()
        assert code == 0, server.output
    finally:
        if database_url is not None:
            drop_postgres_database(database_url)


def born(year: int, month: int, day: int) -> pb.FieldValue:
    return pb.FieldValue(date_of_birth=date_pb2.Date(year=year, month=month, day=day))


def put(
    client: VaultClient, subject: str, value: pb.FieldValue, key: str = ""
) -> pb.PutFieldResponse:
    return client.vault.PutField(  # type: ignore[no-any-return]
        pb.PutFieldRequest(
            subject_id=subject, field="date_of_birth", value=value, idempotency_key=key
        ),
        timeout=TIMEOUT,
    )


def answer(call: Callable[[], object]) -> tuple[str, str]:
    """What the caller sees: the status code, and the message when it is an error."""
    try:
        call()
    except grpc.RpcError as error:
        code = cast(grpc.Call, error).code()
        return code.name, cast(grpc.Call, error).details() or ""
    return "OK", ""


def retry_delay(error: grpc.RpcError) -> float:
    status = rpc_status.from_call(cast(grpc.Call, error))
    assert status is not None, "a rate limit answers with google.rpc details"
    for detail in status.details:
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(retry):
            return float(retry.retry_delay.ToTimedelta().total_seconds())
    raise AssertionError("no RetryInfo")


def put_events(admin: VaultClient, subject: str, expected: int) -> list[tuple[str, ...]]:
    """The subject's ``put`` events, once ``expected`` of them landed (routine ones are
    appended in batches), as sorted (caller, outcome, status, detail)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        page = admin.audit.ListEvents(
            pb.ListEventsRequest(subject_id=subject, action=pb.AUDIT_ACTION_PUT, page_size=100),
            timeout=TIMEOUT,
        )
        if len(page.events) >= expected or time.monotonic() > deadline:
            return sorted((e.caller, e.outcome, e.status_code, e.detail) for e in page.events)
        time.sleep(0.05)


# -- another caller's replay ------------------------------------------------------------------
def test_another_callers_replay_of_a_known_key_answers_the_same_for_right_and_wrong_guesses(
    attack_server: VaultServer,
) -> None:
    victim_writer = attack_server.client("registration")
    attacker = attack_server.client("checkout")
    answers = {}
    for name, guess in (("right", BORN), ("wrong", WRONG_GUESS)):
        subject = f"oracle-{uuid.uuid4()}"
        put(victim_writer, subject, born(*BORN), key="signup-7f3a")
        answers[name] = answer(lambda s=subject, g=guess: put(attacker, s, born(*g), "signup-7f3a"))
    # Before: right -> OK (the victim's record confirmed it), wrong -> ALREADY_EXISTS.
    assert answers["right"] == answers["wrong"] == ("OK", "")


# -- a replay after the value is gone ------------------------------------------------------------
def destroy(server: VaultServer, how: str, subject: str) -> None:
    if how == "DeleteField":
        server.client("deletion").vault.DeleteField(
            pb.DeleteFieldRequest(subject_id=subject, field="date_of_birth"), timeout=TIMEOUT
        )
    elif how == "overwrite":
        put(server.client("registration"), subject, born(1990, 1, 1))
    else:
        server.client("deletion").vault.ShredSubject(
            pb.ShredSubjectRequest(subject_id=subject, reason="closed", request_id=subject),
            timeout=TIMEOUT,
        )


@pytest.mark.parametrize("how", ["DeleteField", "overwrite", "ShredSubject"])
def test_once_the_value_is_gone_a_replay_cannot_confirm_it(
    attack_server: VaultServer, how: str
) -> None:
    registration = attack_server.client("registration")
    answers = {}
    for name, guess in (("right", BORN), ("wrong", WRONG_GUESS)):
        subject = f"oracle-{uuid.uuid4()}"
        put(registration, subject, born(*BORN), key="signup-1")
        destroy(attack_server, how, subject)
        answers[name] = answer(
            lambda s=subject, g=guess: put(registration, s, born(*g), "signup-1")
        )
    # Before: after DeleteField right -> NOT_FOUND, after an overwrite right ->
    # FAILED_PRECONDITION; a wrong guess -> ALREADY_EXISTS either way.
    assert answers["right"] == answers["wrong"]
    assert answers["right"][0] == "FAILED_PRECONDITION"


def test_a_late_retry_never_writes_a_deleted_value_back(attack_server: VaultServer) -> None:
    registration = attack_server.client("registration")
    subject = f"oracle-{uuid.uuid4()}"
    put(registration, subject, born(*BORN), key="signup-1")
    destroy(attack_server, "DeleteField", subject)
    assert answer(lambda: put(registration, subject, born(*BORN), "signup-1"))[0] == (
        "FAILED_PRECONDITION"
    )
    missing = answer(
        lambda: registration.vault.GetField(
            pb.GetFieldRequest(subject_id=subject, field="date_of_birth"), timeout=TIMEOUT
        )
    )
    assert missing[0] == "NOT_FOUND"


# -- replays are audited and budgeted -------------------------------------------------------------
def test_every_replay_is_audited_without_the_value(attack_server: VaultServer) -> None:
    registration = attack_server.client("registration")
    subject = f"oracle-{uuid.uuid4()}"
    put(registration, subject, born(*BORN), key="signup-1")
    put(registration, subject, born(*BORN), key="signup-1")
    assert answer(lambda: put(registration, subject, born(*WRONG_GUESS), "signup-1"))[0] == (
        "ALREADY_EXISTS"
    )
    events = put_events(attack_server.client("admin"), subject, 3)
    # Before: puts and replays left no trace at all.
    assert events == [
        ("registration", pb.AUDIT_OUTCOME_OK, "OK", "created"),
        ("registration", pb.AUDIT_OUTCOME_OK, "OK", "replay"),
        ("registration", pb.AUDIT_OUTCOME_REFUSED, "ALREADY_EXISTS", "replay with other content"),
    ]
    assert not any("1979" in "".join(map(str, event)) for event in events)


def test_replays_run_out_of_the_put_budget(
    tmp_path: Path, start_vault_server: type[VaultServer]
) -> None:
    data_dir = tmp_path / "vault"
    write_policy(data_dir, LIMITED_POLICY)
    server = start_vault_server(data_dir)
    try:
        registration = server.client("registration")
        subject = f"oracle-{uuid.uuid4()}"
        put(registration, subject, born(*BORN), key="signup-1")
        guesses = [born(1979, 3, day) for day in range(1, 29)]
        answers = [answer(lambda g=g: put(registration, subject, g, "signup-1")) for g in guesses]
        codes = [code for code, _ in answers]
        # Before: 28 unlimited answers, one of them OK. Now the budget runs out
        # after PUT_BUDGET puts, replays counted, and the rest wait.
        assert codes[: PUT_BUDGET - 1] == ["ALREADY_EXISTS"] * (PUT_BUDGET - 1)
        assert set(codes[PUT_BUDGET - 1 :]) == {"RESOURCE_EXHAUSTED"}
        with pytest.raises(grpc.RpcError) as refused:
            put(registration, subject, born(*BORN), key="signup-1")
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert retry_delay(refused.value) > 0
        # Another caller's budget is its own.
        server.client("checkout").vault.PutField(
            pb.PutFieldRequest(
                subject_id=subject,
                field="payment_token.stripe",
                value=pb.FieldValue(
                    payment_token=pb.PaymentToken(provider="stripe", token="pm_budget0001")
                ),
            ),
            timeout=TIMEOUT,
        )
    finally:
        code = server.stop()
    assert code == 0, server.output
