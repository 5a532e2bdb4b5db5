"""PutField as a way round holds and grants: destroying a value by writing over it.

Before, a put over an existing field replaced it whatever stood in the way:
under a legal hold it destroyed the held value, and a caller allowed to put
phones overwrote ``card.primary`` with a phone, destroying a card it may not
delete. Puts left no audit event.

Now an overwrite is refused under a hold exactly as a delete is
(``FAILED_PRECONDITION``, audited), a put that would change a field's type
needs the delete grant on the field (``PERMISSION_DENIED`` naming only the
request, audited), and every put is audited, an overwrite as a replacement.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import grpc
import pytest
from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import VaultClient

if TYPE_CHECKING:
    from vault_server import VaultServer

TIMEOUT = 10
DEADLINE = 20.0
PHONE = "+372 5123 4567"
OTHER_PHONE = "+372 5876 5432"
VISA_PAN = "4111 1111 1111 1111"


def phone(number: str) -> pb.FieldValue:
    return pb.FieldValue(phone=pb.PhoneNumber(number=number))


def put(client: VaultClient, subject: str, field: str, value: pb.FieldValue) -> pb.FieldView:
    return client.vault.PutField(  # type: ignore[no-any-return]
        pb.PutFieldRequest(subject_id=subject, field=field, value=value), timeout=TIMEOUT
    ).view


def refused(call: Callable[[], object]) -> grpc.Call:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return cast(grpc.Call, caught.value)


def put_events(admin: VaultClient, subject: str, expected: int) -> list[tuple[str, ...]]:
    """The subject's ``put`` events, once ``expected`` of them landed (routine ones are
    appended in batches), as sorted (caller, field, outcome, status, detail)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        page = admin.audit.ListEvents(
            pb.ListEventsRequest(subject_id=subject, action=pb.AUDIT_ACTION_PUT, page_size=100),
            timeout=TIMEOUT,
        )
        if len(page.events) >= expected or time.monotonic() > deadline:
            return sorted(
                (e.caller, e.field, e.outcome, e.status_code, e.detail) for e in page.events
            )
        time.sleep(0.05)


def test_a_put_over_a_held_field_is_refused_and_the_value_survives(
    vault_server: VaultServer, subject_id: str
) -> None:
    registration = vault_server.client("registration")
    desk = vault_server.client("privacy-desk")
    put(registration, subject_id, "phone", phone(PHONE))
    desk.vault.SetLegalHold(
        pb.SetLegalHoldRequest(subject_id=subject_id, hold=True, reason="litigation"),
        timeout=TIMEOUT,
    )

    error = refused(lambda: put(registration, subject_id, "phone", phone(OTHER_PHONE)))

    # Before: OK, and the held number was destroyed with its data key.
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "legal hold" in (error.details() or "")
    held = desk.vault.GetField(
        pb.GetFieldRequest(
            subject_id=subject_id, field="phone", view=pb.VIEW_PLAINTEXT, purpose="dsar"
        ),
        timeout=TIMEOUT,
    )
    assert (held.value.phone.number, held.view.version) == ("+37251234567", 1)
    assert put_events(vault_server.client("admin"), subject_id, 2) == [
        ("registration", "phone", pb.AUDIT_OUTCOME_OK, "OK", "created"),
        ("registration", "phone", pb.AUDIT_OUTCOME_REFUSED, "FAILED_PRECONDITION", "legal hold"),
    ]


def test_a_phone_only_caller_cannot_overwrite_a_card(
    vault_server: VaultServer, subject_id: str
) -> None:
    checkout = vault_server.client("checkout")
    registration = vault_server.client("registration")
    card = pb.FieldValue(card=pb.PaymentCard(pan=VISA_PAN, exp_month=12, exp_year=2030))
    put(checkout, subject_id, "card.primary", card)

    error = refused(lambda: put(registration, subject_id, "card.primary", phone(PHONE)))

    # Before: OK, and the card (which registration may not delete) was gone.
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    # The refusal names the request (caller, field), never the stored type.
    assert error.details() == (
        "no grant allows caller 'registration' to replace field 'card.primary' "
        "with a value of another type"
    )
    kept = checkout.vault.GetField(
        pb.GetFieldRequest(subject_id=subject_id, field="card.primary"), timeout=TIMEOUT
    ).view
    assert (kept.type, kept.version) == (pb.FIELD_TYPE_CARD, 1)
    assert kept.masked.endswith("1111 (12/30)")
    assert put_events(vault_server.client("admin"), subject_id, 2) == [
        ("checkout", "card.primary", pb.AUDIT_OUTCOME_OK, "OK", "created"),
        (
            "registration",
            "card.primary",
            pb.AUDIT_OUTCOME_DENIED,
            "PERMISSION_DENIED",
            "type change without the delete grant",
        ),
    ]


def test_every_put_leaves_an_audit_event_and_an_overwrite_is_a_replacement(
    vault_server: VaultServer, subject_id: str
) -> None:
    registration = vault_server.client("registration")
    put(registration, subject_id, "phone", phone(PHONE))
    put(registration, subject_id, "phone", phone(OTHER_PHONE))
    put(registration, subject_id, "email", pb.FieldValue(email="jane.doe@example.com"))

    events = put_events(vault_server.client("admin"), subject_id, 3)

    # Before: no put left any trace.
    assert events == [
        ("registration", "email", pb.AUDIT_OUTCOME_OK, "OK", "created"),
        ("registration", "phone", pb.AUDIT_OUTCOME_OK, "OK", "created"),
        ("registration", "phone", pb.AUDIT_OUTCOME_OK, "OK", "replaced"),
    ]
    flat = " ".join(" ".join(map(str, event)) for event in events)
    assert "5123" not in flat and "jane" not in flat
