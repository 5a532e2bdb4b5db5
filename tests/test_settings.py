"""Settings: one declaration for every flag and variable, and the order in which they win.

A flag wins over ``PII_VAULT_<NAME>``, which wins over the deprecated
``VAULT_<NAME>`` (read with a warning naming the new name, once), which wins
over the default. The HashiCorp Vault and OpenBao clients' own ``VAULT_ADDR``,
``VAULT_TOKEN`` and ``VAULT_CACERT`` are never read. The README's table is
generated from the declarations and must not go stale.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import pytest

from vault import environment
from vault.cli.client_commands import RETIRED_VERSIONS_METADATA, data_dir_of, target_of
from vault.cli.parser import build_parser
from vault.config import Settings, SettingsError, declared_settings, from_env
from vault.transport.servicer import RETIRED_VERSIONS_METADATA as SERVER_RETIRED_VERSIONS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import settings_table

HASHICORP_VARIABLES = {
    "VAULT_ADDR": "https://vault:8200",
    "VAULT_TOKEN": "s.x",
    "VAULT_CACERT": "/ca",
}


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the once-per-process deprecation warnings afresh."""
    monkeypatch.setattr(environment, "_warned", set())


def test_the_readme_settings_table_is_the_one_the_declarations_generate() -> None:
    readme = settings_table.README.read_text(encoding="utf-8")
    assert settings_table.BEGIN in readme
    assert settings_table.with_table(readme) == readme, "run scripts/settings_table.py"


def test_every_variable_has_the_new_prefix_and_none_is_hashicorps() -> None:
    variables = [d.variable for d in declared_settings() if d.variable]
    assert variables and all(v.startswith("PII_VAULT_") for v in variables)
    old_names = {v.removeprefix("PII_") for v in variables}
    assert old_names.isdisjoint(HASHICORP_VARIABLES)


@pytest.mark.parametrize(
    ("name", "flag", "new", "old", "default"),
    [
        ("threads", 4, 8, 12, 16),
        ("listen", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:50051"),
        ("data_dir", Path("flag"), Path("new"), Path("old"), Path("var/vault")),
        ("retention_interval", 5.0, 6.0, 7.0, 3600.0),
    ],
)
def test_a_flag_wins_over_the_new_name_which_wins_over_the_old_which_wins_over_the_default(
    name: str, flag: object, new: object, old: object, default: object
) -> None:
    variable = next(d.variable for d in declared_settings() if d.name == name)
    assert variable is not None
    deprecated = variable.removeprefix("PII_")
    both = {variable: str(new), deprecated: str(old)}
    with pytest.warns(DeprecationWarning, match=f"{deprecated} is ignored: {variable} is set"):
        assert getattr(from_env({name: flag}, both), name) == flag
    assert getattr(from_env({name: None}, both), name) == new
    assert getattr(from_env({}, {deprecated: str(old)}), name) == old
    assert getattr(from_env({}, {}), name) == default


def test_an_old_name_warns_once_naming_the_new_one(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vault.settings")
    with pytest.warns(
        DeprecationWarning, match="VAULT_WORKERS is deprecated; set PII_VAULT_WORKERS"
    ):
        assert from_env({}, {"VAULT_WORKERS": "3"}).workers == 3
    assert [r.getMessage() for r in caplog.records] == [
        "VAULT_WORKERS is deprecated; set PII_VAULT_WORKERS instead"
    ]
    caplog.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # given once per process, already given above
        assert from_env({}, {"VAULT_WORKERS": "3"}).workers == 3
    assert caplog.records == []


def test_hashicorp_variables_are_not_read_as_ours() -> None:
    assert from_env({}, HASHICORP_VARIABLES) == from_env({}, {})
    for name, value in HASHICORP_VARIABLES.items():
        with pytest.raises(ValueError, match="not ours"):
            environment.read_variable(name.removeprefix("VAULT_"), {name: value})


def test_settings_built_in_code_read_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PII_VAULT_THREADS", "3")
    monkeypatch.setenv("PII_VAULT_AUDIT_JSONL", "-")
    assert Settings(data_dir=Path("d")) == Settings(data_dir=Path("d"), threads=16, audit_jsonl="")
    assert from_env({}).threads == 3


def test_a_bad_value_names_its_flag_and_variable_not_the_value() -> None:
    with pytest.raises(SettingsError, match="--workers / PII_VAULT_WORKERS") as raised:
        from_env({}, {"PII_VAULT_WORKERS": "secret-ish"})
    assert "secret-ish" not in str(raised.value)


def test_empty_paths_are_unset_and_rotation_words_turn_the_schedule_off() -> None:
    settings = from_env({}, {"PII_VAULT_POLICY": "", "PII_VAULT_ROTATION_DAYS": "Never"})
    assert settings.policy_path is None
    assert settings.effective_policy_path == Path("var/vault/policy.toml")
    assert settings.rotation_days == 0


def test_plaintext_is_a_flag_only() -> None:
    assert from_env({}, {"PII_VAULT_PLAINTEXT": "1", "VAULT_PLAINTEXT": "1"}).plaintext is False
    assert from_env({"plaintext": True}, {}).plaintext is True


def test_every_declared_flag_is_one_the_command_line_accepts() -> None:
    parser = build_parser()
    accepted: set[str] = set()
    pending = [parser]
    while pending:
        current = pending.pop()
        for action in current._actions:
            accepted.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
    declared = {flag for d in declared_settings() for flag in d.flags}
    assert declared <= accepted, declared - accepted


def test_the_caller_commands_resolve_data_dir_and_target_as_the_settings_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    none = argparse.Namespace(data_dir=None, target=None)
    assert (data_dir_of(none), target_of(none)) == (Settings().data_dir, Settings().target)
    monkeypatch.setenv("PII_VAULT_TARGET", "vault.internal:443")
    monkeypatch.setenv("VAULT_DATA_DIR", "/srv/vault")
    with pytest.warns(DeprecationWarning):
        settings = from_env({})
    assert (data_dir_of(none), target_of(none)) == (settings.data_dir, settings.target)
    flags = argparse.Namespace(data_dir="/d", target="h:1")
    assert (data_dir_of(flags), target_of(flags)) == (Path("/d"), "h:1")


def test_the_client_reads_the_retired_versions_under_the_servers_key() -> None:
    assert RETIRED_VERSIONS_METADATA == SERVER_RETIRED_VERSIONS
