"""End-to-end fixtures: the real server process, from ``tests/vault_server.py``."""

from vault_server import (  # noqa: F401 -- fixtures are found by name
    new_subject_id,
    run_vault,
    sqlite_server,
    start_vault_server,
    subject_id,
    vault_server,
)
