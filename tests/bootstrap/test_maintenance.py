"""The server's maintenance thread: it runs every step, survives failures, stops on time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from vault.bootstrap.maintenance import Maintenance
from vault.domain.retention import ExpiryRule, RetentionReport, RetentionRules
from vault.fields import FieldType

SECRET = "+37251234567"


class FakeSweeper:
    def __init__(self, rules: RetentionRules, error: Exception | None = None) -> None:
        self.rules = rules
        self.error = error
        self.runs = 0
        self.cancelled: Callable[[], bool] | None = None

    def run(self, *, cancelled: Callable[[], bool]) -> RetentionReport:
        self.runs += 1
        self.cancelled = cancelled
        if self.error is not None:
            raise self.error
        return RetentionReport(subjects_shredded=2)


class FakeStore:
    def __init__(self, checkpoint_error: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.checkpoint_error = checkpoint_error

    def checkpoint(self) -> None:
        self.calls.append("checkpoint")
        if self.checkpoint_error is not None:
            raise self.checkpoint_error

    def vacuum_keys(self) -> None:
        self.calls.append("vacuum")


RULES = RetentionRules(expiry=(ExpiryRule(FieldType.CARD, 90),))


def maintenance(sweeper: FakeSweeper, store: FakeStore, interval: float = 3600) -> Maintenance:
    return Maintenance(sweeper, store, interval)  # type: ignore[arg-type]


def test_one_run_sweeps_then_checkpoints_then_vacuums(caplog: pytest.LogCaptureFixture) -> None:
    sweeper, store = FakeSweeper(RULES), FakeStore()
    with caplog.at_level(logging.INFO, logger="vault.maintenance"):
        report = maintenance(sweeper, store).run_once()
    assert report is not None and report.subjects_shredded == 2
    assert sweeper.runs == 1
    assert store.calls == ["checkpoint", "vacuum"]
    assert "0 cards deleted, 2 subjects shredded" in caplog.text


def test_no_rules_means_no_sweep_but_storage_upkeep_still_runs() -> None:
    sweeper, store = FakeSweeper(RetentionRules()), FakeStore()
    assert maintenance(sweeper, store).run_once() is None
    assert sweeper.runs == 0
    assert store.calls == ["checkpoint", "vacuum"]


def test_a_failing_step_is_logged_by_type_only_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sweeper = FakeSweeper(RULES, RuntimeError(f"value {SECRET} leaked"))
    store = FakeStore(checkpoint_error=OSError(f"disk full near {SECRET}"))
    with caplog.at_level(logging.INFO):
        maintenance(sweeper, store).run_once()  # does not raise
    assert store.calls == ["checkpoint", "vacuum"]
    assert "retention sweep failed (RuntimeError)" in caplog.text
    assert "checkpoint failed (OSError)" in caplog.text
    assert SECRET not in caplog.text


def test_the_thread_runs_at_once_and_stops_promptly_mid_interval() -> None:
    sweeper, store = FakeSweeper(RULES), FakeStore()
    thread = maintenance(sweeper, store, interval=3600)
    thread.start()
    deadline = time.monotonic() + 10
    while thread.runs < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert thread.daemon
    started = time.monotonic()
    thread.stop(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2
    assert sweeper.cancelled is not None and sweeper.cancelled()  # a running sweep sees it


def test_it_runs_again_every_interval() -> None:
    sweeper, store = FakeSweeper(RULES), FakeStore()
    thread = maintenance(sweeper, store, interval=0.05)
    thread.start()
    deadline = time.monotonic() + 10
    while thread.runs < 3:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    thread.stop(timeout=5)
    assert sweeper.runs >= 3


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        maintenance(FakeSweeper(RULES), FakeStore(), interval=0)
