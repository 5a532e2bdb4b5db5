"""The default policy, cell by cell, against the design's caller table.

``design_allows`` below is written from the words of DESIGN.md's "Who calls
it" table (and the issue's reading of it), not from ``DEFAULT_POLICY_TOML``:
if the shipped policy grants one cell more or one cell less than the design
says, a cell here fails and names itself.

The matrix: every default caller and one the policy does not name; every
action; every field type, and no type at all for the checks the server makes
on a whole subject (shred, hold, consent, admin, and export's first check);
for ``get`` every view including none (masked); and five purposes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from vault.fields.base import FieldType
from vault.policy import DEFAULT_POLICY_TOML, Action, Policy, View

CALLERS = ("registration", "checkout", "deletion", "privacy-desk", "admin", "stranger")
ACTIONS = (
    "put", "get", "detokenize", "find", "delete", "shred", "export", "hold", "consent", "admin"
)  # fmt: skip
FIELD_TYPES = ("phone", "email", "name", "address", "date_of_birth", "card", "payment_token")
VIEWS = (None, "masked", "token", "plaintext")
PURPOSES = ("", "checkout", "dsar", "marketing_sms", "support")
# Checks the server makes with no field type (ExportSubject checks once without
# a type, then once per field with the field's type).
SUBJECT_WIDE = ("shred", "export", "hold", "consent", "admin")
# Checks the server makes with a field name as well as a type.
NAMED_FIELD = ("put", "get", "detokenize", "delete", "export")

CONTACT = frozenset({"phone", "email", "name", "address", "date_of_birth"})
CHECKOUT_TYPES = frozenset({"card", "payment_token", "address"})
SAFE_VIEWS = frozenset({"masked", "token"})


def design_allows(
    caller: str, action: str, field_type: str | None, view: str | None, purpose: str
) -> bool:
    """The caller table of DESIGN.md, read literally. Deny unless a line below grants."""
    shown = view or "masked"  # "VIEW_MASKED (also what VIEW_UNSPECIFIED means)"
    if caller == "registration":
        # Stores phone, e-mail, name, address (and date of birth); masked views and
        # tokens; "is this phone already registered?" -- find by exact value.
        if field_type not in CONTACT:
            return False
        if action in ("put", "find"):
            return True
        return action == "get" and shown in SAFE_VIEWS
    if caller == "checkout":
        # Stores a card or payment token (and the shipping address); reads masked
        # address and card, token views; the payment token in plaintext for purpose
        # checkout only; never a card number.
        if action == "put":
            return field_type in CHECKOUT_TYPES
        if action == "get" and shown in SAFE_VIEWS:
            return field_type in CHECKOUT_TYPES
        if action == "get" and shown == "plaintext":
            return field_type == "payment_token" and purpose == "checkout"
        if action == "detokenize":
            return field_type == "payment_token" and purpose == "checkout"
        return False
    if caller == "deletion":
        # Deletes fields of any type and crypto-shreds subjects; never a value.
        return action in ("delete", "shred")
    if caller == "privacy-desk":
        # Reads any type masked or as a token; plaintext and exports for dsar only;
        # sets legal holds and records consent.
        if action == "get":
            return shown in SAFE_VIEWS or purpose == "dsar"
        if action == "export":
            return purpose == "dsar"
        return action in ("hold", "consent")
    if caller == "admin":
        # Operators: rotate keys, verify the audit chain, set legal holds; no values.
        return action in ("admin", "hold")
    return False  # deny by default: a caller the table does not name gets nothing


@dataclass(frozen=True)
class Cell:
    caller: str
    action: str
    field_type: str | None
    view: str | None
    purpose: str

    def __str__(self) -> str:
        parts = [self.caller, self.action, self.field_type or "-"]
        if self.action == "get":
            parts.append(self.view or "(no view)")
        parts.append(repr(self.purpose))
        return " ".join(parts)


def cells(caller: str, action: str) -> Iterator[Cell]:
    types: tuple[str | None, ...] = FIELD_TYPES
    if action in SUBJECT_WIDE:
        types = (None, *FIELD_TYPES)
    views = VIEWS if action == "get" else (None,)
    for field_type in types:
        for view in views:
            for purpose in PURPOSES:
                yield Cell(caller, action, field_type, view, purpose)


MATRIX_SIZE = sum(1 for c in CALLERS for a in ACTIONS for _ in cells(c, a))


@pytest.fixture(scope="module")
def default() -> Policy:
    return Policy.from_toml(DEFAULT_POLICY_TOML)


def test_the_matrix_covers_every_action_type_and_view_the_code_knows() -> None:
    # A new action, type or view must get a line in the table above before it ships.
    assert set(ACTIONS) == {str(a) for a in Action}
    assert set(FIELD_TYPES) == {str(t) for t in FieldType}
    assert set(VIEWS) - {None} == {str(v) for v in View}


def test_the_policy_names_exactly_the_design_callers(default: Policy) -> None:
    assert default.callers() == frozenset(CALLERS) - {"stranger"}


def test_matrix_size() -> None:
    # 6 callers x (get: 7 types x 4 views x 5 purposes = 140; put, detokenize, find,
    # delete: 4 x 7 x 5 = 140; shred, export, hold, consent, admin: 5 x 8 x 5 = 200).
    assert MATRIX_SIZE == 6 * (140 + 140 + 200) == 2880


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("caller", CALLERS)
def test_default_policy_grants_exactly_the_design_table(
    default: Policy, caller: str, action: str
) -> None:
    wrong: list[str] = []
    for cell in cells(caller, action):
        field = (
            f"{cell.field_type}.matrix"
            if cell.field_type is not None and action in NAMED_FIELD
            else None
        )
        decision = default.decide(
            caller,
            Action(action),
            field_type=cell.field_type,
            field=field,
            view=None if cell.view is None else View(cell.view),
            purpose=cell.purpose,
        )
        expected = design_allows(caller, action, cell.field_type, cell.view, cell.purpose)
        if decision.allowed != expected:
            verdict = "allows" if decision.allowed else "denies"
            wrong.append(f"{cell}: policy {verdict} ({decision.rule or decision.reason})")
        if decision.allowed and not decision.rule.startswith(f"callers.{caller}.grants["):
            wrong.append(f"{cell}: allowed by {decision.rule!r}, not a grant of {caller}")
    assert not wrong, "\n".join(wrong)


def test_every_design_caller_is_granted_something_and_denied_something() -> None:
    # Guards the expectation itself against degenerating to "all deny".
    for caller in CALLERS:
        outcomes = {
            design_allows(caller, a, c.field_type, c.view, c.purpose)
            for a in ACTIONS
            for c in cells(caller, a)
        }
        assert outcomes == ({False} if caller == "stranger" else {True, False}), caller


def test_no_reveal_is_granted_without_dsar_or_checkout() -> None:
    # The design's two reveal purposes; "support" and "marketing_sms" never reveal.
    for caller in CALLERS:
        for action in ("get", "detokenize", "export"):
            for cell in cells(caller, action):
                if action == "get" and (cell.view or "masked") != "plaintext":
                    continue
                if cell.purpose in ("", "support", "marketing_sms"):
                    assert not design_allows(
                        caller, action, cell.field_type, cell.view, cell.purpose
                    ), cell
