"""What the benchmark modules share: the ratio table and a process CPU clock.

Imported by ``conftest.py`` and the benchmark modules as a top-level module
(pytest's default ``prepend`` import mode puts ``benchmarks/`` on ``sys.path``).
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NOISY_DISAGREEMENT = 0.15


@dataclass
class Side:
    """One side of a pair: a sample (median, min) per repetition, all in one unit."""

    label: str
    unit: str = "s"
    medians: list[float] = field(default_factory=list)
    mins: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """The median of the repetitions' medians."""
        return statistics.median(self.medians)

    @property
    def min(self) -> float:
        """The best round of any repetition."""
        return min(self.mins)


@dataclass
class Pair:
    group: str
    goal: float | None = None
    note: str = ""
    baseline: Side | None = None
    subject: Side | None = None

    def ratio(self, which: str) -> float:
        assert self.baseline is not None and self.subject is not None
        base = getattr(self.baseline, which)
        return math.inf if base == 0 else getattr(self.subject, which) / base


@dataclass
class RatioTable:
    """Pairs of measurements, keyed by group, printed at the end of the session.

    A side may be recorded several times (repetitions alternating with the
    other side, so that a burst of load cannot cover all of one side's rounds).
    """

    pairs: dict[str, Pair] = field(default_factory=dict)

    def declare(self, group: str, *, goal: float | None = None, note: str = "") -> None:
        pair = self.pairs.setdefault(group, Pair(group))
        pair.goal = goal if goal is not None else pair.goal
        pair.note = note or pair.note

    def add(
        self,
        group: str,
        role: str,
        label: str,
        median: float,
        minimum: float | None = None,
        unit: str = "s",
    ) -> None:
        """Record one repetition of one side; ``role`` is ``baseline`` or ``subject``."""
        if role not in ("baseline", "subject"):
            raise ValueError(f"role must be baseline or subject, not {role!r}")
        pair = self.pairs.setdefault(group, Pair(group))
        side: Side | None = getattr(pair, role)
        if side is None:
            side = Side(label, unit)
            setattr(pair, role, side)
        elif side.label != label or side.unit != unit:
            raise ValueError(f"{group}: {role} is {side.label} in {side.unit}, not {label}")
        side.medians.append(median)
        side.mins.append(median if minimum is None else minimum)

    def add_benchmark(self, group: str, role: str, label: str, benchmark: Any) -> None:
        """Record a finished pytest-benchmark run (nothing when benchmarks are disabled)."""
        if benchmark.disabled or benchmark.stats is None:
            return
        stats = benchmark.stats.stats
        self.add(group, role, label, stats.median, stats.min)

    def render(self) -> list[str]:
        complete = [p for p in self.pairs.values() if p.baseline and p.subject]
        if not complete:
            return []
        rows = [
            (
                "group",
                "subject / baseline",
                "median",
                "min",
                "ratio(med)",
                "ratio(min)",
                "reps",
                "goal",
                "verdict",
            )
        ]
        for pair in complete:
            assert pair.baseline is not None and pair.subject is not None
            r_med, r_min = pair.ratio("median"), pair.ratio("min")
            verdict = ""
            if pair.goal is not None:
                verdict = "ok" if r_min <= pair.goal else "OVER"
            if abs(r_med - r_min) > NOISY_DISAGREEMENT * r_min:
                verdict = (verdict + " noisy").strip()
            rows.append(
                (
                    pair.group,
                    f"{pair.subject.label} / {pair.baseline.label}",
                    f"{_fmt(pair.subject.median, pair.subject.unit)} / "
                    f"{_fmt(pair.baseline.median, pair.baseline.unit)}",
                    f"{_fmt(pair.subject.min, pair.subject.unit)} / "
                    f"{_fmt(pair.baseline.min, pair.baseline.unit)}",
                    f"{r_med:.2f}x",
                    f"{r_min:.2f}x",
                    f"{len(pair.subject.mins)}+{len(pair.baseline.mins)}",
                    "" if pair.goal is None else f"<= {pair.goal:g}x",
                    verdict,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        notes = [f"  {p.group}: {p.note}" for p in complete if p.note]
        if notes:
            lines += ["", "notes:", *notes]
        return lines


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1e6:.2f}us"
    return f"{value:.2f}{unit}"


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (all its threads, live or exited), in seconds.

    The kernel scales the sum to the scheduler's exact runtime and rounds it to
    clock ticks (usually 10 ms), so measure windows of at least a few hundred ms.
    """
    after_comm = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # Counting from "state" (field 3 of proc(5)): utime is field 14, stime field 15.
    utime, stime = int(after_comm[11]), int(after_comm[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")
