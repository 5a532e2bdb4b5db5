"""Group checkpoints: fewer WAL checkpoints, and still one after every caller's commit."""

from __future__ import annotations

import threading
import time

import pytest

from vault.storage.checkpoint import GroupCheckpoint


class Recorder:
    """A checkpoint that logs when it begins and ends, and can be held open."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.release.set()
        self.began = threading.Event()
        self.fail_next = False

    def __call__(self) -> None:
        with self.lock:
            self.log.append(("begin", time.monotonic_ns()))
        self.began.set()
        self.release.wait(10)
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk I/O error")
        with self.lock:
            self.log.append(("end", time.monotonic_ns()))


def test_calls_one_after_another_each_run_a_checkpoint() -> None:
    recorder = Recorder()
    group = GroupCheckpoint(recorder)
    for _ in range(3):
        group()
    assert group.runs == 3
    assert [what for what, _ in recorder.log] == ["begin", "end"] * 3


def test_callers_arriving_during_a_checkpoint_share_the_next_one() -> None:
    recorder = Recorder()
    group = GroupCheckpoint(recorder)
    recorder.release.clear()
    first = threading.Thread(target=group)
    first.start()
    assert recorder.began.wait(5)
    asked: dict[int, int] = {}
    returned: dict[int, int] = {}

    def caller(n: int) -> None:
        asked[n] = time.monotonic_ns()
        group()
        returned[n] = time.monotonic_ns()

    waiters = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for thread in waiters:
        thread.start()
    time.sleep(0.2)  # all eight are waiting behind the checkpoint in progress
    assert returned == {}
    recorder.release.set()
    first.join(5)
    for thread in waiters:
        thread.join(5)
    assert group.runs == 2  # the one in progress, then one for all eight
    begins = [at for what, at in recorder.log if what == "begin"]
    ends = [at for what, at in recorder.log if what == "end"]
    for n in range(8):
        # Each returned after a checkpoint that began after it asked had ended.
        assert any(asked[n] < b and e <= returned[n] for b, e in zip(begins, ends, strict=True))


def test_a_failed_checkpoint_raises_and_the_waiters_run_their_own() -> None:
    recorder = Recorder()
    group = GroupCheckpoint(recorder)
    recorder.release.clear()
    recorder.fail_next = True
    errors: list[BaseException] = []

    def failing() -> None:
        try:
            group()
        except OSError as error:
            errors.append(error)

    first = threading.Thread(target=failing)
    first.start()
    assert recorder.began.wait(5)
    waiter = threading.Thread(target=group)
    waiter.start()
    time.sleep(0.1)
    recorder.release.set()
    first.join(5)
    waiter.join(5)
    assert len(errors) == 1
    assert group.runs == 1  # the waiter's own, after the failure
    assert [what for what, _ in recorder.log] == ["begin", "begin", "end"]
    with pytest.raises(OSError):
        recorder.fail_next = True
        group()
