"""Data-subject exports and the audit service, end to end.

The privacy desk answers a data-subject request with ``ExportSubject``: every
field of the person in plaintext, who read what of it and when, and the same
export as a signed file that ``pii-vault receipts verify`` checks offline.
Operators page through the hash-chained audit log with ``ListEvents`` and
recompute it with ``VerifyChain``; a row edited behind the server's back is
named by its position. Every test talks to the real server over mutual TLS
with the certificate of the caller it plays, or runs ``pii-vault`` as its own
process, and (except the tamper test, which edits SQLite rows) runs once per
store.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf import json_format, timestamp_pb2
from google.rpc import error_details_pb2
from google.type import date_pb2, postal_address_pb2
from grpc_status import rpc_status
from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import VaultClient
from vault.domain.shredding import signed_document, verify_receipt_document

if TYPE_CHECKING:
    from vault_server import VaultServer

RunVault = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.e2e

# Distinctive values, so a scan for them cannot match anything else by chance.
PHONE = "+372 5839 1146"
PHONE_E164 = "+37258391146"
EMAIL = "Dsar.Quillfeather@Example.ORG"
EMAIL_NORMAL = "Dsar.Quillfeather@example.org"
NAME = "Margit Quillfeather-Tamm"
ADDRESS_LINE = "Vindikolli tee 17-4"
POSTAL_CODE = "10115"
PAN = "4000056655665556"
HOLDER = "MARGIT QUILLFEATHER"
STRIPE_TOKEN = "pm_1Ndsarexportzq9f3a"
VISA_TEST_PAN = "4242424242424242"
DOB = (1987, 4, 23)

# Every stored value in the forms a leak could take: as given and normalised.
SECRETS = (
    PHONE,
    PHONE_E164,
    PHONE_E164[1:],
    "58391146",
    EMAIL,
    EMAIL_NORMAL,
    "quillfeather",
    "Quillfeather",
    "Vindikolli",
    PAN,
    STRIPE_TOKEN,
    "zq9f3a",
    "1987-04-23",
)

REGISTRATION_FIELDS = {
    "phone": pb.FieldValue(phone=pb.PhoneNumber(number=PHONE)),
    "email": pb.FieldValue(email=EMAIL),
    "name": pb.FieldValue(name=NAME),
    "address.home": pb.FieldValue(
        address=postal_address_pb2.PostalAddress(
            region_code="EE",
            address_lines=[ADDRESS_LINE],
            locality="Tallinn",
            postal_code=POSTAL_CODE,
        )
    ),
    "date_of_birth": pb.FieldValue(
        date_of_birth=date_pb2.Date(year=DOB[0], month=DOB[1], day=DOB[2])
    ),
}
CHECKOUT_FIELDS = {
    "card.primary": pb.FieldValue(
        card=pb.PaymentCard(pan=PAN, exp_month=11, exp_year=2031, holder_name=HOLDER)
    ),
    "payment_token.stripe": pb.FieldValue(
        payment_token=pb.PaymentToken(provider="stripe", token=STRIPE_TOKEN)
    ),
}
ALL_FIELDS = {**REGISTRATION_FIELDS, **CHECKOUT_FIELDS}

# What the export must hand back: the normalised plaintext of each field.
EXPECTED_VALUES = {
    "phone": pb.FieldValue(phone=pb.PhoneNumber(number=PHONE_E164)),
    "email": pb.FieldValue(email=EMAIL_NORMAL),
    "name": pb.FieldValue(name=NAME),
    "address.home": REGISTRATION_FIELDS["address.home"],
    "date_of_birth": REGISTRATION_FIELDS["date_of_birth"],
    "card.primary": CHECKOUT_FIELDS["card.primary"],
    "payment_token.stripe": CHECKOUT_FIELDS["payment_token.stripe"],
}
EXPECTED_MASKS = {
    "phone": "+372 **** **46",
    "card.primary": "VISA **** 5556 (11/31)",
    "payment_token.stripe": "stripe ****9f3a",
}

NON_ADMINS = ("registration", "checkout", "deletion", "privacy-desk")
TIMEOUT = 15


# -- helpers -----------------------------------------------------------------------------------
def rpc_error(call: Callable[..., object], request: object) -> grpc.RpcError:
    """The error ``call(request)`` fails with; the test fails if it succeeds."""
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=TIMEOUT)
    return caught.value


def store_everything(server: VaultServer, subject: str) -> None:
    """Contact data by registration, a card and a payment token by checkout."""
    for caller, values in (("registration", REGISTRATION_FIELDS), ("checkout", CHECKOUT_FIELDS)):
        client = server.client(caller)
        for field, value in values.items():
            client.vault.PutField(
                pb.PutFieldRequest(subject_id=subject, field=field, value=value), timeout=TIMEOUT
            )


def get(
    client: VaultClient,
    subject: str,
    field: str,
    view: pb.View.ValueType = pb.VIEW_MASKED,
    purpose: str = "",
) -> pb.GetFieldResponse:
    return client.vault.GetField(
        pb.GetFieldRequest(subject_id=subject, field=field, view=view, purpose=purpose),
        timeout=TIMEOUT,
    )


def export(client: VaultClient, subject: str, purpose: str = "dsar") -> pb.ExportSubjectResponse:
    return client.vault.ExportSubject(
        pb.ExportSubjectRequest(subject_id=subject, purpose=purpose), timeout=TIMEOUT
    )


def list_events(admin: VaultClient, **filters: object) -> pb.ListEventsResponse:
    return admin.audit.ListEvents(pb.ListEventsRequest(**filters), timeout=TIMEOUT)  # type: ignore[arg-type]


def all_events(admin: VaultClient, page_size: int = 1000, **filters: object) -> list[pb.AuditEvent]:
    """Every event matching ``filters``, following next_page_token to the end."""
    events: list[pb.AuditEvent] = []
    token = ""
    for _ in range(100_000):
        page = list_events(admin, page_size=page_size, page_token=token, **filters)
        events.extend(page.events)
        token = page.next_page_token
        if not token:
            return events
    raise AssertionError("ListEvents never stopped handing out page tokens")


def stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(moment)
    return result


def event_time(event: pb.AuditEvent) -> datetime:
    return event.time.ToDatetime(UTC)


def text_of(event: pb.AuditEvent) -> str:
    """Every string an event carries (hashes are bytes of a digest, not text)."""
    return json.dumps(json_format.MessageToDict(event, preserving_proto_field_name=True))


def assert_no_secrets(texts: Iterable[str], where: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret.lower() not in text.lower(), f"{secret!r} found in {where}: {text}"


def cli(
    server: VaultServer, run_vault: RunVault, caller: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """``pii-vault COMMAND [SUBCOMMAND] --data-dir DIR --as CALLER --target T ARGS``."""
    common = ("--data-dir", str(server.data_dir), "--as", caller, "--target", server.target)
    if args[0] == "audit":
        return run_vault(*args[:2], *common, *args[2:])
    return run_vault(args[0], *common, *args[1:])


# -- ExportSubject -----------------------------------------------------------------------------
def test_the_privacy_desk_exports_every_field_in_plaintext_with_its_access_history(
    vault_server: VaultServer, subject_id: str, new_subject_id: Callable[[], str]
) -> None:
    store_everything(vault_server, subject_id)
    other = new_subject_id()
    vault_server.client("registration").vault.PutField(
        pb.PutFieldRequest(
            subject_id=other,
            field="phone",
            value=pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567")),
        ),
        timeout=TIMEOUT,
    )
    registration = vault_server.client("registration")
    checkout = vault_server.client("checkout")
    desk = vault_server.client("privacy-desk")
    admin = vault_server.client("admin")

    # Earlier traffic on the subject: a reveal, a denial, and masked reads that
    # are batched into the log a moment later -- the export must not miss them.
    assert (
        get(desk, subject_id, "phone", pb.VIEW_PLAINTEXT, "dsar").value.phone.number == PHONE_E164
    )
    denied = rpc_error(
        checkout.vault.GetField,
        pb.GetFieldRequest(
            subject_id=subject_id, field="card.primary", view=pb.VIEW_PLAINTEXT, purpose="checkout"
        ),
    )
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
    get(registration, other, "phone")
    get(registration, subject_id, "phone")
    get(registration, subject_id, "email", pb.VIEW_TOKEN)

    exported = export(desk, subject_id)

    # Every field, in plaintext, with its view.
    by_field = {item.view.field: item for item in exported.fields}
    assert sorted(by_field) == sorted(ALL_FIELDS)
    for field, item in by_field.items():
        assert item.value == EXPECTED_VALUES[field], field
        assert item.view.subject_id == subject_id
        assert item.view.masked, field
        assert item.view.version == 1
        assert item.view.token.startswith("tok_"), field
    for field, masked in EXPECTED_MASKS.items():
        assert by_field[field].view.masked == masked
    assert by_field["phone"].view.type == pb.FIELD_TYPE_PHONE
    assert by_field["card.primary"].view.card.last4 == "5556"
    assert by_field["address.home"].view.address.region_code == "EE"

    # The access history: this subject's events only, the reads above included.
    history = list(exported.access_history)
    assert history, "the export carries no access history"
    assert {event.subject_id for event in history} == {subject_id}
    seen = {(e.caller, e.action, e.field, e.view, e.purpose, e.outcome) for e in history}
    assert ("registration", pb.AUDIT_ACTION_GET, "phone", "masked", "", pb.AUDIT_OUTCOME_OK) in seen
    assert ("registration", pb.AUDIT_ACTION_GET, "email", "token", "", pb.AUDIT_OUTCOME_OK) in seen
    assert (
        "privacy-desk",
        pb.AUDIT_ACTION_REVEAL,
        "phone",
        "plaintext",
        "dsar",
        pb.AUDIT_OUTCOME_OK,
    ) in seen
    assert (
        "checkout",
        pb.AUDIT_ACTION_GET,
        "card.primary",
        "plaintext",
        "checkout",
        pb.AUDIT_OUTCOME_DENIED,
    ) in seen
    times = [event_time(e) for e in history]
    assert all(t.year >= 2024 for t in times)
    assert_no_secrets((text_of(e) for e in history), "the export's access history")

    # The export is itself in the audit log, and the next export's history.
    logged = list_events(admin, subject_id=subject_id, action=pb.AUDIT_ACTION_EXPORT).events
    assert [(e.caller, e.purpose, e.view, e.outcome, e.detail) for e in logged] == [
        ("privacy-desk", "dsar", "plaintext", pb.AUDIT_OUTCOME_OK, f"{len(ALL_FIELDS)} fields")
    ]
    again = export(desk, subject_id)
    assert ("privacy-desk", pb.AUDIT_ACTION_EXPORT, "dsar") in {
        (e.caller, e.action, e.purpose) for e in again.access_history
    }

    # The signed payload says what the response says, under the vault's key.
    document = json.loads(exported.payload)
    assert document["subject_id"] == subject_id
    assert document["purpose"] == "dsar"
    assert document["signing_key_id"] == exported.signing_key_id
    assert len(document["fields"]) == len(ALL_FIELDS)
    assert {f["view"]["field"]: f["value"] for f in document["fields"]} == {
        field: json_format.MessageToDict(value, preserving_proto_field_name=True)
        for field, value in EXPECTED_VALUES.items()
    }
    assert len(document["access_history"]) == len(history)
    public_key = (vault_server.data_dir / "receipt-signing.pub").read_bytes()
    signed = signed_document("export", exported.payload, exported.signature)
    assert verify_receipt_document(signed, public_key)
    forged = signed_document(
        "export", exported.payload.replace(b"5556", b"5557"), exported.signature
    )
    assert not verify_receipt_document(forged, public_key)


def test_exports_are_for_the_privacy_desk_and_purpose_dsar_only(
    vault_server: VaultServer, subject_id: str
) -> None:
    store_everything(vault_server, subject_id)
    desk = vault_server.client("privacy-desk")

    refusals: list[tuple[str, str]] = [("privacy-desk", ""), ("privacy-desk", "marketing")]
    refusals += [(caller, "dsar") for caller in ("registration", "checkout", "deletion", "admin")]
    for caller, purpose in refusals:
        error = rpc_error(
            vault_server.client(caller).vault.ExportSubject,
            pb.ExportSubjectRequest(subject_id=subject_id, purpose=purpose),
        )
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED, (caller, purpose, error)
        assert_no_secrets([error.details() or ""], f"the refusal of {caller}")

    # Each refusal is audited as a denied export, and none of them exported anything.
    admin = vault_server.client("admin")
    logged = list_events(admin, subject_id=subject_id, action=pb.AUDIT_ACTION_EXPORT).events
    assert sorted((e.caller, e.purpose, e.outcome) for e in logged) == sorted(
        (caller, purpose, pb.AUDIT_OUTCOME_DENIED) for caller, purpose in refusals
    )
    assert {e.status_code for e in logged} == {"PERMISSION_DENIED"}

    # The same caller with the right purpose still gets everything.
    assert len(export(desk, subject_id).fields) == len(ALL_FIELDS)
    error = rpc_error(
        desk.vault.ExportSubject,
        pb.ExportSubjectRequest(subject_id=subject_id + "-nobody", purpose="dsar"),
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND


def test_the_command_line_writes_a_signed_export_that_verifies_until_edited(
    vault_server: VaultServer, subject_id: str, run_vault: RunVault, tmp_path: Path
) -> None:
    store_everything(vault_server, subject_id)
    get(vault_server.client("registration"), subject_id, "phone")
    out = tmp_path / "dsar.json"
    out.write_text("an older file, world-readable")
    out.chmod(0o644)

    done = cli(vault_server, run_vault, "privacy-desk", "export", subject_id, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.stat().st_mode & 0o777 == 0o600  # plaintext personal data: owner only
    assert f"exported {len(ALL_FIELDS)} fields to {out}" in done.stdout
    assert PHONE_E164 not in done.stdout  # the values went to the file, not the terminal
    document = json.loads(out.read_text())
    assert sorted(document) == ["export", "signature"]
    fields = {f["view"]["field"]: f["value"] for f in document["export"]["fields"]}
    assert fields["phone"] == {"phone": {"number": PHONE_E164}}
    assert fields["card.primary"]["card"]["pan"] == PAN
    assert fields["email"] == {"email": EMAIL_NORMAL}
    assert any(
        e["caller"] == "registration" and e["action"] == "get" and e["field"] == "phone"
        for e in document["export"]["access_history"]
    )

    def verify(path: Path) -> subprocess.CompletedProcess[str]:
        return run_vault("receipts", "verify", "--data-dir", str(vault_server.data_dir), str(path))

    checked = verify(out)
    assert checked.returncode == 0, checked.stderr
    assert f"valid: export of subject {subject_id} for purpose dsar, {len(ALL_FIELDS)} fields" in (
        checked.stdout
    )

    def field_value(doc: Any, name: str) -> Any:
        for item in doc["export"]["fields"]:
            if item["view"]["field"] == name:
                return item["value"]
        raise AssertionError(name)

    edits: dict[str, Callable[[Any], object]] = {
        "phone number": lambda d: field_value(d, "phone")["phone"].update(number="+37258391147"),
        "e-mail": lambda d: field_value(d, "email").update(email="someone@example.org"),
        "card number": lambda d: field_value(d, "card.primary")["card"].update(pan=VISA_TEST_PAN),
        "masked view": lambda d: d["export"]["fields"][0]["view"].update(masked="***"),
        "dropped field": lambda d: d["export"]["fields"].pop(),
        "subject": lambda d: d["export"].update(subject_id="someone-else"),
        "purpose": lambda d: d["export"].update(purpose="audit"),
        "access history": lambda d: d["export"]["access_history"].pop(0),
        "signature": lambda d: d.update(signature="A" * len(d["signature"])),
    }
    for what, edit in edits.items():
        tampered = json.loads(out.read_text())
        edit(tampered)
        assert tampered != document, what
        path = tmp_path / "edited.json"
        path.write_text(json.dumps(tampered, indent=2, sort_keys=True))
        result = verify(path)
        assert result.returncode == 1, f"an edited {what} was accepted: {result.stdout}"
        assert "INVALID" in result.stderr, what
    # The untouched file still verifies: the failures above were the edits' doing.
    assert verify(out).returncode == 0


# -- AuditService ------------------------------------------------------------------------------
def test_operators_verify_and_page_through_the_audit_log(
    vault_server: VaultServer, subject_id: str, new_subject_id: Callable[[], str]
) -> None:
    store_everything(vault_server, subject_id)
    registration = vault_server.client("registration")
    desk = vault_server.client("privacy-desk")
    admin = vault_server.client("admin")
    other = new_subject_id()
    registration.vault.PutField(
        pb.PutFieldRequest(
            subject_id=other, field="email", value=pb.FieldValue(email="x@example.net")
        ),
        timeout=TIMEOUT,
    )
    get(registration, other, "email")

    # Before the window: masked reads (batched) and a reveal.
    for field in ("phone", "email", "name"):
        get(registration, subject_id, field)
    get(desk, subject_id, "email", pb.VIEW_PLAINTEXT, "dsar")
    time.sleep(0.05)
    window_start = datetime.now(UTC)
    time.sleep(0.05)
    # In the window: two reveals, a masked read and a denial.
    get(desk, subject_id, "phone", pb.VIEW_PLAINTEXT, "dsar")
    get(desk, subject_id, "card.primary", pb.VIEW_PLAINTEXT, "dsar")
    get(registration, subject_id, "date_of_birth")
    rpc_error(
        registration.vault.GetField,
        pb.GetFieldRequest(
            subject_id=subject_id, field="phone", view=pb.VIEW_PLAINTEXT, purpose="dsar"
        ),
    )
    time.sleep(0.05)
    window_end = datetime.now(UTC)
    time.sleep(0.05)
    # After the window.
    get(desk, subject_id, "name", pb.VIEW_PLAINTEXT, "dsar")
    get(registration, subject_id, "address.home")

    # The whole chain verifies.
    check = admin.audit.VerifyChain(pb.VerifyChainRequest(), timeout=TIMEOUT)
    assert check.ok, check.problem
    assert check.events_checked > 0
    assert check.first_bad_position == -1
    assert check.problem == ""

    # Subject filter: that subject's events only, in sequence order, masked reads included.
    mine = list_events(admin, subject_id=subject_id, page_size=1000)
    assert mine.next_page_token == ""
    events = list(mine.events)
    assert {e.subject_id for e in events} == {subject_id}
    sequences = [e.sequence for e in events]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == len(sequences)
    reads = [(e.caller, e.action, e.field) for e in events]
    for field in ("phone", "email", "name", "date_of_birth", "address.home"):
        assert ("registration", pb.AUDIT_ACTION_GET, field) in reads, field
    assert reads.count(("privacy-desk", pb.AUDIT_ACTION_REVEAL, "phone")) == 1
    assert all(e.hash and len(e.prev_hash) == len(e.hash) for e in events)
    assert all(e.sequence <= check.events_checked for e in events)

    # Pagination, two at a time: the same events, no duplicates, no gaps.
    walked: list[pb.AuditEvent] = []
    token = ""
    pages = 0
    while True:
        page = list_events(admin, subject_id=subject_id, page_size=2, page_token=token)
        assert len(page.events) <= 2
        walked.extend(page.events)
        pages += 1
        token = page.next_page_token
        if not token:
            break
        assert len(page.events) == 2
        assert pages < 1000
    assert [e.sequence for e in walked] == sequences
    assert walked == events
    assert pages == (len(events) + 1) // 2

    # The whole log, two at a time: every position from 1 to the head, once.
    everything = all_events(admin, page_size=2)
    assert [e.sequence for e in everything] == list(range(1, len(everything) + 1))
    assert len(everything) == admin.audit.VerifyChain(pb.VerifyChainRequest()).events_checked
    for before, after in itertools.pairwise(everything):
        assert after.prev_hash == before.hash
    assert other in {e.subject_id for e in everything}

    # Caller and action filters, alone and combined with the subject.
    by_desk = all_events(admin, caller="privacy-desk")
    assert by_desk and {e.caller for e in by_desk} == {"privacy-desk"}
    assert [e.sequence for e in by_desk] == [
        e.sequence for e in everything if e.caller == "privacy-desk"
    ]
    reveals = all_events(admin, action=pb.AUDIT_ACTION_REVEAL)
    assert reveals and {e.action for e in reveals} == {pb.AUDIT_ACTION_REVEAL}
    assert [e.sequence for e in reveals] == [
        e.sequence for e in everything if e.action == pb.AUDIT_ACTION_REVEAL
    ]
    desk_reveals = list_events(
        admin, subject_id=subject_id, caller="privacy-desk", action=pb.AUDIT_ACTION_REVEAL
    ).events
    assert sorted(e.field for e in desk_reveals) == ["card.primary", "email", "name", "phone"]
    denials = list_events(
        admin, subject_id=subject_id, caller="registration", action=pb.AUDIT_ACTION_GET
    ).events
    assert [e.outcome for e in denials].count(pb.AUDIT_OUTCOME_DENIED) == 1
    assert (
        list_events(
            admin, subject_id=subject_id, caller="checkout", action=pb.AUDIT_ACTION_REVEAL
        ).events
        == []
    )

    # Time window: exactly the events recorded between start (inclusive) and end.
    windowed = list(
        list_events(
            admin, subject_id=subject_id, start_time=stamp(window_start), end_time=stamp(window_end)
        ).events
    )
    assert windowed == [e for e in events if window_start <= event_time(e) < window_end]
    assert sorted((e.caller, e.action, e.field, e.outcome) for e in windowed) == sorted(
        [
            ("privacy-desk", pb.AUDIT_ACTION_REVEAL, "phone", pb.AUDIT_OUTCOME_OK),
            ("privacy-desk", pb.AUDIT_ACTION_REVEAL, "card.primary", pb.AUDIT_OUTCOME_OK),
            ("registration", pb.AUDIT_ACTION_GET, "date_of_birth", pb.AUDIT_OUTCOME_OK),
            ("registration", pb.AUDIT_ACTION_GET, "phone", pb.AUDIT_OUTCOME_DENIED),
        ]
    )
    since = list_events(admin, subject_id=subject_id, start_time=stamp(window_end)).events
    assert sorted((e.caller, e.field) for e in since) == [
        ("privacy-desk", "name"),
        ("registration", "address.home"),
    ]
    until = list_events(admin, subject_id=subject_id, end_time=stamp(window_start)).events
    assert ("privacy-desk", pb.AUDIT_ACTION_REVEAL, "email") in {
        (e.caller, e.action, e.field) for e in until
    }
    assert all(event_time(e) < window_start for e in until)


def test_only_operators_may_read_or_verify_the_audit_log(vault_server: VaultServer) -> None:
    for caller in NON_ADMINS:
        audit = vault_server.client(caller).audit
        error = rpc_error(audit.ListEvents, pb.ListEventsRequest())
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED, caller
        error = rpc_error(audit.VerifyChain, pb.VerifyChainRequest())
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED, caller
    # The refusals are themselves on the record.
    admin = vault_server.client("admin")
    denied = [
        e
        for e in all_events(admin)
        if e.outcome == pb.AUDIT_OUTCOME_DENIED and e.caller in NON_ADMINS
    ]
    assert {(e.caller, e.action) for e in denied} >= {
        (caller, action)
        for caller in NON_ADMINS
        for action in (pb.AUDIT_ACTION_AUDIT_LIST, pb.AUDIT_ACTION_AUDIT_VERIFY)
    }


@pytest.mark.parametrize(
    "token",
    ["not-a-token", "YWZ0ZXI6bm90LWEtbnVtYmVy", "YmVmb3JlOjM=", "%%%%", "after:3"],
    ids=["garbage", "after-not-a-number", "wrong-prefix", "not-base64", "unencoded"],
)
def test_a_bad_page_token_is_an_invalid_argument_naming_it(
    vault_server: VaultServer, token: str
) -> None:
    admin = vault_server.client("admin")
    error = rpc_error(admin.audit.ListEvents, pb.ListEventsRequest(page_size=2, page_token=token))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (error.details() or "")
    status = rpc_status.from_call(error)
    assert status is not None
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields += [v.field for v in bad_request.field_violations]
    assert fields == ["page_token"]


def test_no_audit_event_carries_a_value(
    vault_server: VaultServer, subject_id: str, run_vault: RunVault, tmp_path: Path
) -> None:
    """Every kind of traffic on a subject, then a scan of every field of every event."""
    store_everything(vault_server, subject_id)
    registration = vault_server.client("registration")
    checkout = vault_server.client("checkout")
    desk = vault_server.client("privacy-desk")
    admin = vault_server.client("admin")
    for field in ALL_FIELDS:
        get(desk, subject_id, field, pb.VIEW_PLAINTEXT, "dsar")
        get(desk, subject_id, field, pb.VIEW_TOKEN)
    for field in REGISTRATION_FIELDS:
        get(registration, subject_id, field)
    token = get(checkout, subject_id, "payment_token.stripe", pb.VIEW_TOKEN).view.token
    detokenized = checkout.vault.Detokenize(
        pb.DetokenizeRequest(token=token, purpose="checkout"), timeout=TIMEOUT
    )
    assert detokenized.value.payment_token.token == STRIPE_TOKEN
    registration.vault.FindSubjects(
        pb.FindSubjectsRequest(value=REGISTRATION_FIELDS["phone"]), timeout=TIMEOUT
    )
    rpc_error(
        checkout.vault.GetField,
        pb.GetFieldRequest(
            subject_id=subject_id, field="card.primary", view=pb.VIEW_PLAINTEXT, purpose="checkout"
        ),
    )
    rpc_error(
        registration.vault.PutField,
        pb.PutFieldRequest(
            subject_id=subject_id, field="card.x", value=CHECKOUT_FIELDS["card.primary"]
        ),
    )
    export(desk, subject_id)
    done = cli(
        vault_server,
        run_vault,
        "privacy-desk",
        "export",
        subject_id,
        "--out",
        str(tmp_path / "x.json"),
    )
    assert done.returncode == 0, done.stderr
    listed = cli(
        vault_server,
        run_vault,
        "admin",
        "audit",
        "list",
        "--subject",
        subject_id,
        "--limit",
        "1000",
    )
    assert listed.returncode == 0, listed.stderr

    events = all_events(admin)
    mine = [e for e in events if e.subject_id == subject_id]
    assert {e.action for e in mine} >= {
        pb.AUDIT_ACTION_GET,
        pb.AUDIT_ACTION_REVEAL,
        pb.AUDIT_ACTION_DETOKENIZE,
        pb.AUDIT_ACTION_EXPORT,
    }
    assert len(mine) >= 2 * len(ALL_FIELDS) + len(REGISTRATION_FIELDS)
    assert_no_secrets((text_of(e) for e in events), "an audit event")
    assert_no_secrets(listed.stdout.splitlines(), "`pii-vault audit list`")
    assert len(listed.stdout.splitlines()) == len(mine)
    assert_no_secrets(vault_server.output.splitlines(), "the server log")


# -- tampering (SQLite: the test edits rows behind the server's back) -----------------------
def test_an_edited_audit_row_breaks_the_chain_at_its_position(
    start_vault_server: type[VaultServer],
    tmp_path: Path,
    subject_id: str,
    run_vault: RunVault,
) -> None:
    server = start_vault_server(tmp_path / "vault")
    try:
        store_everything(server, subject_id)
        desk = server.client("privacy-desk")
        admin = server.client("admin")
        for field in ("phone", "email", "card.primary"):
            get(desk, subject_id, field, pb.VIEW_PLAINTEXT, "dsar")
        get(server.client("registration"), subject_id, "name")  # a batched event after them

        intact = cli(server, run_vault, "admin", "audit", "verify")
        assert intact.returncode == 0, intact.stderr
        total = admin.audit.VerifyChain(pb.VerifyChainRequest(), timeout=TIMEOUT).events_checked
        assert f"audit chain intact: {total} events" in intact.stdout

        reveals = list_events(admin, subject_id=subject_id, action=pb.AUDIT_ACTION_REVEAL).events
        target = next(e for e in reveals if e.field == "email")
        assert target.purpose == "dsar"
        assert target.sequence < total  # events follow it, so the break is in the middle
        path = server.data_dir / "vault.db"

        def set_purpose(purpose: str) -> None:
            with closing(sqlite3.connect(path, timeout=30)) as conn, conn:
                changed = conn.execute(
                    "UPDATE audit_events SET purpose = ? WHERE sequence = ?",
                    (purpose, target.sequence),
                ).rowcount
                assert changed == 1

        set_purpose("support")  # a reveal made to look routine

        broken = cli(server, run_vault, "admin", "audit", "verify")
        assert broken.returncode == 1, broken.stdout
        assert f"BROKEN at position {target.sequence}" in broken.stderr
        check = admin.audit.VerifyChain(pb.VerifyChainRequest(), timeout=TIMEOUT)
        assert not check.ok
        assert check.first_bad_position == target.sequence
        assert check.events_checked == target.sequence - 1
        assert check.problem

        # Put the row back: the chain verifies again, so the break was the edit's doing.
        set_purpose("dsar")
        assert admin.audit.VerifyChain(pb.VerifyChainRequest(), timeout=TIMEOUT).ok
        assert cli(server, run_vault, "admin", "audit", "verify").returncode == 0
    finally:
        code = server.stop()
    assert code == 0, server.output
