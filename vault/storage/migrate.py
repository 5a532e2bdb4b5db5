"""Apply Alembic migrations to the data store and, when split, the key store."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from vault.storage.database import Store

_MIGRATIONS = Path(__file__).with_name("migrations")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def upgrade_engine(engine: Engine) -> None:
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def upgrade(store: Store) -> None:
    """Bring every database of the store to the newest schema (idempotent)."""
    upgrade_engine(store.data_engine)
    if store.split:
        upgrade_engine(store.key_engine)
