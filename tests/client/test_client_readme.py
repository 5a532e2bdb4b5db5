"""clients/python/README.md's Python examples run as written against a real server.

The data directory, the target and the account id are the only substitutions.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vault_server import VaultServer

README = Path(__file__).resolve().parents[2] / "clients" / "python" / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def run(block: str, server: VaultServer, account: str, tmp_path: Path) -> str:
    code = (
        block.replace('"var/vault"', repr(str(server.data_dir)))
        .replace('"localhost:50051"', repr(server.target))
        .replace("acct-1", account)
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_sync_and_async_examples_run(sqlite_server: VaultServer, tmp_path: Path) -> None:
    sync, asyncio_block = python_blocks()
    account = f"readme-{uuid.uuid4().hex[:8]}"
    assert run(sync, sqlite_server, account, tmp_path).split("\n") == [
        "+372 **** **67",
        "True",
        "NOT_FOUND",
        "",
    ]
    assert run(asyncio_block, sqlite_server, account, tmp_path) == "1 fields destroyed\n"
