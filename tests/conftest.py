"""Shared fixtures: PostgreSQL databases for the contract suites, hypothesis profile."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from pg_databases import drop_postgres_database, new_postgres_database

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    url = new_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    """Each back end in turn: the contract suites run once per store."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/vault.db"
        return
    url = new_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)
