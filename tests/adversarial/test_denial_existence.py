"""Denials as an existence oracle: learning what a subject holds from how a denial reads.

Before, a caller without a grant for cards asking for ``billing`` got
``PERMISSION_DENIED: no grant ... allows get of card field 'billing'`` where a
missing field got ``NOT_FOUND``: the denial said the field existed and what
type it was. ``Detokenize`` looked the token up first and named its field's
type in the denial. Now a caller with no grant that could read a field gets
exactly the answer a missing field gets (same status, same message), a token
whose field it may not detokenize answers as an unknown token, and denial
messages name only the caller's request; the audit log still records each
denial, for the operator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import VaultClient
from vault.policy import DEFAULT_POLICY_TOML

if TYPE_CHECKING:
    from vault_server import VaultServer

TIMEOUT = 10
PAN = "4000056655665556"
UNKNOWN_TOKEN = "tok_" + "a" * 32  # well-formed; no field holds it


def card() -> pb.FieldValue:
    return pb.FieldValue(card=pb.PaymentCard(pan=PAN, exp_month=11, exp_year=2031))


def phone() -> pb.FieldValue:
    return pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567"))


def answer(call: Callable[..., object], request: object) -> tuple[grpc.StatusCode, str]:
    """How a refused call reads to the caller: status and message."""
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=TIMEOUT)
    return caught.value.code(), caught.value.details() or ""


def store_card(server: VaultServer, subject: str, field: str = "billing") -> str:
    """checkout stores a card under a name that does not say it is a card; returns its token."""
    checkout = server.client("checkout")
    checkout.vault.PutField(
        pb.PutFieldRequest(subject_id=subject, field=field, value=card()), timeout=TIMEOUT
    )
    return checkout.vault.GetField(
        pb.GetFieldRequest(subject_id=subject, field=field, view=pb.VIEW_TOKEN), timeout=TIMEOUT
    ).view.token


def denials(admin: VaultClient, subject: str) -> list[pb.AuditEvent]:
    page = admin.audit.ListEvents(
        pb.ListEventsRequest(subject_id=subject, page_size=1000), timeout=TIMEOUT
    )
    return [e for e in page.events if e.outcome == pb.AUDIT_OUTCOME_DENIED]


def test_a_field_the_caller_may_not_read_answers_exactly_as_a_missing_one(
    vault_server: VaultServer, new_subject_id: Callable[[], str]
) -> None:
    holder, empty = new_subject_id(), new_subject_id()
    store_card(vault_server, holder)
    registration = vault_server.client("registration")  # granted phones, e-mails, ...: no cards
    registration.vault.PutField(
        pb.PutFieldRequest(subject_id=empty, field="phone", value=phone()), timeout=TIMEOUT
    )

    def get(subject: str, field: str) -> tuple[grpc.StatusCode, str]:
        return answer(
            registration.vault.GetField, pb.GetFieldRequest(subject_id=subject, field=field)
        )

    existing = get(holder, "billing")
    assert existing == get(empty, "billing") == get(new_subject_id(), "billing")
    assert existing == (grpc.StatusCode.NOT_FOUND, "field not found")
    # In a batch too, item by item.
    batch = registration.vault.BatchGetFields(
        pb.BatchGetFieldsRequest(
            items=[
                pb.GetFieldRequest(subject_id=holder, field="billing"),
                pb.GetFieldRequest(subject_id=empty, field="billing"),
            ]
        ),
        timeout=TIMEOUT,
    )
    first, second = (result.error for result in batch.results)
    assert (first.code, first.message) == (second.code, second.message)
    # The operator still sees what was tried and refused.
    logged = denials(vault_server.client("admin"), holder)
    assert [(e.caller, e.action, e.field, e.status_code) for e in logged] == [
        ("registration", pb.AUDIT_ACTION_GET, "billing", "NOT_FOUND")
    ] * 2


def test_detokenize_decides_policy_before_it_says_anything_about_the_token(
    vault_server: VaultServer, subject_id: str
) -> None:
    token = store_card(vault_server, subject_id)
    assert token.startswith("tok_") and token != UNKNOWN_TOKEN
    # checkout may detokenize payment tokens (purpose checkout), not cards: the card's
    # token reads exactly as a token no field holds.
    checkout = vault_server.client("checkout")
    valid = answer(checkout.vault.Detokenize, pb.DetokenizeRequest(token=token, purpose="checkout"))
    unknown = answer(
        checkout.vault.Detokenize, pb.DetokenizeRequest(token=UNKNOWN_TOKEN, purpose="checkout")
    )
    assert valid == unknown == (grpc.StatusCode.NOT_FOUND, "no field holds this token")
    # A caller with no detokenize grant at all is refused before the lookup, alike.
    registration = vault_server.client("registration")
    for purpose in ("checkout", "dsar"):
        valid = answer(
            registration.vault.Detokenize, pb.DetokenizeRequest(token=token, purpose=purpose)
        )
        unknown = answer(
            registration.vault.Detokenize,
            pb.DetokenizeRequest(token=UNKNOWN_TOKEN, purpose=purpose),
        )
        assert valid == unknown
        assert valid[0] is grpc.StatusCode.PERMISSION_DENIED
        assert "card" not in valid[1] and "billing" not in valid[1] and subject_id not in valid[1]
    # The refused card token is on the subject's record, as a denial answered NOT_FOUND.
    logged = denials(vault_server.client("admin"), subject_id)
    assert [(e.caller, e.action, e.status_code) for e in logged] == [
        ("checkout", pb.AUDIT_ACTION_DETOKENIZE, "NOT_FOUND")
    ]


def test_denial_messages_name_the_request_never_the_stored_type(
    vault_server: VaultServer, subject_id: str
) -> None:
    store_card(vault_server, subject_id)
    # checkout may read cards masked, so it may know the field exists; its refusal of the
    # plaintext still names only what it asked for.
    checkout = vault_server.client("checkout")
    code, message = answer(
        checkout.vault.GetField,
        pb.GetFieldRequest(
            subject_id=subject_id, field="billing", view=pb.VIEW_PLAINTEXT, purpose="checkout"
        ),
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "checkout" in message and "'billing'" in message and "plaintext" in message
    assert "card" not in message
    masked = pb.GetFieldRequest(subject_id=subject_id, field="billing")
    plaintext = pb.GetFieldRequest(
        subject_id=subject_id, field="billing", view=pb.VIEW_PLAINTEXT, purpose="support"
    )
    refused = [
        (caller, request)
        for caller in ("registration", "deletion", "admin")
        for request in (masked, plaintext)
    ] + [("privacy-desk", plaintext)]  # privacy-desk reads the masked view: not refused
    for caller, request in refused:
        _, message = answer(vault_server.client(caller).vault.GetField, request)
        assert "card" not in message, (caller, message)


# -- a policy with narrower grants: delete, export and list ---------------------------------

NARROW_POLICY = DEFAULT_POLICY_TOML.replace(
    '[[callers.deletion.grants]]\nactions = ["delete", "shred"]\nfield_types = ["*"]\n',
    # deletion may read and delete phones, and export them for a DSAR: never a card.
    '[[callers.deletion.grants]]\nactions = ["get", "delete"]\nfield_types = ["phone"]\n\n'
    '[[callers.deletion.grants]]\nactions = ["export"]\nfield_types = ["phone"]\n'
    'purposes = ["dsar"]\n',
)
assert NARROW_POLICY != DEFAULT_POLICY_TOML


@pytest.fixture(scope="module")
def narrow_server(
    tmp_path_factory: pytest.TempPathFactory, start_vault_server: type[VaultServer]
) -> Iterator[VaultServer]:
    data_dir = Path(tmp_path_factory.mktemp("narrow-policy"))
    (data_dir / "policy.toml").write_text(NARROW_POLICY, encoding="utf-8")  # init keeps it
    server = start_vault_server(data_dir)
    try:
        yield server
    finally:
        assert server.stop() == 0, server.output


def test_delete_export_and_list_of_what_the_caller_may_not_read_answer_as_missing(
    narrow_server: VaultServer, new_subject_id: Callable[[], str]
) -> None:
    holder, missing = new_subject_id(), new_subject_id()
    store_card(narrow_server, holder)
    deletion = narrow_server.client("deletion")

    def delete(subject: str) -> tuple[grpc.StatusCode, str]:
        return answer(
            deletion.vault.DeleteField, pb.DeleteFieldRequest(subject_id=subject, field="billing")
        )

    def export(subject: str) -> tuple[grpc.StatusCode, str]:
        return answer(
            deletion.vault.ExportSubject,
            pb.ExportSubjectRequest(subject_id=subject, purpose="dsar"),
        )

    def listing(subject: str) -> tuple[grpc.StatusCode, str]:
        return answer(deletion.vault.ListFields, pb.ListFieldsRequest(subject_id=subject))

    no_field = (grpc.StatusCode.NOT_FOUND, "field not found")
    no_fields = (grpc.StatusCode.NOT_FOUND, "subject has no fields")
    assert delete(holder) == delete(missing) == no_field
    assert export(holder) == export(missing) == no_fields
    assert listing(holder) == listing(missing) == no_fields
    # Nothing was destroyed, and the audit log holds the refused delete and export.
    desk = narrow_server.client("privacy-desk")
    kept = desk.vault.GetField(pb.GetFieldRequest(subject_id=holder, field="billing"), timeout=10)
    assert kept.view.field == "billing"
    logged = denials(narrow_server.client("admin"), holder)
    assert {(e.action, e.status_code) for e in logged} == {
        (pb.AUDIT_ACTION_DELETE, "NOT_FOUND"),
        (pb.AUDIT_ACTION_EXPORT, "NOT_FOUND"),
    }
