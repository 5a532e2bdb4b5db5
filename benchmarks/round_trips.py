"""Database statements per call, counted: the capacity model's round trips.

    python benchmarks/round_trips.py            # SQLite, a fresh data dir on tmpfs
    python benchmarks/round_trips.py --json rt.json
    python benchmarks/round_trips.py \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test   # PostgreSQL

Builds an app in-process (``build_app`` on a fresh data directory with the bench
policy of ``load_support``), seeds ``--subjects`` subjects as ``load.py`` does
(a ``phone`` and an ``email`` as registration, a ``payment`` token as
checkout), then runs each
call ``--calls-each`` times through the domain API (``app.vault``, what the
gRPC servicer calls) and counts the SQL statements the database executes:
every SQLite connection any engine opens gets a trace callback
(``sqlite3.Connection.set_trace_callback``, installed by a SQLAlchemy
``connect`` listener on every ``Engine``), so statements sent through the ORM,
through Core and through the hot read's raw DBAPI cursor are all seen,
``BEGIN`` and ``COMMIT`` included; on SQLite each is a library call.

With ``--database-url`` (a PostgreSQL database to connect to; a scratch
database is created beside it and dropped at the end, as ``load.py`` does) the
vault runs on PostgreSQL and psycopg's round trips are counted instead:
``Cursor.execute`` (the ORM, Core and the hot read's raw cursor alike),
``Cursor.executemany`` (one pipelined batch counted once), the ``BEGIN``
psycopg sends before the first statement of a transaction, and ``COMMIT`` or
``ROLLBACK`` when a transaction is open (psycopg sends nothing otherwise).

Statements are split by where they run: on the caller's thread (before the
answer leaves: what the call waits for) and on other threads (the audit log's
batch flush, amortised per call after ``app.audit.flush()`` at the end of each
call's run). Two key-cache states: **warm** (the subject's keys were read
before: the default with a hot set) and **cold** (both key caches cleared
before each call: uniform access over more subjects than the caches hold).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from load_support import bench_policy_text, create_postgres_database, drop_postgres_database
from sqlalchemy import Engine, event

from vault.bootstrap.app import App, build_app, init_data_dir
from vault.config import Settings
from vault.domain.model import GetRequest
from vault.fields import Email, PaymentToken, PhoneNumber

_counts: Counter[str] = Counter()
_lock = threading.Lock()
_caller = threading.get_ident()
_statements: list[str] = []
_keep = False
_flushing = False


def _trace(statement: str) -> None:
    # The audit flush thread, or our own app.audit.flush() at the end of a run.
    background = _flushing or threading.get_ident() != _caller
    where = "background" if background else "request"
    with _lock:
        _counts[where] += 1
        if _keep and where == "request":
            _statements.append(statement.split("\n", 1)[0][:90])


@event.listens_for(Engine, "connect")
def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.set_trace_callback(_trace)


def _count_psycopg_round_trips() -> None:
    """Wrap psycopg's cursor and connection methods that each cost one round trip."""
    import psycopg
    from psycopg import pq

    idle = pq.TransactionStatus.IDLE
    execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
    commit, rollback = psycopg.Connection.commit, psycopg.Connection.rollback

    def begin(connection: Any) -> None:
        if not connection.autocommit and connection.info.transaction_status == idle:
            _trace("BEGIN")

    def counted_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        begin(self.connection)
        _trace(query if isinstance(query, str) else repr(query))
        return execute(self, query, *args, **kwargs)

    def counted_executemany(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        begin(self.connection)
        _trace("(executemany, pipelined) " + (query if isinstance(query, str) else repr(query)))
        return executemany(self, query, *args, **kwargs)

    def counted_commit(self: Any) -> Any:
        if self.info.transaction_status != idle:
            _trace("COMMIT")
        return commit(self)

    def counted_rollback(self: Any) -> Any:
        if self.info.transaction_status != idle:
            _trace("ROLLBACK")
        return rollback(self)

    psycopg.Cursor.execute = counted_execute  # type: ignore[method-assign]
    psycopg.Cursor.executemany = counted_executemany  # type: ignore[method-assign]
    psycopg.Connection.commit = counted_commit  # type: ignore[method-assign]
    psycopg.Connection.rollback = counted_rollback  # type: ignore[method-assign]


def phone_of(i: int) -> PhoneNumber:
    return PhoneNumber(f"+3725{i:07d}")


def measure(
    app: App, name: str, call: Callable[[int], object], n: int, *, cold: bool
) -> dict[str, Any]:
    global _keep, _flushing
    for i in range(3):  # warm the statement caches of this call
        call(i)
    app.audit.flush()
    _counts.clear()
    _statements.clear()
    for i in range(n):
        if cold:
            app.keys.subject_keys.clear()
            app.keys.data_keys.clear()
        _keep = i == n - 1
        call(i)
        _keep = False
    _flushing = True
    app.audit.flush()
    _flushing = False
    return {
        "call": name,
        "keys": "cold" if cold else "warm",
        "request": _counts["request"] / n,
        "background": _counts["background"] / n,
        "last_call_statements": list(_statements),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--calls-each", type=int, default=100)
    parser.add_argument("--json", default="")
    parser.add_argument(
        "--database-url",
        default="",
        help="PostgreSQL URL to connect to for CREATE DATABASE (default: SQLite)",
    )
    parser.add_argument("--verbose", action="store_true", help="print each call's statements")
    args = parser.parse_args(argv)
    shm = Path("/dev/shm")  # noqa: S108 (a fresh private directory inside it)
    parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="vault-rt-", dir=parent) as tmp:
        data_dir = Path(tmp) / "vault"
        init_data_dir(data_dir)
        policy = Path(tmp) / "policy.toml"
        policy.write_text(bench_policy_text(), encoding="utf-8")
        database_url = ""
        if args.database_url:
            _count_psycopg_round_trips()
            database_url = create_postgres_database(args.database_url)
        try:
            settings = Settings(data_dir=data_dir, policy_path=policy, database_url=database_url)
            with build_app(settings) as app:
                rows = run(app, args.subjects, args.calls_each)
        finally:
            if database_url:
                drop_postgres_database(args.database_url, database_url)
    print("PostgreSQL (psycopg round trips)" if database_url else "SQLite (statements)")
    width = max(len(r["call"]) for r in rows)
    print(f"{'call':<{width}}  keys  on request path  audit flush (amortised)  total")
    for r in rows:
        print(
            f"{r['call']:<{width}}  {r['keys']:<4}  {r['request']:>15.2f}  "
            f"{r['background']:>23.2f}  {r['request'] + r['background']:>5.2f}"
        )
        if args.verbose:
            for statement in r["last_call_statements"]:
                print(f"      {statement}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


def run(app: App, subjects: int, n: int) -> list[dict[str, Any]]:
    vault = app.vault
    tokens = []
    for i in range(subjects):
        vault.put_field("registration", f"s-{i}", "phone", phone_of(i))
        vault.put_field("registration", f"s-{i}", "email", Email(f"s{i}@example.com"))
        view = vault.put_field(
            "checkout", f"s-{i}", "payment", PaymentToken("stripe", f"pm_{i:012d}")
        )
        tokens.append(view.token)
    fresh = iter(range(10**9))

    calls: dict[str, Callable[[int], object]] = {
        "GetField masked": lambda i: vault.get_field(
            "registration", f"s-{i % subjects}", "phone", "masked", ""
        ),
        "GetField plaintext": lambda i: vault.get_field(
            "privacy-desk", f"s-{i % subjects}", "phone", "plaintext", "dsar"
        ),
        "PutField (replace)": lambda i: vault.put_field(
            "registration", f"s-{i % subjects}", "email", Email(f"u{next(fresh)}@example.com")
        ),
        "PutField (new subject)": lambda i: vault.put_field(
            "registration", f"new-{next(fresh)}", "email", Email("new@example.com")
        ),
        "BatchGetFields of 100": lambda i: vault.batch_get(
            "registration",
            [GetRequest(f"s-{(i * 100 + k) % subjects}", "phone") for k in range(100)],
        ),
        "Detokenize": lambda i: vault.detokenize("checkout", tokens[i % subjects], "checkout"),
        "FindSubjects": lambda i: vault.find_subjects("registration", phone_of(i % subjects)),
    }
    rows = []
    for cold in (False, True):
        for name, call in calls.items():
            rows.append(measure(app, name, call, n, cold=cold))
            print(f"  {name} ({'cold' if cold else 'warm'}) counted", file=sys.stderr)
    return rows


if __name__ == "__main__":
    sys.exit(main())
