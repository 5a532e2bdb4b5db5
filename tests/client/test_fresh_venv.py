"""pii-vault-client installs alone and runs the three example flows (issue 12, item 1).

A fresh venv gets ``clients/python`` (with its ``receipts`` extra) and nothing else;
the server package and its heavy dependencies must not be importable there. Then
the example callers run in it, as scripts, against a real server over mTLS:
registration, checkout, and the deletion worker, whose receipt
``pii-vault receipts verify`` accepts.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from vault_server import VaultServer

RunVault = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "clients" / "examples"
SERVER_ONLY = ("vault", "clients", "sqlalchemy", "alembic", "psycopg", "phonenumbers", "pycountry")
SERVER_ONLY += ("pydantic", "grpc_health", "grpc_reflection", "hvac", "pkcs11")
# The client, its four dependencies and theirs, cryptography for receipts; pip itself.
ALLOWED = {
    "pii-vault-client",
    "grpcio",
    "grpcio-status",
    "protobuf",
    "googleapis-common-protos",
    "typing-extensions",
    "cryptography",
    "cffi",
    "pycparser",
    "pip",
    "setuptools",
}


def isolated_env() -> dict[str, str]:
    """No PYTHONPATH, no active venv, no vault settings: only what the fresh venv holds."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    return {
        k: v
        for k, v in os.environ.items()
        if k not in drop and not k.startswith(("VAULT_", "PII_VAULT_"))
    }


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("client-only")
    # Build from a copy, so that the build leaves nothing in the work tree.
    source = root / "pii-vault-client"
    shutil.copytree(
        REPO / "clients" / "python",
        source,
        ignore=shutil.ignore_patterns("*.egg-info", "build", "dist", "__pycache__"),
    )
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pip = (str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check")
    installed = subprocess.run(
        [*pip, f"{source}[receipts]"],
        capture_output=True,
        text=True,
        timeout=600,
        env=isolated_env(),
        cwd=root,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return python


def in_venv(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=isolated_env(),
        cwd=cwd,
        check=False,
    )


def test_the_venv_holds_the_client_and_not_the_server(venv_python: Path, tmp_path: Path) -> None:
    probe = (
        "import importlib.util, json, sys\n"
        f"names = {SERVER_ONLY!r}\n"
        "print(json.dumps({n: importlib.util.find_spec(n) is not None for n in names}))\n"
        "import pii_vault_client, pii_vault_client.aio, pii_vault_client.receipts\n"
    )
    found = in_venv(venv_python, "-c", probe, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    importable = json.loads(found.stdout)
    assert not any(importable.values()), importable

    listed = in_venv(venv_python, "-m", "pip", "list", "--format=json", cwd=tmp_path)
    names = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert "pii-vault-client" in names
    assert names <= ALLOWED, names - ALLOWED


def test_the_three_flows_run_with_the_client_alone(
    venv_python: Path, sqlite_server: VaultServer, run_vault: RunVault, tmp_path: Path
) -> None:
    connection = ("--data-dir", str(sqlite_server.data_dir), "--target", sqlite_server.target)
    account = f"fresh-{random.randrange(10**9)}"
    phone = f"+372 5{random.randrange(100, 1000)} {random.randrange(1000, 10000)}"

    def example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return in_venv(venv_python, str(EXAMPLES / name), *connection, *args, cwd=tmp_path)

    registered = example("registration.py", "--account", account, "--phone", phone)
    assert registered.returncode == 0, registered.stderr
    answer = json.loads(registered.stdout)
    assert answer["account"] == account and not answer["already_registered"]
    assert answer["masked"]["phone"].endswith(phone[-2:])
    again = example("registration.py", "--phone", phone)
    assert json.loads(again.stdout)["already_registered"] is True

    paid = example("checkout.py", "--account", account)
    assert paid.returncode == 0, paid.stderr
    assert json.loads(paid.stdout)["charged"] is True

    receipts = tmp_path / "receipts"
    erased = example("deletion_worker.py", "--receipts-dir", str(receipts), account)
    assert erased.returncode == 0, erased.stdout + erased.stderr
    assert erased.stdout.rstrip().endswith("1 filed, 0 pending under legal hold, 0 failed")
    receipt = receipts / f"{account}.json"
    checked = run_vault(
        "receipts", "verify", "--data-dir", str(sqlite_server.data_dir), str(receipt)
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(receipt.read_text())["receipt"]["fields_destroyed"] == 4
