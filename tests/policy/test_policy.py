"""The access policy: parsing errors name their place; every decision is deny-by-default."""

from __future__ import annotations

from pathlib import Path

import pytest

from vault.fields.base import FieldType
from vault.policy import DEFAULT_POLICY_TOML, Action, Decision, Policy, PolicyError, View


@pytest.fixture(scope="module")
def default() -> Policy:
    return Policy.from_toml(DEFAULT_POLICY_TOML)


# --- parsing --------------------------------------------------------------------------------


def test_default_policy_parses_and_names_the_design_callers(default: Policy) -> None:
    assert default.callers() == frozenset(
        {"registration", "checkout", "deletion", "privacy-desk", "admin"}
    )


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(DEFAULT_POLICY_TOML, encoding="utf-8")
    policy = Policy.load(path)
    assert policy.allows("checkout", Action.PUT, field_type="card")


def test_load_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[[callers.x.grants]]\nactions = ["got"]\n', encoding="utf-8")
    with pytest.raises(PolicyError, match=r"policy\.toml: callers\.x\.grants\[0\]\.actions"):
        Policy.load(path)


GRANT = '[[callers.checkout.grants]]\nactions = ["get"]\nfield_types = ["card"]\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GRANT + GRANT + 'views = ["plain"]\n',
            "callers.checkout.grants[1].views: unknown view 'plain'",
        ),
        (
            '[[callers.checkout.grants]]\nactions = ["get", "steal"]\nfield_types = ["card"]\n',
            "callers.checkout.grants[0].actions: unknown action 'steal'",
        ),
        (
            '[[callers.checkout.grants]]\nactions = ["*"]\n',
            "callers.checkout.grants[0].actions: unknown action '*'",
        ),
        (
            GRANT.replace('"card"', '"iban"'),
            "callers.checkout.grants[0].field_types: unknown field type 'iban'",
        ),
        (
            GRANT + 'view = ["masked"]\n',
            "callers.checkout.grants[0].view: unknown key",
        ),
        (
            "[callers.checkout]\ngrant = []\n",
            "callers.checkout.grant: unknown key",
        ),
        ("[caller.checkout]\n", "caller: unknown key"),
        (
            "[purposes.marketing_sms]\nrequires_concent = true\n",
            "purposes.marketing_sms.requires_concent: unknown key",
        ),
        (
            '[purposes.marketing_sms]\nrequires_consent = "yes"\n',
            "purposes.marketing_sms.requires_consent: expected true or false",
        ),
        (
            '[[callers.checkout.grants]]\nfield_types = ["card"]\n',
            "callers.checkout.grants[0].actions: missing",
        ),
        (
            "[[callers.checkout.grants]]\nactions = []\n",
            "callers.checkout.grants[0].actions: must not be empty",
        ),
        (
            '[[callers.checkout.grants]]\nactions = "get"\n',
            "callers.checkout.grants[0].actions: expected a list of strings",
        ),
        (
            '[[callers.checkout.grants]]\nactions = ["get"]\n',
            "callers.checkout.grants[0].field_types: missing; required for get",
        ),
        (
            GRANT + 'fields = ["card*"]\n',
            "callers.checkout.grants[0].fields: bad field pattern 'card*'",
        ),
        (
            GRANT + 'views = ["plaintext"]\n',
            "callers.checkout.grants[0].purposes: get with view plaintext needs a named purpose",
        ),
        (
            '[[callers.checkout.grants]]\nactions = ["detokenize"]\nfield_types = ["*"]\n'
            'purposes = ["*"]\n',
            "callers.checkout.grants[0].purposes: detokenize needs a named purpose",
        ),
        (
            '[[callers."a.b".grants]]\nactions = ["jump"]\n',
            "callers.\"a.b\".grants[0].actions: unknown action 'jump'",
        ),
        ("callers = 3\n", "callers: expected a table"),
        ("[callers\n", "policy: invalid TOML"),
    ],
)
def test_parse_errors_name_the_place(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.from_toml(text)
    assert str(caught.value).startswith(message), str(caught.value)


def test_policy_error_is_a_value_error() -> None:
    assert issubclass(PolicyError, ValueError)


def test_subject_wide_grants_need_no_field_types() -> None:
    policy = Policy.from_toml('[[callers.ops.grants]]\nactions = ["admin", "hold"]\n')
    assert policy.allows("ops", Action.ADMIN)
    assert policy.allows("ops", Action.HOLD)
    assert not policy.allows("ops", Action.SHRED)


def test_a_caller_without_grants_is_named_but_gets_nothing() -> None:
    policy = Policy.from_toml("[callers.nobody]\n")
    assert policy.callers() == frozenset({"nobody"})
    assert not policy.allows("nobody", Action.ADMIN)


# --- the default policy: the design's caller table -------------------------------------------

REGISTRATION_TYPES = ["phone", "email", "name", "address", "date_of_birth"]
ALL_TYPES = [str(t) for t in FieldType]


@pytest.mark.parametrize("field_type", REGISTRATION_TYPES)
def test_registration_grants(default: Policy, field_type: str) -> None:
    assert default.allows("registration", Action.PUT, field_type=field_type)
    assert default.allows("registration", Action.FIND, field_type=field_type)
    assert default.allows("registration", Action.GET, field_type=field_type)
    assert default.allows("registration", Action.GET, field_type=field_type, view=View.MASKED)
    assert default.allows("registration", Action.GET, field_type=field_type, view=View.TOKEN)
    for purpose in ("", "registration", "dsar", "checkout"):
        assert not default.allows(
            "registration", Action.GET, field_type=field_type, view=View.PLAINTEXT, purpose=purpose
        )
    assert not default.allows("registration", Action.DETOKENIZE, field_type=field_type)
    assert not default.allows("registration", Action.DELETE, field_type=field_type)


@pytest.mark.parametrize("field_type", ["card", "payment_token"])
def test_registration_has_no_payment_data(default: Policy, field_type: str) -> None:
    assert not default.allows("registration", Action.PUT, field_type=field_type)
    assert not default.allows("registration", Action.GET, field_type=field_type)


def test_registration_has_no_subject_wide_actions(default: Policy) -> None:
    for action in (Action.SHRED, Action.EXPORT, Action.HOLD, Action.CONSENT, Action.ADMIN):
        assert not default.allows("registration", action, purpose="dsar")


@pytest.mark.parametrize("field_type", ["card", "payment_token", "address"])
def test_checkout_reads_and_writes_payment_data_masked(default: Policy, field_type: str) -> None:
    assert default.allows("checkout", Action.PUT, field_type=field_type)
    assert default.allows("checkout", Action.GET, field_type=field_type)
    assert default.allows("checkout", Action.GET, field_type=field_type, view=View.TOKEN)


@pytest.mark.parametrize("field_type", ["phone", "email", "name", "date_of_birth"])
def test_checkout_sees_no_contact_data(default: Policy, field_type: str) -> None:
    assert not default.allows("checkout", Action.PUT, field_type=field_type)
    assert not default.allows("checkout", Action.GET, field_type=field_type)


def test_checkout_payment_token_plaintext_only_for_checkout(default: Policy) -> None:
    def plaintext(purpose: str) -> bool:
        return default.allows(
            "checkout",
            Action.GET,
            field_type="payment_token",
            field="payment_token.stripe",
            view=View.PLAINTEXT,
            purpose=purpose,
        )

    assert plaintext("checkout")
    assert not plaintext("marketing")
    assert not plaintext("")
    assert not plaintext("*")


def test_checkout_detokenizes_payment_tokens_only_for_checkout(default: Policy) -> None:
    assert default.allows(
        "checkout", Action.DETOKENIZE, field_type="payment_token", purpose="checkout"
    )
    assert not default.allows("checkout", Action.DETOKENIZE, field_type="payment_token")
    assert not default.allows(
        "checkout", Action.DETOKENIZE, field_type="payment_token", purpose="marketing"
    )
    assert not default.allows("checkout", Action.DETOKENIZE, field_type="card", purpose="checkout")
    assert not default.allows(
        "checkout", Action.DETOKENIZE, field_type="address", purpose="checkout"
    )


@pytest.mark.parametrize("purpose", ["checkout", "dsar", "", "*"])
def test_checkout_never_sees_a_card_number(default: Policy, purpose: str) -> None:
    decision = default.decide(
        "checkout", Action.GET, field_type="card", view=View.PLAINTEXT, purpose=purpose
    )
    assert not decision.allowed
    assert decision.rule == ""
    assert not default.allows(
        "checkout", Action.GET, field_type="address", view=View.PLAINTEXT, purpose=purpose
    )


def test_checkout_cannot_delete_or_export(default: Policy) -> None:
    assert not default.allows("checkout", Action.DELETE, field_type="card")
    assert not default.allows("checkout", Action.SHRED)
    assert not default.allows("checkout", Action.EXPORT, purpose="checkout")


@pytest.mark.parametrize("field_type", ALL_TYPES)
def test_deletion_deletes_and_never_reads(default: Policy, field_type: str) -> None:
    assert default.allows("deletion", Action.DELETE, field_type=field_type, field="x")
    for view in View:
        assert not default.allows(
            "deletion", Action.GET, field_type=field_type, view=view, purpose="dsar"
        )
    assert not default.allows("deletion", Action.PUT, field_type=field_type)
    assert not default.allows("deletion", Action.DETOKENIZE, field_type=field_type, purpose="dsar")


def test_deletion_shreds(default: Policy) -> None:
    assert default.allows("deletion", Action.SHRED)
    assert default.allows("deletion", Action.SHRED, purpose="account-closed")
    assert not default.allows("deletion", Action.EXPORT, purpose="dsar")
    assert not default.allows("deletion", Action.HOLD)
    assert not default.allows("deletion", Action.ADMIN)


@pytest.mark.parametrize("field_type", ALL_TYPES)
def test_privacy_desk_reads_everything_plaintext_only_for_dsar(
    default: Policy, field_type: str
) -> None:
    assert default.allows("privacy-desk", Action.GET, field_type=field_type)
    assert default.allows("privacy-desk", Action.GET, field_type=field_type, view=View.TOKEN)
    assert default.allows(
        "privacy-desk", Action.GET, field_type=field_type, view=View.PLAINTEXT, purpose="dsar"
    )
    for purpose in ("", "checkout", "*"):
        assert not default.allows(
            "privacy-desk", Action.GET, field_type=field_type, view=View.PLAINTEXT, purpose=purpose
        )
    assert not default.allows("privacy-desk", Action.PUT, field_type=field_type)
    assert not default.allows("privacy-desk", Action.DELETE, field_type=field_type)


def test_privacy_desk_exports_for_dsar_and_sets_holds_and_consent(default: Policy) -> None:
    assert default.allows("privacy-desk", Action.EXPORT, purpose="dsar")
    assert default.allows("privacy-desk", Action.EXPORT, field_type="card", purpose="dsar")
    assert not default.allows("privacy-desk", Action.EXPORT)
    assert not default.allows("privacy-desk", Action.EXPORT, purpose="marketing")
    assert default.allows("privacy-desk", Action.HOLD)
    assert default.allows("privacy-desk", Action.CONSENT, purpose="marketing_sms")
    assert not default.allows("privacy-desk", Action.SHRED)
    assert not default.allows("privacy-desk", Action.ADMIN)


def test_admin_administers_and_holds_but_sees_nothing(default: Policy) -> None:
    # The design's caller table: operators rotate keys, verify the chain and set holds.
    assert default.allows("admin", Action.ADMIN)
    assert default.allows("admin", Action.HOLD)
    for action in Action:
        if action not in (Action.ADMIN, Action.HOLD):
            assert not default.allows("admin", action, field_type="phone", purpose="dsar")


@pytest.mark.parametrize("action", list(Action))
def test_unknown_caller_gets_nothing(default: Policy, action: Action) -> None:
    decision = default.decide("mallory", action, field_type="phone", purpose="dsar")
    assert decision == Decision(allowed=False, rule="", reason=decision.reason)
    assert "'mallory'" in decision.reason
    assert not default.allows("mallory", action)
    assert not default.allows("", action)


# --- matching rules ---------------------------------------------------------------------------


def test_wildcard_purpose_never_satisfies_a_reveal() -> None:
    policy = Policy.from_toml(
        """
        [[callers.desk.grants]]
        actions = ["get", "detokenize", "export"]
        field_types = ["*"]
        views = ["masked", "plaintext"]
        purposes = ["*", "dsar"]
        """
    )
    assert policy.allows("desk", Action.GET, field_type="phone", purpose="anything")
    assert policy.allows("desk", Action.GET, field_type="phone")
    for purpose in ("", "*", "anything"):
        assert not policy.allows(
            "desk", Action.GET, field_type="phone", view=View.PLAINTEXT, purpose=purpose
        )
        assert not policy.allows("desk", Action.DETOKENIZE, field_type="phone", purpose=purpose)
        assert not policy.allows("desk", Action.EXPORT, purpose=purpose)
    assert policy.allows(
        "desk", Action.GET, field_type="phone", view=View.PLAINTEXT, purpose="dsar"
    )
    assert policy.allows("desk", Action.DETOKENIZE, field_type="phone", purpose="dsar")
    assert policy.allows("desk", Action.EXPORT, purpose="dsar")


def test_named_purposes_restrict_non_reveals_too() -> None:
    policy = Policy.from_toml(
        '[[callers.crm.grants]]\nactions = ["get"]\nfield_types = ["phone"]\n'
        'purposes = ["support"]\n'
    )
    assert policy.allows("crm", Action.GET, field_type="phone", purpose="support")
    assert not policy.allows("crm", Action.GET, field_type="phone", purpose="")
    assert not policy.allows("crm", Action.GET, field_type="phone", purpose="sales")


def test_views_default_to_masked_and_no_view_means_masked() -> None:
    policy = Policy.from_toml('[[callers.a.grants]]\nactions = ["get"]\nfield_types = ["email"]\n')
    assert policy.allows("a", Action.GET, field_type="email")
    assert policy.allows("a", Action.GET, field_type="email", view=View.MASKED)
    assert not policy.allows("a", Action.GET, field_type="email", view=View.TOKEN)


def test_field_names_exact_and_prefix_match() -> None:
    policy = Policy.from_toml(
        """
        [[callers.shop.grants]]
        actions = ["get"]
        field_types = ["card", "address"]
        fields = ["card.*", "address.shipping"]
        """
    )

    def get(field: str | None) -> bool:
        return policy.allows("shop", Action.GET, field_type="card", field=field)

    assert get("card.primary")
    assert get("card.backup")
    assert get("address.shipping")
    assert not get("card")  # "card.*" covers names under "card.", not "card" itself
    assert not get("cards.primary")
    assert not get("address.billing")
    assert not get("address.shipping.old")
    assert get(None)  # no field given: only the field type is checked


def test_field_type_must_match_and_unknown_types_are_denied() -> None:
    policy = Policy.from_toml('[[callers.a.grants]]\nactions = ["put"]\nfield_types = ["*"]\n')
    assert policy.allows("a", Action.PUT, field_type="phone")
    assert not policy.allows("a", Action.PUT, field_type="iban")
    decision = policy.decide("a", Action.PUT, field_type="iban")
    assert not decision.allowed
    assert "iban" in decision.reason


def test_field_type_none_checks_only_action_and_purpose(default: Policy) -> None:
    # field_types scope a grant, but a subject-wide check does not name one.
    assert default.allows("checkout", Action.GET)
    assert not default.allows("checkout", Action.GET, view=View.PLAINTEXT, purpose="dsar")


def test_view_is_ignored_for_actions_other_than_get(default: Policy) -> None:
    assert default.allows("registration", Action.PUT, field_type="phone", view=View.PLAINTEXT)
    assert default.allows("deletion", Action.SHRED, view=View.PLAINTEXT)


# --- decisions ---------------------------------------------------------------------------------


def test_decision_rule_names_the_grant_that_allowed(default: Policy) -> None:
    cases = [
        (default.decide("checkout", Action.PUT, field_type="card"), "callers.checkout.grants[0]"),
        (default.decide("checkout", Action.GET, field_type="card"), "callers.checkout.grants[1]"),
        (
            default.decide(
                "checkout",
                Action.GET,
                field_type="payment_token",
                view=View.PLAINTEXT,
                purpose="checkout",
            ),
            "callers.checkout.grants[2]",
        ),
        (
            default.decide(
                "checkout", Action.DETOKENIZE, field_type="payment_token", purpose="checkout"
            ),
            "callers.checkout.grants[3]",
        ),
        (
            default.decide("privacy-desk", Action.EXPORT, purpose="dsar"),
            "callers.privacy-desk.grants[2]",
        ),
        (default.decide("privacy-desk", Action.HOLD), "callers.privacy-desk.grants[3]"),
        (default.decide("deletion", Action.SHRED), "callers.deletion.grants[0]"),
        (default.decide("admin", Action.ADMIN), "callers.admin.grants[0]"),
    ]
    for decision, rule in cases:
        assert decision.allowed, decision
        assert decision.rule == rule
        assert decision.reason.startswith(f"{rule} allows caller ")


def test_denial_reason_is_a_sentence_naming_the_request(default: Policy) -> None:
    decision = default.decide(
        "checkout", Action.GET, field_type="card", view=View.PLAINTEXT, purpose="checkout"
    )
    assert decision == Decision(
        allowed=False,
        rule="",
        reason="no grant of caller 'checkout' allows get of card with view plaintext"
        " for purpose 'checkout'",
    )


def test_denial_reason_explains_a_missing_purpose(default: Policy) -> None:
    decision = default.decide(
        "privacy-desk", Action.GET, field_type="phone", field="phone", view=View.PLAINTEXT
    )
    assert not decision.allowed
    assert "field 'phone'" in decision.reason
    assert "needs a named purpose" in decision.reason


def test_decide_and_allows_agree(default: Policy) -> None:
    callers = [*sorted(default.callers()), "mallory"]
    views: list[View | None] = [None, *View]
    for caller in callers:
        for action in Action:
            for field_type in [None, *ALL_TYPES]:
                for view in views:
                    for purpose in ("", "checkout", "dsar", "*"):
                        decision = default.decide(
                            caller, action, field_type=field_type, view=view, purpose=purpose
                        )
                        assert decision.allowed == default.allows(
                            caller, action, field_type=field_type, view=view, purpose=purpose
                        )
                        assert (decision.rule != "") == decision.allowed


def test_first_matching_grant_wins() -> None:
    policy = Policy.from_toml(
        """
        [[callers.a.grants]]
        actions = ["get"]
        field_types = ["phone"]

        [[callers.a.grants]]
        actions = ["get", "put"]
        field_types = ["*"]
        """
    )
    assert policy.decide("a", Action.GET, field_type="phone").rule == "callers.a.grants[0]"
    assert policy.decide("a", Action.GET, field_type="email").rule == "callers.a.grants[1]"
    assert policy.decide("a", Action.PUT, field_type="phone").rule == "callers.a.grants[1]"


# --- purposes ----------------------------------------------------------------------------------


def test_requires_consent(default: Policy) -> None:
    assert default.requires_consent("marketing_sms")
    assert not default.requires_consent("checkout")
    assert not default.requires_consent("dsar")
    assert not default.requires_consent("")


def test_requires_consent_false_is_recorded_as_not_required() -> None:
    policy = Policy.from_toml(
        "[purposes.analytics]\nrequires_consent = false\n[purposes.newsletter]\n"
        "requires_consent = true\n"
    )
    assert not policy.requires_consent("analytics")
    assert policy.requires_consent("newsletter")
    assert policy.callers() == frozenset()


def test_compiled_answers_equal_decide_on_every_ask_and_past_the_table_bound(
    default: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``allows`` keeps its answers per request shape; they must stay ``decide``'s answers."""
    import vault.policy.policy as policy_module

    monkeypatch.setattr(policy_module, "_MAX_DECISIONS", 50)
    asks = [
        (caller, action, field_type, field, view, purpose)
        for caller in ("registration", "checkout", "privacy-desk", "nobody")
        for action in (Action.GET, Action.PUT, Action.DETOKENIZE)
        for field_type in ("phone", "payment_token", "card")
        for field in ("phone", "card.primary", "x")
        for view in (View.MASKED, View.PLAINTEXT)
        for purpose in ("", "checkout", "dsar")
    ]
    for _round in range(3):  # first ask compiles, the next ones read the table (or refill it)
        for caller, action, field_type, field, view, purpose in asks:
            asked = default.allows(
                caller, action, field_type=field_type, field=field, view=view, purpose=purpose
            )
            decided = default.decide(
                caller, action, field_type=field_type, field=field, view=view, purpose=purpose
            )
            assert asked == decided.allowed
    assert len(default._decisions) <= 50
    assert default.allows("checkout", Action.GET, field_type="card", field="card.primary")
