"""Consent and canary fields, end to end, on a real server over mutual TLS.

Consent: the default policy marks purpose ``marketing_sms`` as needing the
subject's consent. The server here runs with that policy plus one grant, so
that the privacy desk may read a phone number in plaintext for
``marketing_sms``: the grant alone must not be enough until the subject has
consented, and withdrawing consent must take effect on the very next call.

Canaries: an operator plants a decoy field with ``pii-vault canary plant``
while the server runs. Within the canary refresh interval any read of it is
refused, logged as ``CANARY READ`` and written to the audit log as a
high-severity event, and nothing else is affected.

The server stores its data in SQLite, which the canary command opens next to
the running server.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import json_format
from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import VaultClient

if TYPE_CHECKING:
    from vault_server import VaultServer

RunVault = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.e2e

TIMEOUT = 15
CANARY_REFRESH_SECONDS = 5.0  # AccessGuards' default refresh interval
CANARY_SLACK_SECONDS = 3.0

PHONE_A = "+372 5847 2291"
PHONE_A_E164 = "+37258472291"
PHONE_B = "+372 5847 3302"
PHONE_B_E164 = "+37258473302"
EMAIL = "Consent.Owlbrook@Example.NET"
DECOY_PHONE = "+372 5990 8817"
DECOY_PHONE_E164 = "+37259908817"
SECRETS = (
    PHONE_A,
    PHONE_A_E164,
    "58472291",
    PHONE_B_E164,
    "58473302",
    "owlbrook",
    DECOY_PHONE_E164,
    "59908817",
)

# One grant on top of the default policy: phone in plaintext for marketing_sms.
MARKETING_GRANT = """
[[callers.privacy-desk.grants]]      # grants[4], added by the consent tests
actions = ["get"]
field_types = ["phone"]
fields = ["phone"]
views = ["plaintext"]
purposes = ["marketing_sms"]
"""
WITHOUT_CONSENT_GRANT = ("registration", "checkout", "deletion", "admin")


# -- fixtures and helpers ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    start_vault_server: type[VaultServer],
    run_vault: RunVault,
) -> Iterator[VaultServer]:
    """A SQLite server whose policy is the default plus ``MARKETING_GRANT``."""
    data_dir = tmp_path_factory.mktemp("vault-consent")
    made = run_vault("init", "--data-dir", str(data_dir))
    assert made.returncode == 0, made.stderr
    policy = data_dir / "policy.toml"
    text = policy.read_text()
    assert "[purposes.marketing_sms]\nrequires_consent = true" in text
    policy.write_text(text + MARKETING_GRANT)
    running = start_vault_server(data_dir, init=False)
    try:
        yield running
    finally:
        code = running.stop()
    assert code == 0, f"vault server exited with {code}:\n{running.output}"


def rpc_error(call: Callable[..., object], request: object) -> grpc.RpcError:
    """The error ``call(request)`` fails with; the test fails if it succeeds."""
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=TIMEOUT)
    return caught.value


def put_phone(server: VaultServer, subject: str, number: str) -> None:
    server.client("registration").vault.PutField(
        pb.PutFieldRequest(
            subject_id=subject,
            field="phone",
            value=pb.FieldValue(phone=pb.PhoneNumber(number=number)),
        ),
        timeout=TIMEOUT,
    )


def marketing_read(client: VaultClient, subject: str) -> pb.GetFieldResponse:
    return client.vault.GetField(
        pb.GetFieldRequest(
            subject_id=subject, field="phone", view=pb.VIEW_PLAINTEXT, purpose="marketing_sms"
        ),
        timeout=TIMEOUT,
    )


def marketing_refused(client: VaultClient, subject: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        marketing_read(client, subject)
    return caught.value


def set_consent(client: VaultClient, subject: str, granted: bool) -> pb.SetConsentResponse:
    return client.vault.SetConsent(
        pb.SetConsentRequest(subject_id=subject, purpose="marketing_sms", granted=granted),
        timeout=TIMEOUT,
    )


def masked(client: VaultClient, subject: str, field: str) -> pb.GetFieldResponse:
    return client.vault.GetField(
        pb.GetFieldRequest(subject_id=subject, field=field), timeout=TIMEOUT
    )


def events_of(server: VaultServer, subject: str) -> list[pb.AuditEvent]:
    admin = server.client("admin")
    page = admin.audit.ListEvents(
        pb.ListEventsRequest(subject_id=subject, page_size=1000), timeout=TIMEOUT
    )
    assert page.next_page_token == ""
    return list(page.events)


def assert_no_secrets(texts: list[str], where: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret.lower() not in text.lower(), f"{secret!r} found in {where}: {text}"


def event_texts(events: list[pb.AuditEvent]) -> list[str]:
    return [json.dumps(json_format.MessageToDict(e)) for e in events]


def cli(
    server: VaultServer, run_vault: RunVault, caller: str, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    command, *rest = args
    common = ("--data-dir", str(server.data_dir), "--as", caller, "--target", server.target)
    return run_vault(command, *common, *rest, stdin=stdin)


# -- consent -----------------------------------------------------------------------------------
def test_a_purpose_needing_consent_is_refused_until_the_subject_consents(
    server: VaultServer, subject_id: str
) -> None:
    put_phone(server, subject_id, PHONE_A)
    desk = server.client("privacy-desk")

    error = marketing_refused(desk, subject_id)
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "consent" in (error.details() or "")
    assert "marketing_sms" in (error.details() or "")
    # The policy grant itself is in force: the same read for dsar is allowed.
    dsar = desk.vault.GetField(
        pb.GetFieldRequest(
            subject_id=subject_id, field="phone", view=pb.VIEW_PLAINTEXT, purpose="dsar"
        ),
        timeout=TIMEOUT,
    )
    assert dsar.value.phone.number == PHONE_A_E164

    assert set_consent(desk, subject_id, True).granted is True
    allowed = marketing_read(desk, subject_id)
    assert allowed.value.phone.number == PHONE_A_E164
    assert allowed.view.masked == "+372 **** **91"
    # A second read works too: consent is a state, not a one-off ticket.
    assert marketing_read(desk, subject_id).value.phone.number == PHONE_A_E164

    assert set_consent(desk, subject_id, False).granted is False
    error = marketing_refused(desk, subject_id)  # at once, no caching
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "consent" in (error.details() or "")

    # Consenting again re-opens it.
    set_consent(desk, subject_id, True)
    assert marketing_read(desk, subject_id).value.phone.number == PHONE_A_E164
    # Nothing of the value leaked into a refusal.
    assert_no_secrets([error.details() or ""], "a consent refusal")


def test_consent_is_per_subject(server: VaultServer, new_subject_id: Callable[[], str]) -> None:
    consenting, other = new_subject_id(), new_subject_id()
    put_phone(server, consenting, PHONE_A)
    put_phone(server, other, PHONE_B)
    desk = server.client("privacy-desk")

    set_consent(desk, consenting, True)

    assert marketing_read(desk, consenting).value.phone.number == PHONE_A_E164
    error = marketing_refused(desk, other)
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "consent" in (error.details() or "")
    # And withdrawing for one leaves the other's consent alone.
    set_consent(desk, other, True)
    set_consent(desk, consenting, False)
    assert marketing_read(desk, other).value.phone.number == PHONE_B_E164
    assert marketing_refused(desk, consenting).code() is grpc.StatusCode.PERMISSION_DENIED


def test_only_callers_granted_consent_may_record_it(
    server: VaultServer, subject_id: str, run_vault: RunVault
) -> None:
    put_phone(server, subject_id, PHONE_A)
    desk = server.client("privacy-desk")
    for caller in WITHOUT_CONSENT_GRANT:
        error = rpc_error(
            server.client(caller).vault.SetConsent,
            pb.SetConsentRequest(subject_id=subject_id, purpose="marketing_sms", granted=True),
        )
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED, caller
        # The refused call recorded nothing: the subject still has not consented.
        assert marketing_refused(desk, subject_id).code() is grpc.StatusCode.PERMISSION_DENIED

    refused = cli(server, run_vault, "registration", "consent", subject_id, "marketing_sms")
    assert refused.returncode == 1
    assert "PERMISSION_DENIED" in refused.stderr
    error = rpc_error(
        desk.vault.SetConsent, pb.SetConsentRequest(subject_id=subject_id, purpose="", granted=True)
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "purpose" in (error.details() or "")

    # The command line records and withdraws it as the privacy desk.
    granted = cli(server, run_vault, "privacy-desk", "consent", subject_id, "marketing_sms")
    assert (granted.returncode, granted.stdout.strip()) == (0, "granted"), granted.stderr
    assert marketing_read(desk, subject_id).value.phone.number == PHONE_A_E164
    withdrawn = cli(
        server, run_vault, "privacy-desk", "consent", subject_id, "marketing_sms", "--withdraw"
    )
    assert (withdrawn.returncode, withdrawn.stdout.strip()) == (0, "withdrawn"), withdrawn.stderr
    assert marketing_refused(desk, subject_id).code() is grpc.StatusCode.PERMISSION_DENIED


def test_consent_changes_and_refusals_are_audited_without_values(
    server: VaultServer, subject_id: str
) -> None:
    put_phone(server, subject_id, PHONE_A)
    desk = server.client("privacy-desk")
    marketing_refused(desk, subject_id)
    set_consent(desk, subject_id, True)
    marketing_read(desk, subject_id)
    set_consent(desk, subject_id, False)
    marketing_refused(desk, subject_id)
    rpc_error(
        server.client("registration").vault.SetConsent,
        pb.SetConsentRequest(subject_id=subject_id, purpose="marketing_sms", granted=True),
    )

    events = events_of(server, subject_id)
    consents = [
        (e.caller, e.purpose, e.outcome, e.status_code)
        for e in events
        if e.action == pb.AUDIT_ACTION_CONSENT
    ]
    assert consents == [
        ("privacy-desk", "marketing_sms", pb.AUDIT_OUTCOME_OK, "OK"),
        ("privacy-desk", "marketing_sms", pb.AUDIT_OUTCOME_OK, "OK"),
        ("registration", "marketing_sms", pb.AUDIT_OUTCOME_DENIED, "PERMISSION_DENIED"),
    ]
    reads = [
        (e.caller, e.action, e.purpose, e.outcome, e.status_code)
        for e in events
        if e.action in (pb.AUDIT_ACTION_GET, pb.AUDIT_ACTION_REVEAL)
    ]
    assert reads == [
        (
            "privacy-desk",
            pb.AUDIT_ACTION_GET,
            "marketing_sms",
            pb.AUDIT_OUTCOME_DENIED,
            "PERMISSION_DENIED",
        ),
        ("privacy-desk", pb.AUDIT_ACTION_REVEAL, "marketing_sms", pb.AUDIT_OUTCOME_OK, "OK"),
        (
            "privacy-desk",
            pb.AUDIT_ACTION_GET,
            "marketing_sms",
            pb.AUDIT_OUTCOME_DENIED,
            "PERMISSION_DENIED",
        ),
    ]
    assert_no_secrets(event_texts(events), "an audit event")
    # Each event says why, in words and never a value.
    assert [
        e.detail
        for e in events
        if e.action == pb.AUDIT_ACTION_CONSENT and e.outcome == pb.AUDIT_OUTCOME_OK
    ] == [
        "granted",
        "withdrawn",
    ]
    assert [
        e.detail
        for e in events
        if e.action == pb.AUDIT_ACTION_GET and e.outcome == pb.AUDIT_OUTCOME_DENIED
    ] == [
        "no consent",
        "no consent",
    ]


# -- canaries ----------------------------------------------------------------------------------
def test_a_planted_canary_is_refused_and_raises_an_alarm(
    server: VaultServer, new_subject_id: Callable[[], str], run_vault: RunVault
) -> None:
    decoy, bystander = new_subject_id(), new_subject_id()
    registration = server.client("registration")
    desk = server.client("privacy-desk")
    for subject in (decoy, bystander):
        registration.vault.PutField(
            pb.PutFieldRequest(subject_id=subject, field="email", value=pb.FieldValue(email=EMAIL)),
            timeout=TIMEOUT,
        )
    put_phone(server, bystander, PHONE_B)
    # The server has read (and cached) the canary list before the plant.
    masked(registration, decoy, "email")
    alarms_before = server.output.count("CANARY READ")

    planted = run_vault(
        "canary",
        "plant",
        "--data-dir",
        str(server.data_dir),
        decoy,
        "phone",
        "--type",
        "phone",
        stdin=DECOY_PHONE + "\n",
    )
    planted_at = time.monotonic()
    assert planted.returncode == 0, planted.stderr
    assert f"canary planted: {decoy}/phone" in planted.stdout
    assert_no_secrets([planted.stdout, planted.stderr], "the canary command's output")

    # Within the refresh interval, a masked read of the decoy is refused.
    deadline = planted_at + CANARY_REFRESH_SECONDS + CANARY_SLACK_SECONDS
    while True:
        try:
            masked(registration, decoy, "phone")
        except grpc.RpcError as error:
            assert error.code() is grpc.StatusCode.PERMISSION_DENIED, error
            refused = error
            break
        assert time.monotonic() < deadline, "a canary read was still served after the refresh"
        time.sleep(0.2)
    assert_no_secrets([refused.details() or ""], "the canary refusal")

    # Every way to its value is shut: list, plaintext read, export.
    listed = rpc_error(registration.vault.ListFields, pb.ListFieldsRequest(subject_id=decoy))
    assert listed.code() is grpc.StatusCode.PERMISSION_DENIED
    revealed = rpc_error(
        desk.vault.GetField,
        pb.GetFieldRequest(subject_id=decoy, field="phone", view=pb.VIEW_PLAINTEXT, purpose="dsar"),
    )
    assert revealed.code() is grpc.StatusCode.PERMISSION_DENIED
    exported = rpc_error(
        desk.vault.ExportSubject, pb.ExportSubjectRequest(subject_id=decoy, purpose="dsar")
    )
    assert exported.code() is grpc.StatusCode.PERMISSION_DENIED

    # Other fields and other subjects are unaffected.
    assert masked(registration, decoy, "email").view.masked == "C***@example.net"
    assert masked(registration, bystander, "phone").view.masked == "+372 **** **02"
    bystander_fields = registration.vault.ListFields(
        pb.ListFieldsRequest(subject_id=bystander), timeout=TIMEOUT
    )
    assert sorted(f.field for f in bystander_fields.fields) == ["email", "phone"]
    assert (
        desk.vault.GetField(
            pb.GetFieldRequest(
                subject_id=bystander, field="phone", view=pb.VIEW_PLAINTEXT, purpose="dsar"
            ),
            timeout=TIMEOUT,
        ).value.phone.number
        == PHONE_B_E164
    )

    # The alarm: in the server log, and in the audit log as a canary event.
    log = server.output
    assert log.count("CANARY READ") >= alarms_before + 4
    alarm_lines = [line for line in log.splitlines() if "CANARY READ" in line]
    assert any("registration" in line and decoy in line for line in alarm_lines)
    assert_no_secrets(alarm_lines, "the alarm log lines")

    events = events_of(server, decoy)
    canary_events = [e for e in events if e.outcome == pb.AUDIT_OUTCOME_CANARY]
    assert {(e.caller, e.action, e.field) for e in canary_events} >= {
        ("registration", pb.AUDIT_ACTION_GET, "phone"),
        ("registration", pb.AUDIT_ACTION_LIST, "phone"),
        ("privacy-desk", pb.AUDIT_ACTION_GET, "phone"),
        ("privacy-desk", pb.AUDIT_ACTION_EXPORT, "phone"),
    }
    assert {e.status_code for e in canary_events} == {"PERMISSION_DENIED"}
    assert ("admin", pb.AUDIT_ACTION_CANARY, "phone", pb.AUDIT_OUTCOME_OK) in {
        (e.caller, e.action, e.field, e.outcome) for e in events
    }
    assert_no_secrets(event_texts(events), "an audit event")
    assert all("severity=high" in e.detail for e in canary_events), canary_events
    # The bystander's log shows no alarm.
    assert not [e for e in events_of(server, bystander) if e.outcome == pb.AUDIT_OUTCOME_CANARY]


def test_planting_a_canary_refuses_an_invalid_decoy_value(
    server: VaultServer, subject_id: str, run_vault: RunVault
) -> None:
    bad = run_vault(
        "canary",
        "plant",
        "--data-dir",
        str(server.data_dir),
        subject_id,
        "phone",
        "--type",
        "phone",
        stdin="not a phone number\n",
    )
    assert bad.returncode != 0
    assert "not a valid phone number" in bad.stderr
    assert "not a phone number" not in bad.stderr  # the input is not echoed back
    # Nothing was planted: the subject has no such field.
    error = rpc_error(
        server.client("registration").vault.GetField,
        pb.GetFieldRequest(subject_id=subject_id, field="phone"),
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
