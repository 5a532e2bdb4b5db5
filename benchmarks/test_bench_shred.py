"""ShredSubject latency as the database grows: 1k, 100k and 1M stored subjects.

The issue's goal: shredding must not get slower as the database grows, p50
at 1M subjects / p50 at 1k subjects <= 1.3 (100k / 1k is reported as well).

Each (back end, size) gets a fresh database, migrated, then seeded by
``shred_seeding.seed_vault``: 20 subjects through ``Vault.put_field`` with the
real crypto, the rest bulk-loaded with rows of the same shape and byte sizes
(8 rows a subject: subject, subject key, two fields, their two data keys and
two blind-index rows; SQLite through one ``executemany`` per table and chunk
with ``synchronous=OFF`` on the seeding connection only, PostgreSQL through
``COPY``). Seeding is not timed as part of the shred; its time is printed.

What is timed is ``Shredder.shred_subject`` as the ShredSubject RPC calls it
(policy check, request-id and hold lookups, then ``Shredder.shred``: the
delete transaction, the receipt signature, the audit append and the
``after_shred`` hook that ``build_app`` wires to ``Store.checkpoint``: a
``wal_checkpoint(TRUNCATE)`` on SQLite, nothing on PostgreSQL), on the
``App`` that ``build_app`` makes, as the
``deletion`` caller. Every round shreds a different subject, chosen at random
among all stored subjects before seeding (the 20 real ones among them), and
every receipt is checked (2 fields destroyed, 3 keys named) and every target's
key, field and index rows are checked gone afterwards.

Sizes run in alternating repetitions (1k, 100k, 1M, 1k, 100k, 1M, ...), each
repetition ``ROUNDS`` shreds of one size, so that a burst of load from a
neighbour on this shared machine spoils a little of every size rather than
all of one. The ratio table at the end of the session gets, per back end,
p50(100k) / p50(1k) and p50(1M) / p50(1k), each p50 over all the size's
shreds (see ``_record_ratios`` for why not a best repetition). This module
also prints its own table: p50, p95 and the spread of the repetitions' p50s,
this process's CPU time per shred, seeding times, and the ratios.

Run::

    pytest benchmarks/test_bench_shred.py -p no:cacheprovider --benchmark-enable -q -s

``-m "not huge"`` leaves out the 1M cases (their seeding is most of the
run's time). Without ``--benchmark-enable`` only the 1k cases run, one shred
each, as a smoke test. PostgreSQL (``VAULT_TEST_POSTGRES_URL``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) gets a ``CREATE
DATABASE`` per size, dropped at the end; unreachable, its cases are skipped
with the reason. The seeded databases (GBs at 1M) are deleted at the end of
the module.
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from time import process_time
from typing import Any

import pytest
from bench_support import RatioTable
from pytest_benchmark.fixture import BenchmarkFixture
from shred_seeding import (
    REAL_SAMPLE,
    SeededVault,
    key_rows_left,
    postgres_problem,
    seed_vault,
)

from vault.domain.shredding import ShredReceipt

pytestmark = pytest.mark.slow

SIZES = {1_000: "1k", 100_000: "100k", 1_000_000: "1M"}
BASELINE = 1_000
BACKENDS = ("sqlite", "postgres")
REPEATS = 10
ROUNDS = 20  # shreds per repetition: REPEATS * ROUNDS = 200 per size and back end
WARMUP = 5  # untimed shreds after seeding (statement caches, signer, pool)
GOAL = 1.3  # p50(size) / p50(1k), from the issue
CALLER = "deletion"
REASON = "account closed"

CASES = [
    pytest.param(
        backend,
        rep,
        size,
        id=f"{backend}-{SIZES[size]}-rep{rep}",
        marks=[pytest.mark.huge] if size >= 1_000_000 else [],
    )
    for backend in BACKENDS
    for rep in range(REPEATS)
    for size in SIZES
]


@dataclass
class Measured:
    seeded: SeededVault
    rounds: list[float] = field(default_factory=list)  # seconds, every timed shred
    cpu: list[float] = field(default_factory=list)  # this process's CPU seconds, per shred
    rep_p50s: list[float] = field(default_factory=list)  # p50 of each repetition


class Vaults:
    """Seeded vaults by (back end, size), made on first use and kept for the module."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self.measured: dict[tuple[str, int], Measured] = {}
        self._failed: dict[tuple[str, int], str] = {}
        self._pg_problem: str | None = None
        self._pg_checked = False

    def get(self, backend: str, size: int) -> Measured:
        key = (backend, size)
        if key in self.measured:
            return self.measured[key]
        if key in self._failed:
            pytest.fail(f"seeding {backend} {SIZES[size]} failed earlier: {self._failed[key]}")
        if backend == "postgres":
            if not self._pg_checked:
                self._pg_problem, self._pg_checked = postgres_problem(), True
            if self._pg_problem:
                pytest.skip(self._pg_problem)
        try:
            seeded = seed_vault(
                backend,
                size,
                self._root / f"{backend}-{SIZES[size]}",
                targets=REPEATS * ROUNDS + WARMUP,
            )
        except Exception as error:
            self._failed[key] = f"{type(error).__name__}: {error}"
            raise
        for n in range(WARMUP):
            shred(seeded, seeded.next_target(), f"warmup-{n}")
        self.measured[key] = Measured(seeded)
        return self.measured[key]

    def close(self) -> None:
        for measured in self.measured.values():
            measured.seeded.close()


def shred(seeded: SeededVault, subject_id: str, request_id: str) -> ShredReceipt:
    return seeded.app.shredder.shred_subject(CALLER, subject_id, REASON, request_id)


@pytest.fixture(scope="module")
def vaults(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config, ratios: RatioTable
) -> Iterator[Vaults]:
    registry = Vaults(tmp_path_factory.mktemp("shred"))
    try:
        yield registry
    finally:
        try:
            _record_ratios(registry, ratios)
            _report(registry, pytestconfig)
        finally:
            registry.close()


def _record_ratios(registry: Vaults, ratios: RatioTable) -> None:
    """Per back end, p50(size) / p50(1k) into the session's ratio table.

    The p50 is that of all ``REPEATS * ROUNDS`` shreds of a size, the figure
    the issue's goal is about, entered as both the median and the min of its
    side, so the verdict is on the p50 ratio itself. (A best-repetition p50
    would be the p50 of the 20 quietest-timed shreds: one lucky 1k repetition
    then decides the ratio.) The per-repetition p50s are pytest-benchmark's
    Median column; their spread is printed in this module's own table.
    """
    note = (
        f"p50 of {REPEATS * ROUNDS} ShredSubject domain calls per size "
        f"({REPEATS} alternating repetitions of {ROUNDS}), checkpoint hook included"
    )
    for backend in BACKENDS:
        base = registry.measured.get((backend, BASELINE))
        if base is None or not base.rounds:
            continue
        base_p50 = statistics.median(base.rounds)
        for size, label in SIZES.items():
            m = registry.measured.get((backend, size))
            if size == BASELINE or m is None or not m.rounds:
                continue
            p50 = statistics.median(m.rounds)
            group = f"shred {backend}: p50 {label} / {SIZES[BASELINE]}"
            ratios.declare(group, goal=GOAL, note=note)
            ratios.add(group, "baseline", SIZES[BASELINE], base_p50, base_p50)
            ratios.add(group, "subject", label, p50, p50)


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _report(registry: Vaults, config: pytest.Config) -> None:
    done = {k: m for k, m in registry.measured.items() if m.rounds}
    if not done:
        return
    reporter: Any = config.pluginmanager.get_plugin("terminalreporter")
    write = reporter.write_line if reporter is not None else print
    rows = [
        ("back end", "subjects", "rows", "seeding", "shreds", "p50", "p95", "rep p50s", "cpu p50",
         "p50 / 1k", "p95 / 1k", "cpu / 1k", f"goal p50 <= {GOAL:g}x")
    ]  # fmt: skip
    for backend in BACKENDS:
        base = done.get((backend, BASELINE))
        for size, label in SIZES.items():
            m = done.get((backend, size))
            if m is None:
                continue
            p50, p95 = statistics.median(m.rounds), _percentile(m.rounds, 0.95)
            cpu50 = statistics.median(m.cpu)
            ratio50 = ratio95 = ratio_cpu = verdict = ""
            if base is not None:
                r50 = p50 / statistics.median(base.rounds)
                ratio50 = f"{r50:.2f}x"
                ratio95 = f"{p95 / _percentile(base.rounds, 0.95):.2f}x"
                ratio_cpu = f"{cpu50 / statistics.median(base.cpu):.2f}x"
                verdict = "" if size == BASELINE else ("ok" if r50 <= GOAL else "OVER")
            rows.append(
                (backend, label, f"{m.seeded.rows:,}", f"{m.seeded.seed_seconds:.1f}s",
                 str(len(m.rounds)), f"{p50 * 1e3:.2f}ms", f"{p95 * 1e3:.2f}ms",
                 f"{min(m.rep_p50s) * 1e3:.1f}-{max(m.rep_p50s) * 1e3:.1f}ms",
                 f"{cpu50 * 1e3:.2f}ms", ratio50, ratio95, ratio_cpu, verdict)
            )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    write("")
    write(
        "ShredSubject latency by database size (all rounds pooled; seeding = "
        f"{REAL_SAMPLE} real PutField subjects + bulk load, not part of any shred):"
    )
    for line in lines:
        write(line)
    write(
        "cpu = this process's CPU time per shred (all of SQLite's work; only the client's "
        "for PostgreSQL): unlike wall time it does not wait for fsync or for other processes"
    )
    shape = next(iter(done.values())).seeded.footprint
    write(f"bulk rows shaped like the real sample: {shape.describe()}")


@pytest.mark.parametrize(("backend", "rep", "size"), CASES)
def test_shred_latency(
    benchmark: BenchmarkFixture,
    vaults: Vaults,
    backend: str,
    rep: int,
    size: int,
) -> None:
    if benchmark.disabled and (size != BASELINE or rep > 0):
        pytest.skip("benchmarks disabled: only the 1k smoke case runs (pass --benchmark-enable)")
    measured = vaults.get(backend, size)
    seeded = measured.seeded
    run = uuid.uuid4().hex[:8]
    shredded: list[str] = []
    receipts: list[ShredReceipt] = []
    cpu: list[float] = []
    counter = iter(range(ROUNDS))

    def next_round() -> tuple[tuple[str, str], dict[str, Any]]:
        subject_id = seeded.next_target()
        shredded.append(subject_id)
        return (subject_id, f"bench-{run}-{next(counter)}"), {}

    def shred_one(subject_id: str, request_id: str) -> None:
        started = process_time()
        receipts.append(shred(seeded, subject_id, request_id))
        cpu.append(process_time() - started)

    benchmark.group = f"shred {backend}"
    benchmark.extra_info.update(backend=backend, subjects=size, rep=rep)
    benchmark.pedantic(  # type: ignore[no-untyped-call]
        shred_one, setup=next_round, rounds=ROUNDS, iterations=1
    )

    # Every shred did the whole job: the bulk rows looked like real ones to it.
    assert receipts and len(receipts) == len(shredded)
    for receipt, subject_id in zip(receipts, shredded, strict=True):
        assert receipt.subject_id == subject_id
        assert receipt.fields_destroyed == 2 and len(receipt.key_ids) == 3
    assert key_rows_left(seeded.app, shredded) == 0

    if benchmark.disabled or benchmark.stats is None:
        return
    data = list(benchmark.stats.stats.data)
    assert len(data) == ROUNDS
    measured.rounds += data
    measured.cpu += cpu
    measured.rep_p50s.append(statistics.median(data))
