"""The TypeScript client (clients/node) runs its flows against the real server over mTLS.

``npm ci`` installs the exact versions of ``clients/node/package-lock.json``
once (again only when the lockfile changes; ``scripts/gen_proto.py``'s
``install_node_tools``, which the codegen test shares), then ``npm test`` compiles the
client (tsc, strict) and runs its ``node:test`` suite -- registration, checkout
(a card and a payment token, the token detokenized) and deletion (shred and
receipt) -- against a ``pii-vault serve`` started here, with the address and
the dev PKI's ``tls/`` directory in environment variables.

Without Node.js the test skips, saying so; CI sets ``VAULT_REQUIRE_NODE=1``
(``.ci/run``), which turns that skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from scripts.gen_proto import install_node_tools

if TYPE_CHECKING:
    from vault_server import VaultServer

pytestmark = pytest.mark.e2e

NODE_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "node"
NPM_TEST_TIMEOUT = 300


def _npm() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        reason = "Node.js (node and npm) is not installed, so the TypeScript client cannot run"
        if os.environ.get("VAULT_REQUIRE_NODE") == "1":
            pytest.fail(f"{reason}, and VAULT_REQUIRE_NODE=1 says it must")
        pytest.skip(reason)
    return npm


def _run(command: list[str], timeout: int, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(
        command,
        cwd=NODE_CLIENT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )


def test_typescript_client_flows_against_the_real_server(sqlite_server: VaultServer) -> None:
    npm = _npm()
    install_node_tools()
    env = {
        **os.environ,
        "PII_VAULT_NODE_TEST_ADDRESS": sqlite_server.target,
        "PII_VAULT_NODE_TEST_TLS_DIR": str(sqlite_server.data_dir / "tls"),
    }
    _run([npm, "test"], NPM_TEST_TIMEOUT, env=env)
