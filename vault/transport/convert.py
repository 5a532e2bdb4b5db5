"""Translation between vault.v1 messages and domain values."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from google.protobuf import json_format, timestamp_pb2
from google.type import date_pb2, postal_address_pb2
from pii_vault_client.v1 import vault_pb2 as pb

from vault.crypto.documents import SignedDocument
from vault.domain.audit_reader import AuditRecord, ChainedEvent
from vault.domain.key_admin import RotationStatus
from vault.domain.model import FieldRead, FieldView
from vault.domain.shredding import ShredReceipt, anchor_from_fields
from vault.errors import InvalidArgument, ResourceExhausted
from vault.fields import base as f

FIELD_TYPES: dict[f.FieldType, int] = {
    f.FieldType.PHONE: pb.FIELD_TYPE_PHONE,
    f.FieldType.EMAIL: pb.FIELD_TYPE_EMAIL,
    f.FieldType.ADDRESS: pb.FIELD_TYPE_ADDRESS,
    f.FieldType.CARD: pb.FIELD_TYPE_CARD,
    f.FieldType.PAYMENT_TOKEN: pb.FIELD_TYPE_PAYMENT_TOKEN,
    f.FieldType.NAME: pb.FIELD_TYPE_NAME,
    f.FieldType.DATE_OF_BIRTH: pb.FIELD_TYPE_DATE_OF_BIRTH,
}
VIEWS: dict[int, str] = {
    pb.VIEW_UNSPECIFIED: "masked",
    pb.VIEW_MASKED: "masked",
    pb.VIEW_TOKEN: "token",
    pb.VIEW_PLAINTEXT: "plaintext",
}
_KINDS = "phone, email, address, card, payment_token, name, date_of_birth"


def _stored(name: str, prefix: str) -> str:
    """A wire enum value's stored name: ``AUDIT_ACTION_KEY_STATUS`` is stored as ``key-status``.

    The audit log and the key providers store these as strings (``AuditAction``,
    ``AuditOutcome``, ``MasterKeyState``); the wire has enums whose value names
    are the stored names upper-cased, ``-`` as ``_``, behind the enum's prefix.
    tests/transport/test_convert.py checks that every stored name has a value.
    """
    return name.removeprefix(prefix).lower().replace("_", "-")


AUDIT_ACTIONS: dict[str, pb.AuditAction.ValueType] = {
    _stored(name, "AUDIT_ACTION_"): number for name, number in pb.AuditAction.items() if number
}
AUDIT_OUTCOMES: dict[str, pb.AuditOutcome.ValueType] = {
    _stored(name, "AUDIT_OUTCOME_"): number for name, number in pb.AuditOutcome.items() if number
}
KEY_STATES: dict[str, pb.MasterKeyState.ValueType] = {
    _stored(name, "MASTER_KEY_STATE_"): number
    for name, number in pb.MasterKeyState.items()
    if number
}
_STORED_ACTIONS = {number: name for name, number in AUDIT_ACTIONS.items()}


def audit_action_to_proto(action: str) -> pb.AuditAction.ValueType:
    """A stored action as the wire enum; one this version has no value for is UNSPECIFIED."""
    return AUDIT_ACTIONS.get(action, pb.AUDIT_ACTION_UNSPECIFIED)


def audit_outcome_to_proto(outcome: str) -> pb.AuditOutcome.ValueType:
    return AUDIT_OUTCOMES.get(outcome, pb.AUDIT_OUTCOME_UNSPECIFIED)


def key_state_to_proto(state: str) -> pb.MasterKeyState.ValueType:
    return KEY_STATES.get(state, pb.MASTER_KEY_STATE_UNSPECIFIED)


def audit_action_filter(action: pb.AuditAction.ValueType, field: str = "action") -> str:
    """ListEventsRequest.action as the stored name to filter on; "" (any) for UNSPECIFIED."""
    if action == pb.AUDIT_ACTION_UNSPECIFIED:
        return ""
    stored = _STORED_ACTIONS.get(action)
    if stored is None:
        raise InvalidArgument(field, "is not a known AuditAction value")
    return stored


def view_name(view: int, field: str = "view") -> str:
    name = VIEWS.get(view)
    if name is None:
        raise InvalidArgument(field, "is not a known View value")
    return name


def value_from_proto(value: pb.FieldValue, max_bytes: int, field: str = "value") -> f.FieldValue:
    kind = value.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument(field, f"is required: set one of {_KINDS}")
    if value.ByteSize() > max_bytes:
        raise ResourceExhausted(f"{field} is larger than {max_bytes} bytes", field=field)
    if kind == "phone":
        return f.PhoneNumber(value.phone.number, value.phone.default_region)
    if kind == "email":
        return f.Email(value.email)
    if kind == "address":
        a = value.address
        return f.PostalAddress(
            region_code=a.region_code,
            address_lines=tuple(a.address_lines),
            locality=a.locality,
            administrative_area=a.administrative_area,
            postal_code=a.postal_code,
            sublocality=a.sublocality,
            organization=a.organization,
            recipients=tuple(a.recipients),
        )
    if kind == "card":
        c = value.card
        return f.PaymentCard(c.pan, c.exp_month, c.exp_year, c.holder_name)
    if kind == "payment_token":
        return f.PaymentToken(value.payment_token.provider, value.payment_token.token)
    if kind == "name":
        return f.Name(value.name)
    d = value.date_of_birth
    return f.DateOfBirth(d.year, d.month, d.day)


def value_to_proto(value: f.FieldValue) -> pb.FieldValue:
    match value:
        case f.PhoneNumber():
            return pb.FieldValue(phone=pb.PhoneNumber(number=value.number))
        case f.Email():
            return pb.FieldValue(email=value.address)
        case f.PostalAddress():
            return pb.FieldValue(
                address=postal_address_pb2.PostalAddress(
                    region_code=value.region_code,
                    address_lines=list(value.address_lines),
                    locality=value.locality,
                    administrative_area=value.administrative_area,
                    postal_code=value.postal_code,
                    sublocality=value.sublocality,
                    organization=value.organization,
                    recipients=list(value.recipients),
                )
            )
        case f.PaymentCard():
            return pb.FieldValue(
                card=pb.PaymentCard(
                    pan=value.pan,
                    exp_month=value.exp_month,
                    exp_year=value.exp_year,
                    holder_name=value.holder_name,
                )
            )
        case f.PaymentToken():
            return pb.FieldValue(
                payment_token=pb.PaymentToken(provider=value.provider, token=value.token)
            )
        case f.Name():
            return pb.FieldValue(name=value.full_name)
        case f.DateOfBirth():
            return pb.FieldValue(
                date_of_birth=date_pb2.Date(year=value.year, month=value.month, day=value.day)
            )
    raise TypeError(type(value).__name__)


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def view_to_proto(view: FieldView) -> pb.FieldView:
    message = pb.FieldView()
    fill_view(message, view)
    return message


def fill_view(message: pb.FieldView, view: FieldView) -> None:
    """Set ``view`` into ``message`` in place (a batch fills its results without copies)."""
    message.subject_id = view.subject_id
    message.field = view.field
    message.type = FIELD_TYPES[view.type]  # type: ignore[assignment]
    message.masked = view.masked
    message.token = view.token
    message.version = view.version
    message.updated_at.FromDatetime(view.updated_at)
    facts = view.facts
    if facts.card_brand:
        card = message.card
        card.brand = facts.card_brand
        card.last4 = facts.card_last4
        card.exp_month = facts.card_exp_month
        card.exp_year = facts.card_exp_year
    if facts.country:
        message.address.region_code = facts.country
        message.address.locality = facts.locality
    if facts.phone_country_code:
        message.phone.country_code = facts.phone_country_code


def read_to_get_response(read: FieldRead) -> pb.GetFieldResponse:
    response = pb.GetFieldResponse()
    fill_get_response(response, read)
    return response


def fill_get_response(response: pb.GetFieldResponse, read: FieldRead) -> None:
    fill_view(response.view, read.view)
    if read.value is not None:
        response.value.CopyFrom(value_to_proto(read.value))


def receipt_to_proto(receipt: ShredReceipt) -> pb.ShredReceipt:
    message = pb.ShredReceipt(
        subject_id=receipt.subject_id,
        request_id=receipt.request_id,
        reason=receipt.reason,
        shredded_at=timestamp(receipt.shredded_at),
        fields_destroyed=receipt.fields_destroyed,
        key_ids=list(receipt.key_ids),
        payload=receipt.payload,
        signature=receipt.signature,
        signing_key_id=receipt.signing_key_id,
    )
    if receipt.backup_horizon is not None:  # unset: no rotation schedule, no date promised
        message.backup_horizon.CopyFrom(timestamp(receipt.backup_horizon))
    if receipt.audit_anchor is not None:
        message.audit_anchor.CopyFrom(
            pb.AuditAnchor(sequence=receipt.audit_anchor.sequence, hash=receipt.audit_anchor.hash)
        )
    return message


def rotation_status_to_proto(status: RotationStatus) -> pb.KeyRotationSchedule:
    """GetKeyStatus's schedule: unset times and period mean "none" (schedule off)."""
    message = pb.KeyRotationSchedule(
        enabled=status.enabled,
        keys_to_rewrap=status.keys_to_rewrap,
        versions_pending_retirement=list(status.versions_pending_retirement),
        overdue=status.overdue,
    )
    if status.period is not None:
        message.period.FromTimedelta(status.period)
    for name, moment in (
        ("last_rotation", status.last_rotation),
        ("next_rotation_due", status.next_rotation_due),
        ("backup_horizon", status.backup_horizon),
    ):
        if moment is not None:
            getattr(message, name).CopyFrom(timestamp(moment))
    return message


def event_to_proto(event: ChainedEvent) -> pb.AuditEvent:
    """An event of the chain, with its position and hashes."""
    message = _history_to_proto(event.record)
    message.sequence = event.sequence
    message.hash = event.hash
    message.prev_hash = event.prev_hash
    return message


def _history_to_proto(record: AuditRecord) -> pb.AuditEvent:
    return pb.AuditEvent(
        time=timestamp(record.time),
        caller=record.caller,
        action=audit_action_to_proto(record.action),
        subject_id=record.subject_id,
        field=record.field,
        view=record.view,
        purpose=record.purpose,
        outcome=audit_outcome_to_proto(record.outcome),
        status_code=record.status_code,
        detail=record.detail,
    )


def _history_document(event: pb.AuditEvent, record: AuditRecord) -> dict[str, Any]:
    """An access-history entry of the signed export: action and outcome as stored.

    The signed document keeps the audit log's own names ("get", "ok") rather
    than the wire enums' (AUDIT_ACTION_GET), so its content does not depend on
    the proto's enum naming.
    """
    document = json_format.MessageToDict(event, preserving_proto_field_name=True)
    document["action"] = record.action
    document["outcome"] = record.outcome
    return document


def export_to_proto(
    subject_id: str,
    purpose: str,
    reads: list[FieldRead],
    history: list[AuditRecord],
    sign_export: Callable[[str, str, list[dict[str, Any]], list[dict[str, Any]]], SignedDocument],
) -> pb.ExportSubjectResponse:
    """The export, and the same export as a signed document for filing.

    Only the translation to JSON happens here; the domain's ``sign_export``
    types, anchors and signs it.
    """
    exported = [
        pb.ExportedField(view=view_to_proto(read.view), value=value_to_proto(read.value))
        for read in reads
        if read.value is not None  # an export always carries the values
    ]
    events = [_history_to_proto(r) for r in history]
    signed = sign_export(
        subject_id,
        purpose,
        [json_format.MessageToDict(field, preserving_proto_field_name=True) for field in exported],
        [_history_document(event, record) for event, record in zip(events, history, strict=True)],
    )
    response = pb.ExportSubjectResponse(
        fields=exported,
        access_history=events,
        payload=signed.payload,
        signature=signed.signature,
        signing_key_id=str(signed.body["signing_key_id"]),
    )
    anchor = anchor_from_fields(signed.body.get("audit_anchor"))
    if anchor is not None:
        response.audit_anchor.CopyFrom(pb.AuditAnchor(sequence=anchor.sequence, hash=anchor.hash))
    return response
