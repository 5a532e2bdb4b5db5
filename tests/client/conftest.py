"""The Python client distribution (clients/python) against the real server over mTLS."""

from vault_server import (  # noqa: F401 -- fixtures are found by name
    new_subject_id,
    run_vault,
    sqlite_server,
    start_vault_server,
    subject_id,
    vault_server,
)
