"""The contract guard CI runs (scripts/check_contract.sh) catches a breaking change.

A throwaway git repository holds a copy of the contract (buf.yaml, proto/,
third_party/); a second commit changes vault.proto, and the script -- the same
one ``.ci/run`` runs, comparing against ``HEAD~1`` -- must refuse a removed
field and a renumbered one, accept an added field, and skip (saying why) when
there is no previous commit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "check_contract.sh"
CONTRACT = ("buf.yaml", "proto", "third_party")
PROTO = Path("proto") / "vault" / "v1" / "vault.proto"


@pytest.fixture(autouse=True)
def _node() -> None:
    if shutil.which("npm") is None:
        reason = "buf comes from clients/node and needs Node.js"
        if os.environ.get("VAULT_REQUIRE_NODE") == "1":
            pytest.fail(f"{reason}, and VAULT_REQUIRE_NODE=1 says it must run")
        pytest.skip(reason)
    from scripts.gen_proto import install_node_tools

    install_node_tools()


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def _contract_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "contract"
    repo.mkdir()
    for name in CONTRACT:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name)
        else:
            shutil.copy(source, repo / name)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "the contract")
    return repo


def _change(repo: Path, old: str, new: str) -> None:
    proto = repo / PROTO
    text = proto.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    proto.write_text(text.replace(old, new), encoding="utf-8")
    _git(repo, "commit", "-q", "-am", "a change")


def _check(repo: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BUF_BREAKING_AGAINST"}
    return subprocess.run(
        [str(SCRIPT), str(repo)], capture_output=True, text=True, timeout=300, env=env, check=False
    )


def test_a_removed_field_fails_the_guard(tmp_path: Path) -> None:
    repo = _contract_repo(tmp_path)
    _change(repo, "  string masked = 4;\n", "")
    result = _check(repo)
    assert result.returncode != 0, result.stdout
    assert re.search(r'field "4" with name "masked"', result.stdout + result.stderr)


def test_a_renumbered_field_fails_the_guard(tmp_path: Path) -> None:
    repo = _contract_repo(tmp_path)
    _change(repo, "  string idempotency_key = 4;", "  string idempotency_key = 5;")
    assert _check(repo).returncode != 0


def test_an_added_field_passes(tmp_path: Path) -> None:
    repo = _contract_repo(tmp_path)
    _change(
        repo,
        "message DeleteFieldRequest {\n",
        "message DeleteFieldRequest {\n  // Why, for the audit log.\n  string reason = 3;\n",
    )
    result = _check(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no breaking change against .git#ref=HEAD~1" in result.stdout


def test_without_a_previous_commit_it_says_so_and_lints_only(tmp_path: Path) -> None:
    result = _check(_contract_repo(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "buf lint: ok" in result.stdout
    assert "skipped: HEAD has no parent commit" in result.stdout
