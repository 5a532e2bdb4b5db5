"""PostgreSQL databases for tests: one fresh database per test or module.

A plain module (not a conftest) so that any test can import it by name.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

POSTGRES_ADMIN_URL = os.environ.get(
    "VAULT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_reachable() -> str | None:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as error:  # any failure means: not reachable here
        return f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable ({type(error).__name__})"


_POSTGRES_PROBLEM = _postgres_reachable()


def new_postgres_database() -> str:
    """Create an empty database for one test and return its URL."""
    if _POSTGRES_PROBLEM:
        if os.environ.get("VAULT_REQUIRE_POSTGRES") == "1":
            pytest.fail(_POSTGRES_PROBLEM)
        pytest.skip(_POSTGRES_PROBLEM)
    name = f"vault_test_{uuid.uuid4().hex[:12]}"
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
