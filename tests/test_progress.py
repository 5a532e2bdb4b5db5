"""The command-line progress bar: in place on a terminal, line by line elsewhere."""

from __future__ import annotations

import io

from vault.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_bar_is_redrawn_in_place() -> None:
    now = [0.0]
    stream = Terminal()
    bar = ProgressBar(stream, "items", width=10, min_interval=0.1, clock=lambda: now[0])
    for done in range(0, 301, 30):
        now[0] += 0.5
        bar.update(done, 300)
    bar.finish()
    text = stream.getvalue()
    assert text.startswith("\r[..........] 0/300 items")
    assert "\r[####......] 120/300 items" in text
    assert text.endswith("\r[##########] 300/300 items\n")
    assert text.count("\n") == 1


def test_on_a_terminal_fast_updates_are_coalesced_but_the_last_state_is_drawn() -> None:
    stream = Terminal()
    bar = ProgressBar(stream, "items", width=10, min_interval=60, clock=lambda: 100.0)
    for done in range(0, 51):
        bar.update(done, 100)  # stops half-way: a cancelled run
    bar.finish()
    text = stream.getvalue()
    assert text.count("\r") == 2  # the first state, then the last one at finish
    assert text.endswith("\r[#####.....] 50/100 items\n")


def test_elsewhere_one_line_per_tenth() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, "items", width=10)
    for done in range(0, 1001):
        bar.update(done, 1000)
    bar.finish()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert len(lines) == 11
    assert lines[0] == "[..........] 0/1000 items"
    assert lines[3] == "[###.......] 300/1000 items"
    assert lines[-1] == "[##########] 1000/1000 items"


def test_nothing_to_do_is_one_full_bar() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, "items", width=4)
    bar.update(0, 0)
    bar.finish()
    assert stream.getvalue() == "[####] 0/0 items\n"
