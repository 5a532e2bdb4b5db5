"""Seeded vaults for the shred benchmark: N subjects, a few real, the mass bulk-loaded.

Each subject has the footprint a registration leaves: a ``subjects`` row, a
subject key, two fields (``phone`` and ``email``), a data key per field and a
blind-index row per field: eight rows. A small sample (``REAL_SAMPLE``) is
written through ``Vault.put_field`` with the real crypto; every other
subject is bulk-inserted with random bytes of the *same lengths* the real
rows have (wrapped keys, value and view ciphertexts, token digests, index
digests, all measured from the real sample, not assumed). Shredding never
decrypts, so random bytes of the right size are as good as real ones.

Bulk paths, never one call per row:
- SQLite: SQLAlchemy Core ``insert(table)``, compiled once, run as one DBAPI
  ``executemany`` of row tuples per table and chunk of ``CHUNK`` subjects
  (one transaction per chunk), on a separate seeding engine with
  ``synchronous=OFF``, a 1 GiB page cache and no foreign-key checks. Those
  pragmas are per connection and that engine is disposed before anything is
  measured; the vault's own engine keeps ``synchronous=FULL``,
  ``secure_delete`` and foreign keys. The WAL is checkpointed and
  ``os.sync()`` flushes dirty pages before timing starts.
- PostgreSQL: ``COPY ... FROM STDIN`` through psycopg's ``cursor.copy`` with
  ``synchronous_commit=off`` for the seeding session, then
  ``VACUUM ANALYZE`` (what autovacuum would have done on a live server).

Subject ids are time-ordered (``subject_id_at``: UUIDv7-style, as account
systems commonly mint them) and registrations are spread evenly over two
years, so tables keyed by subject fill in order, as years of registrations
would fill them. Key ids, token digests and index digests are random, as
the vault makes them, so those indexes fill in random key order.

The PostgreSQL helpers are a minimal copy of ``tests/pg_databases.py``
(benchmarks cannot import ``tests/``).
"""

from __future__ import annotations

import os
import random
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, create_engine, event, insert, select, text

from vault.bootstrap.app import App, build_app
from vault.config import Settings
from vault.fields import Email, PhoneNumber
from vault.keys.local import create_keyring
from vault.policy import DEFAULT_POLICY_TOML
from vault.storage.models import (
    BlindIndexRow,
    DataKeyRow,
    FieldRow,
    SubjectKeyRow,
    SubjectRow,
)

POSTGRES_ADMIN_URL = os.environ.get(
    "VAULT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REAL_SAMPLE = 20  # subjects written through Vault.put_field, at every size
CHUNK = 10_000  # subjects per bulk transaction (80 000 rows)
FIELDS = (("phone", "phone"), ("email", "email"))  # (field name, field type)
ROWS_PER_SUBJECT = 2 + 3 * len(FIELDS)
SPREAD = timedelta(days=730)  # created_at of the bulk subjects: the last two years

_subjects = cast(Table, SubjectRow.__table__)
_subject_keys = cast(Table, SubjectKeyRow.__table__)
_data_keys = cast(Table, DataKeyRow.__table__)
_fields = cast(Table, FieldRow.__table__)
_index = cast(Table, BlindIndexRow.__table__)
_TABLES = (_subjects, _subject_keys, _data_keys, _fields, _index)


# -- PostgreSQL databases (copied from tests/pg_databases.py, trimmed) ----------------
def postgres_problem() -> str | None:
    """None if PostgreSQL answers, otherwise why not (the skip reason)."""
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as error:  # any failure means: not reachable here
        return f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable ({type(error).__name__})"


def new_postgres_database() -> str:
    name = f"vault_bench_{uuid.uuid4().hex[:12]}"
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


# -- the shape of a real subject -----------------------------------------------------------
@dataclass(frozen=True)
class Footprint:
    """Column values and byte lengths read back from the real sample's rows."""

    kek_id: str
    kek_version: int
    subject_key_lens: tuple[int, ...]
    data_key_lens: tuple[int, ...]
    value_ct_lens: dict[str, tuple[int, ...]]
    view_ct_lens: dict[str, tuple[int, ...]]
    token_digest_len: int
    index_digest_len: int

    def describe(self) -> str:
        def span(lens: tuple[int, ...]) -> str:
            lo, hi = min(lens), max(lens)
            return f"{lo}" if lo == hi else f"{lo}-{hi}"

        cts = ", ".join(
            f"{name} value {span(self.value_ct_lens[name])} / view {span(self.view_ct_lens[name])}"
            for name, _ in FIELDS
        )
        return (
            f"wrapped subject key {span(self.subject_key_lens)} B, data key "
            f"{span(self.data_key_lens)} B; ciphertexts (B): {cts}; token digest "
            f"{self.token_digest_len} B, index digest {self.index_digest_len} B"
        )


def _real_values(n: int) -> tuple[PhoneNumber, Email]:
    return PhoneNumber(f"+372 5{n:07d}"), Email(f"customer.{n:06d}@example.com")


def write_real_sample(app: App, count: int) -> list[str]:
    """Subjects made the way a registration makes them: two PutFields each."""
    subject_ids = []
    for n in range(count):
        subject_id = subject_id_at(datetime.now(UTC), os.urandom(10))
        phone, email = _real_values(n)
        app.vault.put_field("registration", subject_id, "phone", phone)
        app.vault.put_field("registration", subject_id, "email", email)
        subject_ids.append(subject_id)
    return subject_ids


def measure_footprint(app: App, subject_ids: list[str]) -> Footprint:
    with app.store.data_engine.connect() as conn:
        sk = conn.execute(
            select(
                _subject_keys.c.kek_id, _subject_keys.c.kek_version, _subject_keys.c.wrapped
            ).where(_subject_keys.c.subject_id.in_(subject_ids))
        ).all()
        dk = conn.execute(
            select(_data_keys.c.wrapped).where(_data_keys.c.subject_id.in_(subject_ids))
        ).all()
        fr = conn.execute(
            select(
                _fields.c.field, _fields.c.value_ct, _fields.c.view_ct, _fields.c.token_digest
            ).where(_fields.c.subject_id.in_(subject_ids))
        ).all()
        ix = conn.execute(select(_index.c.digest).where(_index.c.subject_id.in_(subject_ids))).all()
    assert len(sk) == len(subject_ids) and len(dk) == len(fr) == len(ix) == 2 * len(subject_ids)
    assert len({(r.kek_id, r.kek_version) for r in sk}) == 1
    return Footprint(
        kek_id=sk[0].kek_id,
        kek_version=sk[0].kek_version,
        subject_key_lens=tuple(len(r.wrapped) for r in sk),
        data_key_lens=tuple(len(r.wrapped) for r in dk),
        value_ct_lens={
            name: tuple(len(r.value_ct) for r in fr if r.field == name) for name, _ in FIELDS
        },
        view_ct_lens={
            name: tuple(len(r.view_ct) for r in fr if r.field == name) for name, _ in FIELDS
        },
        token_digest_len=len(fr[0].token_digest),
        index_digest_len=len(ix[0].digest),
    )


# -- bulk rows --------------------------------------------------------------------------------
# The columns the bulk path fills, per table (the rest take their defaults:
# NULL, or legal_hold's false), in the order the row tuples below hold them.
COLUMNS: dict[str, tuple[str, ...]] = {
    "subjects": ("subject_id", "state", "created_at", "updated_at", "legal_hold"),
    "subject_keys": ("key_id", "subject_id", "kek_id", "kek_version", "wrapped", "created_at"),
    "data_keys": ("dek_id", "subject_id", "field", "subject_key_id", "wrapped", "created_at"),
    "fields": (
        "subject_id", "field", "field_type", "version", "dek_id", "token_digest",
        "value_ct", "view_ct", "created_at", "updated_at",
    ),
    "blind_index": ("subject_id", "field", "field_type", "digest"),
}  # fmt: skip


def _random_column(count: int, lengths: tuple[int, ...]) -> list[bytes]:
    """``count`` random byte strings, the i-th ``lengths[i % len(lengths)]`` long."""
    width = max(lengths)
    block = os.urandom(count * width)
    if len(set(lengths)) == 1:
        return [block[at : at + width] for at in range(0, count * width, width)]
    k = len(lengths)
    return [block[i * width : i * width + lengths[i % k]] for i in range(count)]


def _hex_ids(count: int) -> list[str]:
    """Random 128-bit identifiers in hex, as ``vault.crypto.tokens.new_id`` makes them."""
    return [b.hex() for b in _random_column(count, (16,))]


def subject_id_at(at: datetime, rng_bytes: bytes) -> str:
    """A time-ordered subject id: ``acct-`` + a UUIDv7-style hex (48-bit ms, then random).

    Account systems commonly mint time-ordered ids (UUIDv7, ULID, snowflake),
    so subjects registered later sort later. ``rng_bytes``: 10 random bytes.
    """
    ms = int(at.timestamp() * 1000)
    return f"acct-{ms:012x}7{rng_bytes.hex()[:19]}"


class _Clock:
    """Registration times over ``SPREAD``, ascending: subject i of ``total`` at
    ``start + (i + jitter) * SPREAD / total``. As strings, without a strftime
    per value; also the millisecond epoch each subject id is minted from."""

    def __init__(self, now: datetime, total: int, rng: random.Random) -> None:
        first = (now - SPREAD).replace(hour=0, minute=0, second=0, microsecond=0)
        self._epoch_ms = int(first.timestamp()) * 1000
        days = range(SPREAD.days + 2)
        self._days = [(first + timedelta(days=d)).date().isoformat() for d in days]
        self._step_us = int(SPREAD.total_seconds() * 1_000_000) // max(total, 1)
        self._rng = rng
        self._index = 0

    def stamps(self, count: int, suffix: str) -> tuple[list[int], list[str], list[str]]:
        """(id milliseconds, created_at, updated_at) of the next ``count`` subjects;
        updated_at is up to a minute after created_at (the second PutField)."""
        rand, days, step = self._rng.random, self._days, self._step_us
        millis: list[int] = []
        created: list[str] = []
        updated: list[str] = []
        for i in range(self._index, self._index + count):
            at = int((i + rand()) * step)
            later = at + 1_000_000 + int(rand() * 59_000_000)
            millis.append(self._epoch_ms + at // 1000)
            for us, out in ((at, created), (later, updated)):
                day, sod = divmod(us, 86_400_000_000)
                sec, micros = divmod(sod, 1_000_000)
                out.append(
                    f"{days[day]} {sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}"
                    f".{micros:06d}{suffix}"
                )
        self._index += count
        return millis, created, updated


def bulk_chunk(
    count: int, shape: Footprint, clock: _Clock, *, time_suffix: str = ""
) -> tuple[list[str], dict[str, list[tuple[Any, ...]]]]:
    """``count`` subjects' rows, per table, as tuples in ``COLUMNS`` order.

    Built column by column (one ``os.urandom`` per column), timestamps already
    strings in SQLAlchemy's SQLite format plus ``time_suffix``: the bulk path
    runs no per-value conversion.
    """
    millis, created, updated = clock.stamps(count, time_suffix)
    subject_ids = [
        f"acct-{ms:012x}7{tail[:19]}"  # as subject_id_at: ascending with registration time
        for ms, tail in zip(millis, _hex_ids(count), strict=True)
    ]
    key_ids = _hex_ids(count)
    kek_id, kek_version = shape.kek_id, shape.kek_version
    rows: dict[str, list[tuple[Any, ...]]] = {
        "subjects": [
            (s, "active", c, u, False)
            for s, c, u in zip(subject_ids, created, updated, strict=True)
        ],
        "subject_keys": [
            (k, s, kek_id, kek_version, w, c)
            for k, s, w, c in zip(
                key_ids, subject_ids, _random_column(count, shape.subject_key_lens), created,
                strict=True,
            )
        ],
        "data_keys": [],
        "fields": [],
        "blind_index": [],
    }  # fmt: skip
    for name, field_type in FIELDS:
        dek_ids = _hex_ids(count)
        rows["data_keys"] += [
            (d, s, name, k, w, c)
            for d, s, k, w, c in zip(
                dek_ids, subject_ids, key_ids, _random_column(count, shape.data_key_lens),
                created, strict=True,
            )
        ]  # fmt: skip
        rows["fields"] += [
            (s, name, field_type, 1, d, t, v, w, c, u)
            for s, d, t, v, w, c, u in zip(
                subject_ids, dek_ids,
                _random_column(count, (shape.token_digest_len,)),
                _random_column(count, shape.value_ct_lens[name]),
                _random_column(count, shape.view_ct_lens[name]),
                created, updated, strict=True,
            )
        ]  # fmt: skip
        rows["blind_index"] += [
            (s, name, field_type, x)
            for s, x in zip(
                subject_ids, _random_column(count, (shape.index_digest_len,)), strict=True
            )
        ]
    return subject_ids, rows


def _chunks(total: int) -> Iterator[int]:
    while total > 0:
        yield min(CHUNK, total)
        total -= min(CHUNK, total)


def _sqlite_seeding_engine(url: str) -> Engine:
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.execute("PRAGMA cache_size=-1048576")  # KiB: 1 GiB
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()

    return engine


def insert_statements(engine: Engine) -> dict[str, str]:
    """``insert(table)`` over ``COLUMNS``, compiled once by SQLAlchemy Core for the dialect."""
    statements = {}
    for table in _TABLES:
        names = COLUMNS[table.name]
        statement = insert(table).values({n: bindparam(n) for n in names})
        compiled = statement.compile(dialect=engine.dialect)
        assert tuple(compiled.positiontup or ()) == names, (table.name, compiled.positiontup)
        statements[table.name] = str(compiled)
    return statements


def bulk_load_sqlite(
    url: str, total: int, shape: Footprint, rng: random.Random, keep: Callable[[str], None]
) -> None:
    """One ``executemany`` per table per chunk, one transaction per chunk.

    The statements are SQLAlchemy Core ``insert(table)`` compiled once; the
    rows go to the DBAPI's ``executemany`` as tuples. (Handing SQLAlchemy lists
    of dicts instead costs ~25 us of bind processing per row here, three
    quarters of the seeding time: over ten minutes for 1M subjects.)
    """
    engine = _sqlite_seeding_engine(url)
    clock = _Clock(datetime.now(UTC), total, rng)
    try:
        statements = insert_statements(engine)
        with engine.connect() as conn:
            for count in _chunks(total):
                ids, rows = bulk_chunk(count, shape, clock)
                with conn.begin():
                    for name, statement in statements.items():
                        conn.exec_driver_sql(statement, rows[name])
                for subject_id in ids:
                    keep(subject_id)
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()


def bulk_load_postgres(
    url: str, total: int, shape: Footprint, rng: random.Random, keep: Callable[[str], None]
) -> None:
    """``COPY ... FROM STDIN`` per table per chunk; then ``VACUUM ANALYZE``."""
    engine = create_engine(url)
    clock = _Clock(datetime.now(UTC), total, rng)
    try:
        raw = engine.raw_connection()
        try:
            pg = raw.driver_connection
            assert pg is not None
            with pg.cursor() as cur:
                cur.execute("SET synchronous_commit = off")
            for count in _chunks(total):
                ids, rows = bulk_chunk(count, shape, clock, time_suffix="+00")
                with pg.cursor() as cur:
                    for name, columns in COLUMNS.items():
                        sql = f"COPY {name} ({', '.join(columns)}) FROM STDIN"
                        with cur.copy(sql) as copy:
                            write_row = copy.write_row
                            for row in rows[name]:
                                write_row(row)
                pg.commit()
                for subject_id in ids:
                    keep(subject_id)
        finally:
            raw.close()
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("VACUUM ANALYZE")
    finally:
        engine.dispose()


# -- a seeded vault -----------------------------------------------------------------------------
@dataclass
class SeededVault:
    backend: str
    size: int
    app: App
    real_ids: list[str]
    targets: list[str]  # shuffled; each is shredded once
    footprint: Footprint
    real_seconds: float
    bulk_seconds: float
    rows: int
    _cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def seed_seconds(self) -> float:
        return self.real_seconds + self.bulk_seconds

    def next_target(self) -> str:
        return self.targets.pop()

    def close(self) -> None:
        for action in reversed(self._cleanup):
            action()
        self._cleanup.clear()


def _data_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    create_keyring(root / "keyring.json")
    (root / "policy.toml").write_text(DEFAULT_POLICY_TOML)
    return root


def seed_vault(
    backend: str, size: int, root: Path, *, targets: int, seed: int = 20261122
) -> SeededVault:
    """A vault holding ``size`` subjects; ``targets`` of them (random, real ones
    included) are set aside to be shredded."""
    if size < REAL_SAMPLE + targets:
        raise ValueError(f"{size} subjects cannot hold {targets} targets")
    cleanup: list[Callable[[], None]] = []
    data_dir = _data_dir(root)
    cleanup.append(lambda: shutil.rmtree(root, ignore_errors=True))
    if backend == "sqlite":
        url = f"sqlite:///{(data_dir / 'vault.db').resolve()}"
    else:
        url = new_postgres_database()
        cleanup.append(lambda: drop_postgres_database(url))
    try:
        app = build_app(Settings(data_dir=data_dir, database_url=url))  # migrates
        cleanup.append(app.store.dispose)

        started = time.perf_counter()
        real_ids = write_real_sample(app, REAL_SAMPLE)
        real_seconds = time.perf_counter() - started
        shape = measure_footprint(app, real_ids)

        rng = random.Random(seed)
        bulk = size - REAL_SAMPLE
        picked = set(rng.sample(range(bulk), targets - REAL_SAMPLE))
        chosen: list[str] = []
        position = 0

        def keep(subject_id: str) -> None:
            nonlocal position
            if position in picked:
                chosen.append(subject_id)
            position += 1

        started = time.perf_counter()
        load = bulk_load_sqlite if backend == "sqlite" else bulk_load_postgres
        load(url, bulk, shape, rng, keep)
        os.sync()  # no write-back of the seeding left to land in the timed rounds
        bulk_seconds = time.perf_counter() - started

        with app.store.read() as tx:
            stored = tx.data.execute(text("select count(*) from subjects")).scalar_one()
        assert stored == size, (stored, size)
        shredding = chosen + real_ids
        rng.shuffle(shredding)
        return SeededVault(
            backend, size, app, real_ids, shredding, shape, real_seconds, bulk_seconds,
            size * ROWS_PER_SUBJECT, cleanup,
        )  # fmt: skip
    except BaseException:
        for action in reversed(cleanup):
            action()
        raise


def key_rows_left(app: App, subject_ids: list[str]) -> int:
    """Key, field and index rows still held for these subjects (0 after a shred)."""
    with app.store.read() as tx:
        return sum(
            tx.data.execute(
                select(text("count(*)"))
                .select_from(table)
                .where(table.c.subject_id.in_(subject_ids))
            ).scalar_one()
            for table in (_subject_keys, _data_keys, _fields, _index)
        )
