"""``[limits]`` and the ``answers`` grant key: parsed, checked, and every error names its place."""

from __future__ import annotations

import pytest

from vault.policy import DEFAULT_POLICY_TOML, Action, FindAnswers, Policy, PolicyError, View
from vault.policy.limits import Budget, EnumerationAlarm, Rate

CALLERS = """
[[callers.registration.grants]]
actions = ["find", "get"]
field_types = ["phone", "email"]

[[callers.bulk.grants]]
actions = ["find"]
field_types = ["phone"]
answers = "subject_ids"
"""


def policy(limits: str) -> Policy:
    return Policy.from_toml(CALLERS + limits)


def error_of(text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        Policy.from_toml(CALLERS + text)
    return str(caught.value)


def test_the_default_policy_budgets_search_put_and_denials_and_sounds_the_alarm() -> None:
    limits = Policy.from_toml(DEFAULT_POLICY_TOML).limits
    assert limits.rate("registration", Budget.SEARCH) == Rate(per_second=1.0, burst=30)
    assert limits.rate("anyone", Budget.PUT) == Rate(per_second=100.0, burst=1000)
    assert limits.rate("checkout", Budget.DENIAL) == Rate(per_second=1.0, burst=100)
    assert limits.enumeration_alarm("registration") == EnumerationAlarm(
        window_seconds=600, misses=300, same_mask=20
    )


def test_a_policy_without_limits_limits_nothing() -> None:
    limits = policy("").limits
    assert limits.rate("registration", Budget.SEARCH) is None
    assert limits.enumeration_alarm("registration") is None


def test_a_callers_keys_override_single_keys_of_the_default() -> None:
    limits = policy(
        """
[limits.default]
search_per_second = 1.0
search_burst = 30
search_alarm_window_seconds = 600
search_alarm_same_mask = 20

[limits.callers.bulk]
search_burst = 500
search_alarm_same_mask = 100
"""
    ).limits
    assert limits.rate("registration", Budget.SEARCH) == Rate(1.0, 30)
    assert limits.rate("bulk", Budget.SEARCH) == Rate(1.0, 500)
    assert limits.enumeration_alarm("bulk") == EnumerationAlarm(600, same_mask=100)
    assert limits.enumeration_alarm("registration") == EnumerationAlarm(600, same_mask=20)


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("[limits]\nsearch_burst = 3\n", "limits.search_burst: unknown key"),
        ("[limits.default]\nsearch_per_seconds = 1.0\n", "limits.default.search_per_seconds"),
        ('[limits.default]\nsearch_per_second = "1"\nsearch_burst = 3\n', "expected a number"),
        ("[limits.default]\nsearch_per_second = true\nsearch_burst = 3\n", "expected a number"),
        ("[limits.default]\nsearch_per_second = 0\nsearch_burst = 3\n", "positive, finite"),
        ("[limits.default]\nsearch_per_second = inf\nsearch_burst = 3\n", "positive, finite"),
        ("[limits.default]\nsearch_per_second = 1.0\nsearch_burst = 2.5\n", "an integer"),
        (
            "[limits.default]\nsearch_per_second = 1.0\n",
            "limits.default.search_burst: missing; search_per_second needs it",
        ),
        (
            "[limits.callers.bulk]\ndenials_burst = 10\n",
            "limits.callers.bulk.denials_per_second: missing",
        ),
        ("[limits.callers.bluk]\nput_per_second = 1.0\nput_burst = 1\n", "no caller 'bluk'"),
        ("[limits.default]\nsearch_alarm_misses = 5\n", "search_alarm_window_seconds: missing"),
        (
            "[limits.default]\nsearch_alarm_window_seconds = 60\n",
            "limits.default.search_alarm_window_seconds: a window alone sounds no alarm",
        ),
        (
            "[limits.default]\nsearch_alarm_window_seconds = 60\nsearch_alarm_same_mask = 0\n",
            "limits.default.search_alarm_same_mask: must be a positive",
        ),
    ],
)
def test_every_limits_error_names_its_place(text: str, place: str) -> None:
    assert place in error_of(text)


def test_find_answers_only_whether_a_value_is_held_unless_the_grant_says_subject_ids() -> None:
    rules = policy("")
    assert rules.find_answers("registration", "phone") is FindAnswers.EXISTS
    assert rules.find_answers("bulk", "phone") is FindAnswers.SUBJECT_IDS
    assert rules.find_answers("bulk", "email") is FindAnswers.EXISTS  # no grant for e-mails
    default = Policy.from_toml(DEFAULT_POLICY_TOML)
    assert default.find_answers("registration", "phone") is FindAnswers.EXISTS


@pytest.mark.parametrize(
    ("grant", "message"),
    [
        (
            'actions = ["get"]\nfield_types = ["phone"]\nanswers = "exists"\n',
            "callers.x.grants[0].answers: applies to find only",
        ),
        (
            'actions = ["find"]\nfield_types = ["phone"]\nanswers = "subjects"\n',
            "callers.x.grants[0].answers: unknown answer 'subjects'",
        ),
        (
            'actions = ["find"]\nfield_types = ["phone"]\nanswers = ["exists"]\n',
            "callers.x.grants[0].answers: expected a string",
        ),
    ],
)
def test_a_bad_answers_key_names_its_place(grant: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Policy.from_toml("[[callers.x.grants]]\n" + grant)


def test_a_refusal_names_the_request_and_never_a_stored_type() -> None:
    rules = Policy.from_toml(DEFAULT_POLICY_TOML)
    reason = rules.refusal(
        "checkout", Action.GET, field="billing", view=View.PLAINTEXT, purpose="checkout"
    )
    assert reason == (
        "no grant of caller 'checkout' allows get of field 'billing' with view plaintext"
        " for purpose 'checkout'"
    )
    # The decision with the stored type, for the audit log only, does name it.
    assert (
        "card"
        in rules.decide(
            "checkout", Action.GET, field_type="card", field="billing", view=View.PLAINTEXT
        ).reason
    )


def test_grants_any_ignores_view_and_purpose_but_not_type_or_field() -> None:
    rules = Policy.from_toml(DEFAULT_POLICY_TOML)
    assert rules.grants_any("checkout", Action.GET, field_type="card", field="billing")
    assert not rules.grants_any("registration", Action.GET, field_type="card", field="billing")
    assert rules.grants_any("registration", Action.GET, field_type="phone", field="phone")
    assert not rules.grants_any("deletion", Action.GET, field_type="phone", field="phone")
