"""Attacks on the vault as a probing caller, an operator or a database holder would run them.

Each module here performs one attack against the real server over mTLS (or,
for at-rest attacks, on the real files) and asserts that it fails: an answer
that differs between a right and a wrong guess must be granted, budgeted and
audited like a read. The fixtures are the end-to-end ones (``vault_server``).
"""

from vault_server import (  # noqa: F401 -- fixtures are found by name
    new_subject_id,
    run_vault,
    sqlite_server,
    start_vault_server,
    subject_id,
    vault_server,
)
