"""PolicyHolder: a reload swaps the whole policy at once, and a bad file keeps the old one."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from vault.bootstrap.app import PolicyHolder
from vault.cli import _reload_policy
from vault.policy import DEFAULT_POLICY_TOML, Action, PolicyError

# Two policies that differ in two grants of one caller: a reader that ever saw one
# grant of each would have seen a half-swapped policy.
WITH_ROBOT = (
    DEFAULT_POLICY_TOML
    + '\n[[callers.robot.grants]]\nactions = ["get"]\nfield_types = ["phone"]\n'
    + '\n[[callers.robot.grants]]\nactions = ["put"]\nfield_types = ["phone"]\n'
)
WITHOUT_ROBOT = DEFAULT_POLICY_TOML


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(WITHOUT_ROBOT, encoding="utf-8")
    return path


def test_reload_swaps_in_the_new_policy(path: Path) -> None:
    holder = PolicyHolder(path)
    before = holder()
    assert not before.allows("robot", Action.GET, field_type="phone")
    path.write_text(WITH_ROBOT, encoding="utf-8")
    assert holder() is before  # nothing changes until asked
    loaded = holder.reload()
    assert holder() is loaded
    assert loaded.allows("robot", Action.GET, field_type="phone")
    assert not before.allows("robot", Action.GET, field_type="phone")  # the old one is untouched


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[[callers.robot.grants]]\nactions = ["got"]\n', PolicyError),
        ("[callers\n", PolicyError),
        (b"\xff\xfe not utf-8", ValueError),
    ],
)
def test_a_bad_file_keeps_the_old_policy(path: Path, text: str | bytes, error: type) -> None:
    holder = PolicyHolder(path)
    before = holder()
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(error):
        holder.reload()
    assert holder() is before


def test_a_missing_file_keeps_the_old_policy(path: Path) -> None:
    holder = PolicyHolder(path)
    before = holder()
    path.unlink()
    with pytest.raises(FileNotFoundError):
        holder.reload()
    assert holder() is before


def test_readers_never_see_half_a_policy(path: Path) -> None:
    holder = PolicyHolder(path)
    stop = threading.Event()
    torn: list[tuple[bool, bool]] = []
    seen: set[bool] = set()

    def read() -> None:
        while not stop.is_set():
            policy = holder()
            pair = (
                policy.allows("robot", Action.GET, field_type="phone"),
                policy.allows("robot", Action.PUT, field_type="phone"),
            )
            if pair[0] != pair[1]:
                torn.append(pair)
            seen.add(pair[0])
            time.sleep(0)  # let the reloading thread have the GIL too

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        for round_ in range(40):
            path.write_text(WITH_ROBOT if round_ % 2 == 0 else WITHOUT_ROBOT, encoding="utf-8")
            holder.reload()
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert torn == []
    assert seen == {True, False}


def test_sighup_handler_logs_the_reload(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    holder = PolicyHolder(path)
    path.write_text(WITH_ROBOT, encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="vault"):
        _reload_policy(holder)
    assert f"policy reloaded from {path}" in caplog.text
    assert holder().allows("robot", Action.GET, field_type="phone")


def test_sighup_handler_logs_why_a_bad_file_was_refused(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = PolicyHolder(path)
    before = holder()
    path.write_text(WITH_ROBOT + '[[callers.robot.grants]]\nactions = ["putt"]\n', encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="vault"):
        _reload_policy(holder)  # must not raise: it runs as a signal handler
    assert holder() is before
    [record] = [r for r in caplog.records if "policy" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        f"policy not reloaded, keeping the old one: {path}: "
        "callers.robot.grants[2].actions: unknown action 'putt'"
    )
