"""Group commit: callers arriving during an audit write share the next transaction."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import UTC, datetime

import pytest

from vault.audit.group_commit import GroupCommit
from vault.audit.records import AuditRecord, ChainedEvent
from vault.errors import Unavailable

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def event(n: int) -> AuditRecord:
    return AuditRecord(NOW, "privacy-desk", "reveal", subject_id=f"s-{n}", view="plaintext")


class HeldWriter:
    """A write that can be held open and made to fail; it records what it wrote."""

    def __init__(self) -> None:
        self.written: list[list[str]] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self.fail_with: BaseException | None = None

    def __call__(self, events: list[AuditRecord]) -> list[ChainedEvent]:
        self.started.set()
        self.release.wait(10)
        if self.fail_with is not None:
            raise self.fail_with
        self.written.append([e.subject_id for e in events])
        return []


def run_while_held(
    group: GroupCommit, writer: HeldWriter, callers: int
) -> tuple[list[BaseException | None], threading.Thread]:
    """One append holds the writer; ``callers`` more arrive; then the writer is released."""
    writer.release.clear()

    def leader() -> None:
        with contextlib.suppress(Unavailable, RuntimeError):  # its own failure is not asserted
            group.append([event(0)])

    first = threading.Thread(target=leader)
    first.start()
    assert writer.started.wait(5)
    outcomes: list[BaseException | None] = [None] * callers
    returned = [False] * callers

    def call(n: int) -> None:
        try:
            group.append([event(n)])
        except BaseException as error:
            outcomes[n - 1] = error
        returned[n - 1] = True

    threads = [threading.Thread(target=call, args=(n,)) for n in range(1, callers + 1)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    assert not any(returned)  # nobody answers before its events are written
    writer.release.set()
    for thread in threads:
        thread.join(5)
    return outcomes, first


def test_callers_arriving_during_a_write_share_the_next_transaction() -> None:
    writer = HeldWriter()
    group = GroupCommit(writer)
    outcomes, first = run_while_held(group, writer, 6)
    first.join(5)
    assert outcomes == [None] * 6
    assert group.transactions == 2
    assert writer.written[0] == ["s-0"]
    assert sorted(writer.written[1]) == [f"s-{n}" for n in range(1, 7)]


def test_every_member_of_a_failed_group_fails() -> None:
    writer = HeldWriter()
    group = GroupCommit(writer)
    group.append([event(0)])
    writer.fail_with = Unavailable("the audit log cannot be written")
    writer.started.clear()
    outcomes, first = run_while_held(group, writer, 4)
    first.join(5)
    assert all(isinstance(o, Unavailable) for o in outcomes)
    assert writer.written == [["s-0"]]


def test_an_unexpected_failure_is_unavailable_for_the_others() -> None:
    writer = HeldWriter()
    group = GroupCommit(writer)
    writer.fail_with = RuntimeError("driver crashed")
    with pytest.raises(RuntimeError):
        group.append([event(0)])
    writer.started.clear()
    outcomes, first = run_while_held(group, writer, 3)
    first.join(5)
    # The group's leader sees the crash itself; the others are told nothing was written.
    assert sorted(type(o).__name__ for o in outcomes) == ["RuntimeError", *["Unavailable"] * 2]
    assert writer.written == []
