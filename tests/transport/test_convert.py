"""vault.v1 messages to domain values and back, for every field type and view (no I/O).

A value that survives ``value_from_proto`` then ``value_to_proto`` unchanged
is what lets a caller read back what it wrote; a view that maps to the wrong
name would hand out plaintext where a mask was asked for.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.type import date_pb2, postal_address_pb2
from pii_vault_client.v1 import vault_pb2 as pb

from vault.domain.audit_reader import AuditRecord, ChainedEvent
from vault.domain.key_admin import RotationStatus
from vault.domain.model import FieldRead, FieldView
from vault.errors import InvalidArgument, ResourceExhausted
from vault.fields import (
    DateOfBirth,
    Email,
    Facts,
    FieldType,
    FieldValue,
    Name,
    PaymentCard,
    PaymentToken,
    PhoneNumber,
    PostalAddress,
)
from vault.transport.convert import (
    FIELD_TYPES,
    audit_action_filter,
    audit_action_to_proto,
    audit_outcome_to_proto,
    event_to_proto,
    key_state_to_proto,
    read_to_get_response,
    rotation_status_to_proto,
    timestamp,
    value_from_proto,
    value_to_proto,
    view_name,
    view_to_proto,
)

MAX_BYTES = 4096
NOW = datetime(2026, 11, 22, 12, 30, 15, 123456, tzinfo=UTC)

# One message per field type, every sub-field set, and the value it stands for.
MESSAGES_AND_VALUES: dict[str, tuple[pb.FieldValue, FieldValue]] = {
    "phone": (
        pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567")),
        PhoneNumber("+372 5123 4567"),
    ),
    "email": (pb.FieldValue(email="jane@example.com"), Email("jane@example.com")),
    "address": (
        pb.FieldValue(
            address=postal_address_pb2.PostalAddress(
                region_code="EE",
                address_lines=["Narva mnt 5", "Korter 12"],
                locality="Tallinn",
                administrative_area="Harjumaa",
                postal_code="10117",
                sublocality="Kesklinn",
                organization="Example OÜ",
                recipients=["Jane Doe", "John Doe"],
            )
        ),
        PostalAddress(
            region_code="EE",
            address_lines=("Narva mnt 5", "Korter 12"),
            locality="Tallinn",
            administrative_area="Harjumaa",
            postal_code="10117",
            sublocality="Kesklinn",
            organization="Example OÜ",
            recipients=("Jane Doe", "John Doe"),
        ),
    ),
    "card": (
        pb.FieldValue(
            card=pb.PaymentCard(
                pan="4111111111111111", exp_month=12, exp_year=2030, holder_name="JANE DOE"
            )
        ),
        PaymentCard("4111111111111111", 12, 2030, "JANE DOE"),
    ),
    "payment_token": (
        pb.FieldValue(payment_token=pb.PaymentToken(provider="stripe", token="pm_1Nf3a9")),
        PaymentToken("stripe", "pm_1Nf3a9"),
    ),
    "name": (pb.FieldValue(name="Jane Q. Doe"), Name("Jane Q. Doe")),
    "date_of_birth": (
        pb.FieldValue(date_of_birth=date_pb2.Date(year=1990, month=2, day=28)),
        DateOfBirth(1990, 2, 28),
    ),
}


def test_every_kind_of_the_wire_oneof_is_covered() -> None:
    kinds = {f.name for f in pb.FieldValue.DESCRIPTOR.oneofs_by_name["kind"].fields}
    assert kinds == set(MESSAGES_AND_VALUES)


@pytest.mark.parametrize("kind", list(MESSAGES_AND_VALUES))
def test_a_message_becomes_its_value(kind: str) -> None:
    message, value = MESSAGES_AND_VALUES[kind]
    assert value_from_proto(message, MAX_BYTES) == value


@pytest.mark.parametrize("kind", list(MESSAGES_AND_VALUES))
def test_a_value_becomes_its_message(kind: str) -> None:
    message, value = MESSAGES_AND_VALUES[kind]
    assert value_to_proto(value) == message


@pytest.mark.parametrize("kind", list(MESSAGES_AND_VALUES))
def test_a_message_survives_the_round_trip(kind: str) -> None:
    message, _ = MESSAGES_AND_VALUES[kind]
    assert value_to_proto(value_from_proto(message, MAX_BYTES)) == message


def test_a_phone_keeps_its_default_region_on_the_way_in() -> None:
    message = pb.FieldValue(phone=pb.PhoneNumber(number="5123 4567", default_region="EE"))
    assert value_from_proto(message, MAX_BYTES) == PhoneNumber("5123 4567", "EE")


def test_a_value_with_no_kind_is_an_invalid_argument_naming_the_field() -> None:
    with pytest.raises(InvalidArgument) as raised:
        value_from_proto(pb.FieldValue(), MAX_BYTES, field="items[2].value")
    [violation] = raised.value.violations
    assert violation.field == "items[2].value"
    assert "set one of phone, email" in violation.description


def test_an_oversized_value_is_exhausted_and_its_message_names_no_value() -> None:
    secret = "Marker-7f3e" * 50
    with pytest.raises(ResourceExhausted) as raised:
        value_from_proto(pb.FieldValue(name=secret), 64, field="value")
    assert raised.value.field == "value"
    assert raised.value.message == "value is larger than 64 bytes"
    assert "Marker-7f3e" not in str(raised.value)


def test_a_value_of_exactly_the_limit_is_accepted() -> None:
    message = pb.FieldValue(name="x" * 10)
    assert value_from_proto(message, message.ByteSize()) == Name("x" * 10)


def test_an_unknown_value_class_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="str"):
        value_to_proto("+372 5123 4567")  # type: ignore[arg-type]


# -- views ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("view", "name"),
    [
        (pb.VIEW_UNSPECIFIED, "masked"),
        (pb.VIEW_MASKED, "masked"),
        (pb.VIEW_TOKEN, "token"),
        (pb.VIEW_PLAINTEXT, "plaintext"),
    ],
)
def test_each_view_has_its_name_and_unspecified_is_the_mask(view: int, name: str) -> None:
    assert view_name(view) == name


def test_every_view_of_the_wire_is_named() -> None:
    assert {v.number for v in pb.View.DESCRIPTOR.values} == {
        pb.VIEW_UNSPECIFIED,
        pb.VIEW_MASKED,
        pb.VIEW_TOKEN,
        pb.VIEW_PLAINTEXT,
    }


def test_an_unknown_view_is_an_invalid_argument_naming_the_field() -> None:
    with pytest.raises(InvalidArgument) as raised:
        view_name(99, field="items[0].view")
    assert raised.value.violations[0].field == "items[0].view"


def test_every_field_type_has_its_own_wire_type() -> None:
    assert set(FIELD_TYPES) == set(FieldType)
    assert len(set(FIELD_TYPES.values())) == len(FieldType)
    assert pb.FIELD_TYPE_UNSPECIFIED not in FIELD_TYPES.values()


def field_view(field_type: FieldType, facts: Facts) -> FieldView:
    return FieldView("s-1", "payment", field_type, "**** 1111", "tok_abc", 3, NOW, facts)


def test_a_field_view_carries_everything_and_only_the_facts_it_has() -> None:
    message = view_to_proto(field_view(FieldType.CARD, Facts(card_brand="visa", card_last4="1111")))
    assert (message.subject_id, message.field, message.masked, message.token) == (
        "s-1",
        "payment",
        "**** 1111",
        "tok_abc",
    )
    assert (message.type, message.version) == (pb.FIELD_TYPE_CARD, 3)
    assert message.updated_at.ToDatetime(tzinfo=UTC) == NOW
    assert (message.card.brand, message.card.last4) == ("visa", "1111")
    assert not message.HasField("address")
    assert not message.HasField("phone")


def test_address_and_phone_facts_reach_the_view() -> None:
    address = view_to_proto(field_view(FieldType.ADDRESS, Facts(country="EE", locality="Tartu")))
    assert (address.address.region_code, address.address.locality) == ("EE", "Tartu")
    assert not address.HasField("card")
    phone = view_to_proto(field_view(FieldType.PHONE, Facts(phone_country_code=372)))
    assert phone.phone.country_code == 372


def test_a_read_carries_the_value_only_when_there_is_one() -> None:
    view = field_view(FieldType.NAME, Facts())
    masked = read_to_get_response(FieldRead(view))
    assert not masked.HasField("value")
    plain = read_to_get_response(FieldRead(view, Name("Jane Q. Doe")))
    assert plain.value == pb.FieldValue(name="Jane Q. Doe")
    assert plain.view == masked.view


def test_a_timestamp_keeps_the_microseconds() -> None:
    assert timestamp(NOW).ToDatetime(tzinfo=UTC) == NOW


def test_a_rotation_status_leaves_unknown_times_unset() -> None:
    off = rotation_status_to_proto(RotationStatus(False, None, None, None, 0, (), None, False))
    assert not off.enabled
    for name in ("period", "last_rotation", "next_rotation_due", "backup_horizon"):
        assert not off.HasField(name), name
    on = rotation_status_to_proto(
        RotationStatus(True, timedelta(days=30), NOW, NOW + timedelta(days=30), 4, (1,), NOW, True)
    )
    assert on.period.ToTimedelta() == timedelta(days=30)
    assert on.next_rotation_due.ToDatetime(tzinfo=UTC) == NOW + timedelta(days=30)
    assert (on.keys_to_rewrap, list(on.versions_pending_retirement), on.overdue) == (4, [1], True)


def test_a_chained_event_carries_its_position_and_hashes() -> None:
    record = AuditRecord(NOW, "privacy-desk", "reveal", "s-1", "phone", "plaintext", "dsar")
    message = event_to_proto(ChainedEvent(7, record, b"p" * 32, b"h" * 32))
    assert (message.sequence, message.prev_hash, message.hash) == (7, b"p" * 32, b"h" * 32)
    assert (message.caller, message.action, message.view, message.purpose) == (
        "privacy-desk",
        pb.AUDIT_ACTION_REVEAL,
        "plaintext",
        "dsar",
    )
    assert (message.outcome, message.status_code) == (pb.AUDIT_OUTCOME_OK, "OK")


# -- audit actions, outcomes and key states: stored strings, enums on the wire -----------------
def test_every_stored_audit_action_outcome_and_key_state_has_a_wire_enum_value() -> None:
    """A new AuditAction (or outcome, or key state) without its proto value fails here."""
    from vault.audit.records import AuditAction, AuditOutcome
    from vault.keys.provider import MasterKeyState

    for action in AuditAction:
        number = audit_action_to_proto(action)
        assert number != pb.AUDIT_ACTION_UNSPECIFIED, action
        assert audit_action_filter(number) == action.value
    for outcome in AuditOutcome:
        assert audit_outcome_to_proto(outcome) != pb.AUDIT_OUTCOME_UNSPECIFIED, outcome
    for state in MasterKeyState:
        assert key_state_to_proto(state) != pb.MASTER_KEY_STATE_UNSPECIFIED, state
    # ...and every wire value names a stored one: the mapping is one to one.
    assert len(AuditAction) == len(pb.AuditAction.keys()) - 1
    assert len(AuditOutcome) == len(pb.AuditOutcome.keys()) - 1
    assert len(MasterKeyState) == len(pb.MasterKeyState.keys()) - 1


def test_wire_names_follow_the_stored_names() -> None:
    assert audit_action_to_proto("key-status") == pb.AUDIT_ACTION_KEY_STATUS
    assert audit_action_to_proto("denials-suppressed") == pb.AUDIT_ACTION_DENIALS_SUPPRESSED
    assert audit_outcome_to_proto("denied") == pb.AUDIT_OUTCOME_DENIED
    assert key_state_to_proto("current") == pb.MASTER_KEY_STATE_CURRENT


def test_names_this_version_does_not_know_are_unspecified_not_an_error() -> None:
    # Rows written by an older or newer server keep reading.
    assert audit_action_to_proto("GetField") == pb.AUDIT_ACTION_UNSPECIFIED
    assert audit_outcome_to_proto("") == pb.AUDIT_OUTCOME_UNSPECIFIED
    assert key_state_to_proto("unknown") == pb.MASTER_KEY_STATE_UNSPECIFIED


def test_the_list_filter_is_any_action_when_unspecified_and_refuses_unknown_numbers() -> None:
    assert audit_action_filter(pb.AUDIT_ACTION_UNSPECIFIED) == ""
    assert audit_action_filter(pb.AUDIT_ACTION_REVEAL) == "reveal"
    with pytest.raises(InvalidArgument):
        audit_action_filter(999)  # type: ignore[arg-type]
