"""Consent and canaries, against SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from clocks import ManualTime

from vault.audit.chain_key import StaticChainKey
from vault.audit.log import AuditLog
from vault.bootstrap.app import PolicyHolder
from vault.domain.guards import AccessGuards
from vault.errors import InvalidArgument, PermissionDenied
from vault.policy import DEFAULT_POLICY_TOML
from vault.storage.database import Store

NOW = datetime(2026, 11, 22, tzinfo=UTC)


@pytest.fixture
def audit(store: Store) -> AuditLog:
    return AuditLog(store, lambda: NOW, chain_key=StaticChainKey(bytes(range(32))))


@pytest.fixture
def monotonic() -> ManualTime[float]:
    return ManualTime(0.0)


@pytest.fixture
def guards(
    store: Store, audit: AuditLog, tmp_path: Path, monotonic: ManualTime[float]
) -> AccessGuards:
    policy = tmp_path / "policy.toml"
    policy.write_text(DEFAULT_POLICY_TOML)
    return AccessGuards(store, PolicyHolder(policy), audit, lambda: NOW, monotonic=monotonic)


def test_a_consent_purpose_is_refused_until_consent_is_given(
    guards: AccessGuards, audit: AuditLog
) -> None:
    with pytest.raises(PermissionDenied, match="not consented"):
        guards.check_consent("privacy-desk", "get", "s-1", "marketing_sms")
    guards.set_consent("privacy-desk", "s-1", "marketing_sms", granted=True)
    guards.check_consent("privacy-desk", "get", "s-1", "marketing_sms")
    # Consent is per subject.
    with pytest.raises(PermissionDenied):
        guards.check_consent("privacy-desk", "get", "s-2", "marketing_sms")
    denials = [e for e in audit.events() if e.outcome == "denied"]
    assert [(e.subject_id, e.purpose, e.detail) for e in denials] == [
        ("s-1", "marketing_sms", "no consent"),
        ("s-2", "marketing_sms", "no consent"),
    ]


def test_withdrawing_consent_takes_effect_at_once(guards: AccessGuards) -> None:
    guards.set_consent("privacy-desk", "s-1", "marketing_sms", granted=True)
    guards.check_consent("privacy-desk", "get", "s-1", "marketing_sms")
    guards.set_consent("privacy-desk", "s-1", "marketing_sms", granted=False)
    with pytest.raises(PermissionDenied):
        guards.check_consent("privacy-desk", "get", "s-1", "marketing_sms")


def test_purposes_without_requires_consent_need_none(guards: AccessGuards) -> None:
    guards.check_consent("privacy-desk", "get", "s-1", "dsar")
    guards.check_consent("registration", "get", "s-1", "")


def test_only_callers_granted_consent_may_record_it(guards: AccessGuards) -> None:
    with pytest.raises(PermissionDenied):
        guards.set_consent("checkout", "s-1", "marketing_sms", granted=True)
    with pytest.raises(InvalidArgument):
        guards.set_consent("privacy-desk", "s-1", "", granted=True)


def test_a_canary_read_is_refused_counted_and_audited_as_high_severity(
    guards: AccessGuards, audit: AuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    guards.plant_canary("admin", "decoy-1", "phone")
    guards.check_canary("registration", "get", "decoy-1", "email")  # not a canary
    with caplog.at_level(logging.CRITICAL, logger="vault.alarm"), pytest.raises(PermissionDenied):
        guards.check_canary("registration", "get", "decoy-1", "phone")
    assert guards.canary_hits == 1
    assert "CANARY READ" in caplog.text
    [event] = [e for e in audit.events() if e.outcome == "canary"]
    assert (event.caller, event.subject_id, event.field) == ("registration", "decoy-1", "phone")
    assert "severity=high" in event.detail


def test_only_operators_plant_canaries(guards: AccessGuards) -> None:
    with pytest.raises(PermissionDenied):
        guards.plant_canary("registration", "decoy-1", "phone")


def test_another_replica_learns_of_a_canary_within_the_refresh_interval(
    store: Store,
    audit: AuditLog,
    guards: AccessGuards,
    tmp_path: Path,
    monotonic: ManualTime[float],
) -> None:
    policy = tmp_path / "policy.toml"
    other = AccessGuards(store, PolicyHolder(policy), audit, lambda: NOW, monotonic=monotonic)
    assert not other.is_canary("decoy-2", "phone")  # loads the (empty) set
    guards.plant_canary("admin", "decoy-2", "phone")
    assert not other.is_canary("decoy-2", "phone")  # still within its refresh interval
    monotonic.now += 5.0
    assert other.is_canary("decoy-2", "phone")
