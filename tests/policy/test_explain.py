"""``policy explain``: the server's decision for one call, the grant or the reason, offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from vault.cli import main
from vault.policy import DEFAULT_POLICY_TOML, Action, Policy, View
from vault.policy.explain import ExplainError, explain, infer_field_type


@pytest.fixture(scope="module")
def default() -> Policy:
    return Policy.from_toml(DEFAULT_POLICY_TOML)


# --- explain() -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "field_type"),
    [
        ("card.primary", "card"),
        ("payment_token.stripe", "payment_token"),
        ("phone", "phone"),
        ("address.shipping.old", "address"),
        ("date_of_birth", "date_of_birth"),
        ("shipping", None),
        ("cards.primary", None),
        ("", None),
    ],
)
def test_infer_field_type_reads_the_first_dotted_part(field: str, field_type: str | None) -> None:
    assert infer_field_type(field) == field_type


def test_allow_names_the_grant(default: Policy) -> None:
    answer = explain(
        default, "checkout", "get", "payment_token.stripe", None, "plaintext", "checkout"
    )
    assert answer.decision.allowed
    assert answer.decision.rule == "callers.checkout.grants[2]"
    text = str(answer)
    assert text.splitlines()[0] == "ALLOW"
    assert "rule:    callers.checkout.grants[2]" in text
    assert "type:    payment_token (from the name 'payment_token.stripe')" in text


def test_deny_gives_the_reason_and_no_rule(default: Policy) -> None:
    answer = explain(default, "checkout", "get", "card.primary", None, "plaintext", "checkout")
    assert not answer.decision.allowed
    text = str(answer)
    assert text.splitlines()[0] == "DENY"
    assert "rule:" not in text
    assert (
        "reason:  no grant of caller 'checkout' allows get of card field 'card.primary'"
        " with view plaintext for purpose 'checkout'"
    ) in text


def test_the_answer_is_the_policys_decision(default: Policy) -> None:
    # explain asks decide() exactly what the server asks for the same RPC.
    for caller in (*sorted(default.callers()), "mallory"):
        for view in View:
            for purpose in ("", "checkout", "dsar"):
                answer = explain(default, caller, "get", "payment_token.x", None, view, purpose)
                assert answer.decision == default.decide(
                    caller,
                    Action.GET,
                    field_type="payment_token",
                    field="payment_token.x",
                    view=view,
                    purpose=purpose,
                )


def test_type_flag_wins_over_the_field_name(default: Policy) -> None:
    # A field called "phone.backup" that holds an address: the stored type decides.
    answer = explain(default, "checkout", "get", "phone.backup", "address")
    assert answer.decision.allowed
    assert answer.field_type == "address"
    assert "type:    address\n" in str(answer)


def test_a_field_name_without_a_known_type_asks_for_type(default: Policy) -> None:
    with pytest.raises(ExplainError, match=r"cannot tell the type of field 'shipping'.*--type"):
        explain(default, "checkout", "get", "shipping")
    assert explain(default, "checkout", "get", "shipping", "address").decision.allowed


def test_unknown_caller_is_denied_with_the_reason(default: Policy) -> None:
    answer = explain(default, "mallory", "get", "phone")
    assert not answer.decision.allowed
    assert "caller 'mallory' is not named in the policy" in str(answer)


def test_reveal_without_purpose_says_a_purpose_is_needed(default: Policy) -> None:
    answer = explain(default, "privacy-desk", "get", "phone", view="plaintext")
    assert not answer.decision.allowed
    assert "needs a named purpose" in str(answer)
    assert explain(
        default, "privacy-desk", "get", "phone", None, "plaintext", "dsar"
    ).decision.allowed


def test_get_without_view_is_masked(default: Policy) -> None:
    answer = explain(default, "registration", "get", "email")
    assert answer.decision.rule == "callers.registration.grants[0]"
    assert "view:    masked" in str(answer)


def test_find_checks_the_type_only(default: Policy) -> None:
    # FindSubjects carries a value, not a field name: the positional only names the type.
    answer = explain(default, "registration", "find", "phone")
    assert answer.decision.allowed
    assert answer.field is None
    assert explain(default, "registration", "find", None, "email").decision.allowed
    assert not explain(default, "checkout", "find", None, "card").decision.allowed
    with pytest.raises(ExplainError, match="find searches one field type"):
        explain(default, "registration", "find")


@pytest.mark.parametrize(
    ("caller", "action", "rule"),
    [
        ("deletion", "shred", "callers.deletion.grants[0]"),
        ("admin", "admin", "callers.admin.grants[0]"),
        ("admin", "hold", "callers.admin.grants[0]"),
        ("privacy-desk", "hold", "callers.privacy-desk.grants[3]"),
    ],
)
def test_subject_wide_actions(default: Policy, caller: str, action: str, rule: str) -> None:
    assert explain(default, caller, action).decision.rule == rule


def test_consent_purpose_is_noted_for_reveals(default: Policy) -> None:
    policy = Policy.from_toml(
        DEFAULT_POLICY_TOML
        + '\n[[callers.sms.grants]]\nactions = ["get"]\nfield_types = ["phone"]\n'
        'views = ["plaintext"]\npurposes = ["marketing_sms"]\n'
    )
    answer = explain(policy, "sms", "get", "phone", None, "plaintext", "marketing_sms")
    assert answer.decision.allowed
    assert "requires consent" in str(answer)
    setting = explain(default, "privacy-desk", "consent", purpose="marketing_sms")
    assert setting.decision.allowed
    assert "requires consent" not in str(setting)


def test_export_takes_an_optional_type(default: Policy) -> None:
    assert explain(default, "privacy-desk", "export", purpose="dsar").decision.allowed
    assert explain(
        default, "privacy-desk", "export", "card.primary", purpose="dsar"
    ).decision.allowed
    assert not explain(default, "privacy-desk", "export", purpose="support").decision.allowed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("steal", "phone"), "unknown action 'steal'"),
        (("get", "phone", None, "clear"), "unknown view 'clear'"),
        (("put", "phone", None, "plaintext"), "a view applies to get only"),
        (("get", "phone", "iban"), "unknown field type 'iban'"),
        (("get",), "get acts on one field"),
        (("delete", None, "card"), "delete acts on one field"),
        (("shred", "phone"), "shred acts on a whole subject"),
        (("admin", None, "card"), "admin acts on a whole subject"),
        (("put", "phone", None, None, "support"), "a put call carries no purpose"),
        (("shred", None, None, None, "dsar"), "a shred call carries no purpose"),
    ],
)
def test_questions_the_server_could_not_be_asked_are_errors(
    default: Policy, args: tuple[str | None, ...], message: str
) -> None:
    with pytest.raises(ExplainError, match=message):
        explain(default, "checkout", *args)  # type: ignore[arg-type]


# --- the command line ------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("VAULT_DATA_DIR", "VAULT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "policy.toml").write_text(DEFAULT_POLICY_TOML, encoding="utf-8")
    return tmp_path


def test_cli_allow_exits_0(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "policy", "explain", "--as", "checkout", "get", "payment_token.stripe",
            "--view", "plaintext", "--purpose", "checkout", "--data-dir", str(data_dir),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0] == "ALLOW"
    assert "rule:    callers.checkout.grants[2]" in out
    assert f"policy:  {data_dir / 'policy.toml'}" in out


def test_cli_deny_exits_1(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "policy", "explain", "--as", "checkout", "get", "card.primary",
            "--view", "plaintext", "--purpose", "checkout", "--type", "card",
            "--data-dir", str(data_dir),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert out.splitlines()[0] == "DENY"
    assert "no grant of caller 'checkout' allows get of card" in out


def test_cli_reads_policy_file(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = data_dir / "other.toml"
    other.write_text('[[callers.ops.grants]]\nactions = ["shred"]\n', encoding="utf-8")
    assert main(["policy", "explain", "--as", "ops", "shred", "--policy", str(other)]) == 0
    assert "callers.ops.grants[0]" in capsys.readouterr().out
    assert main(["policy", "explain", "--as", "deletion", "shred", "--policy", str(other)]) == 1


def test_cli_uses_vault_policy_from_the_environment(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VAULT_DATA_DIR", str(data_dir))
    assert main(["policy", "explain", "--as", "deletion", "shred"]) == 0
    assert "callers.deletion.grants[0]" in capsys.readouterr().out


def test_cli_field_type_unknown_asks_for_type(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["policy", "explain", "--as", "checkout", "get", "shipping", "--data-dir", str(data_dir)]
    )
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "give --type" in captured.err


def test_cli_bad_policy_file_is_an_error_naming_the_place(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = data_dir / "bad.toml"
    bad.write_text('[[callers.x.grants]]\nactions = ["got"]\n', encoding="utf-8")
    assert main(["policy", "explain", "--as", "x", "admin", "--policy", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml: callers.x.grants[0].actions: unknown action 'got'" in err
    missing = data_dir / "missing.toml"
    assert main(["policy", "explain", "--as", "x", "admin", "--policy", str(missing)]) == 2
    assert "missing.toml" in capsys.readouterr().err


def test_cli_policy_and_data_dir_exclude_each_other(data_dir: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        main(
            [
                "policy", "explain", "--as", "x", "admin",
                "--policy", str(data_dir / "policy.toml"), "--data-dir", str(data_dir),
            ]
        )  # fmt: skip
    assert caught.value.code == 2
