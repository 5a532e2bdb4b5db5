"""A text progress bar for long command-line jobs: ``[#####.....] 120/300 items``.

On a terminal the bar is redrawn in place (``\\r``) at most every
``min_interval`` seconds; elsewhere (a log file, a pipe) it is written line
by line, one line per tenth of the way, so logs stay short. The first and last
states are always shown. It shows counts only, never what is being counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


class ProgressBar:
    def __init__(
        self,
        stream: TextIO,
        unit: str,
        *,
        width: int = 30,
        min_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._unit = unit
        self._width = width
        self._min_interval = min_interval
        self._clock = clock
        self._tty = stream.isatty()
        self._last_drawn = -1.0
        self._last_tenth = -1
        self._last: tuple[int, int] | None = None
        self._pending = False

    def render(self, done: int, total: int) -> str:
        filled = self._width if total <= 0 else min(self._width, done * self._width // total)
        return f"[{'#' * filled}{'.' * (self._width - filled)}] {done}/{total} {self._unit}"

    def update(self, done: int, total: int) -> None:
        """Record progress; the signature fits ``RetentionSweeper.run(progress=...)``."""
        self._last = (done, total)
        finished = done >= total
        if self._tty:
            now = self._clock()
            if finished or now - self._last_drawn >= self._min_interval:
                self._stream.write("\r" + self.render(done, total))
                self._stream.flush()
                self._last_drawn = now
                self._pending = False
            else:
                self._pending = True
            return
        tenth = 10 if total <= 0 else min(10, done * 10 // total)
        if tenth != self._last_tenth:
            self._stream.write(self.render(done, total) + "\n")
            self._stream.flush()
            self._last_tenth = tenth

    def finish(self) -> None:
        """On a terminal: draw the final state if it is not on screen yet, and end the line."""
        if self._tty and self._last is not None:
            if self._pending:
                self._stream.write("\r" + self.render(*self._last))
            self._stream.write("\n")
            self._stream.flush()
