"""The files ``pii-vault init`` writes are the ones shipped in the package, and they parse."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

from vault.bootstrap.app import init_data_dir
from vault.domain.retention_rules import DEFAULT_RETENTION_TOML, RetentionRules
from vault.policy import DEFAULT_POLICY_TOML, Policy, PolicyError

PACKAGED_POLICY = files("vault.policy").joinpath("default_policy.toml")
PACKAGED_RETENTION = files("vault.domain").joinpath("default_retention.toml")


def test_the_defaults_are_the_packaged_files() -> None:
    assert DEFAULT_POLICY_TOML == PACKAGED_POLICY.read_text(encoding="utf-8")
    assert DEFAULT_RETENTION_TOML == PACKAGED_RETENTION.read_text(encoding="utf-8")


def test_init_writes_the_packaged_files_and_they_parse(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    made = init_data_dir(data_dir)

    policy_file = data_dir / "policy.toml"
    retention_file = data_dir / "retention.toml"
    assert {policy_file, retention_file} <= set(made)
    assert policy_file.read_bytes() == PACKAGED_POLICY.read_bytes()
    assert retention_file.read_bytes() == PACKAGED_RETENTION.read_bytes()
    assert Policy.load(policy_file).callers() == {
        "registration",
        "checkout",
        "deletion",
        "privacy-desk",
        "admin",
    }
    assert not RetentionRules.load(retention_file).empty


@pytest.mark.parametrize(
    "text",
    [
        '[[callers.x.grants]]\nactions = ["get", 3]\nfield_types = ["card"]\n',
        "[limits.default]\nsearch_burst = {}\nsearch_per_second = 1.0\n",
        '[identity]\nsource = "uri_san"\nuri_prefix = 7\n',
        "[callers.x]\ngrants = 7\n",
    ],
)
def test_a_bad_value_is_named_in_one_line_never_as_a_pydantic_report(text: str) -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.from_toml(text)
    message = str(caught.value)
    assert "\n" not in message
    assert "pydantic" not in message
    assert "Input should be" not in message
