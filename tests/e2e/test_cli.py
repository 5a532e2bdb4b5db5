"""The ``pii-vault`` command line, as an operator and a caller use it.

``init`` makes a data directory once; ``serve`` (started by the fixture, on
the directory ``init`` made, without ``--init``) serves it; ``put``, ``get``,
``find``, ``delete-field`` and ``health`` call it with a caller's certificate.
Every command runs as its own process: ``python -m vault ...``.
"""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from vault_server import clean_env, vault_command

if TYPE_CHECKING:
    from vault_server import VaultServer

RunVault = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.e2e

CALLERS = ("registration", "checkout", "deletion", "privacy-desk", "admin")


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory, run_vault: RunVault) -> tuple[Path, str]:
    """A data directory made by ``pii-vault init``, and what init printed."""
    data_dir = tmp_path_factory.mktemp("cli") / "vault"
    done = run_vault("init", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    return data_dir, done.stdout


@pytest.fixture(scope="module")
def cli_server(
    initialised: tuple[Path, str], start_vault_server: type[VaultServer]
) -> Iterator[VaultServer]:
    data_dir, _ = initialised
    server = start_vault_server(data_dir, init=False)
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.output


def test_init_creates_keys_certificates_and_policy(initialised: tuple[Path, str]) -> None:
    data_dir, printed = initialised
    tls = data_dir / "tls"

    created = {Path(line.removeprefix("created ")) for line in printed.splitlines()}
    assert all(line.startswith("created ") for line in printed.splitlines())
    for path in (
        data_dir / "keyring.json",
        tls / "ca.crt",
        tls / "server.crt",
        data_dir / "policy.toml",
    ):
        assert path in created, path
        assert path.is_file(), path
    for name in ("server.crt", "server.key", "ca.crt"):
        assert (tls / name).is_file(), name
    for caller in CALLERS:
        assert (tls / "clients" / f"{caller}.crt").is_file(), caller
        key = tls / "clients" / f"{caller}.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, caller
    assert stat.S_IMODE((data_dir / "keyring.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tls / "server.key").stat().st_mode) == 0o600
    assert "[[callers.registration.grants]]" in (data_dir / "policy.toml").read_text()


def test_second_init_refuses_and_keeps_the_keys(
    initialised: tuple[Path, str], run_vault: RunVault
) -> None:
    data_dir, _ = initialised
    keyring = (data_dir / "keyring.json").read_bytes()
    ca_cert = (data_dir / "tls" / "ca.crt").read_bytes()

    again = run_vault("init", "--data-dir", str(data_dir))

    assert again.returncode == 1
    assert "already initialised" in again.stderr
    assert "created" not in again.stdout
    assert (data_dir / "keyring.json").read_bytes() == keyring
    assert (data_dir / "tls" / "ca.crt").read_bytes() == ca_cert


def test_client_commands_against_a_running_server(
    cli_server: VaultServer, run_vault: RunVault
) -> None:
    subject = f"cli-{uuid.uuid4()}"

    def client(caller: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        common = ("--data-dir", str(cli_server.data_dir), "--as", caller)
        return run_vault(args[0], *common, "--target", cli_server.target, *args[1:], stdin=stdin)

    put = client(
        "registration", "put", subject, "phone", "--type", "phone", stdin="+372 5123 4567\n"
    )
    assert put.returncode == 0, put.stderr
    stored = json.loads(put.stdout)["view"]
    assert stored["masked"] == "+372 **** **67"
    assert stored["subjectId"] == subject
    assert "5123" not in put.stdout

    get = client("registration", "get", subject, "phone")
    assert get.returncode == 0, get.stderr
    assert json.loads(get.stdout)["view"]["masked"] == "+372 **** **67"

    plaintext = client(
        "registration", "get", subject, "phone", "--view", "plaintext", "--purpose", "dsar"
    )
    assert plaintext.returncode == 1
    assert plaintext.stderr.startswith("PERMISSION_DENIED")
    assert "5123" not in plaintext.stdout + plaintext.stderr

    find = client("registration", "find", "--type", "phone", stdin="0037251234567\n")
    assert find.returncode == 0, find.stderr
    answer = json.loads(find.stdout)
    assert answer["found"] is True
    assert "subjectIds" not in answer  # registration's find answers "exists" only

    deleted = client("deletion", "delete-field", subject, "phone")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["field"] == "phone"

    gone = client("registration", "get", subject, "phone")
    assert gone.returncode == 1
    assert gone.stderr.startswith("NOT_FOUND")

    health = client("admin", "health")
    assert health.returncode == 0, health.stderr
    assert health.stdout.strip() == "SERVING"


@pytest.mark.parametrize(
    ("kind", "stdin", "secret"),
    [
        ("card", '{"pan": "4242 4242 4242 4242", "exp_month": "twelve"}', "4242"),
        ("card", '{"pan": "4242 4242 4242 4242", ', "4242"),
        ("date_of_birth", "1985x-04-12", "1985x"),
    ],
    ids=["card-bad-field", "card-bad-json", "date-not-a-date"],
)
def test_a_value_the_cli_cannot_read_is_refused_without_quoting_it(
    cli_server: VaultServer, run_vault: RunVault, kind: str, stdin: str, secret: str
) -> None:
    caller = "checkout" if kind == "card" else "registration"
    done = run_vault(
        "put", "--data-dir", str(cli_server.data_dir), "--as", caller,
        "--target", cli_server.target, f"cli-{uuid.uuid4()}", kind, "--type", kind,
        stdin=stdin,
    )  # fmt: skip
    assert done.returncode == 2
    assert "INVALID_ARGUMENT" in done.stderr and "Traceback" not in done.stderr
    assert secret not in done.stderr + done.stdout


def test_health_fails_when_nothing_listens(
    initialised: tuple[Path, str], run_vault: RunVault
) -> None:
    data_dir, _ = initialised
    # A port that is bound but not listening refuses every connection.
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{bound.getsockname()[1]}"
        done = run_vault("health", "--data-dir", str(data_dir), "--as", "admin", "--target", target)
    assert done.returncode == 1
    assert done.stderr.startswith("UNAVAILABLE")
    assert "SERVING" not in done.stdout


# -- start-up cost and settings, as a process sees them ------------------------------------
SERVER_SIDE = ("sqlalchemy", "alembic", "pydantic", "phonenumbers", "vault.domain", "vault.storage")
SERVER_SIDE += ("vault.transport", "vault.bootstrap", "vault.config", "vault.fields")


def test_the_caller_commands_load_no_server_layer() -> None:
    """What ``pii-vault get`` imports before it calls: the wire types and the client, no more.

    The check first proves it can see a server module (``serve`` loads them), then
    finds none loaded on the caller path: that is what keeps a caller command fast.
    """
    probe = "import sys, vault.cli; {extra}print('\\n'.join(sorted(sys.modules)))"

    def loaded(extra: str) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-c", probe.format(extra=extra)],
            capture_output=True, text=True, env=clean_env(), check=True, timeout=60,
        )  # fmt: skip
        return set(done.stdout.split())

    def server_side(modules: set[str]) -> set[str]:
        return {m for m in modules if m.startswith(SERVER_SIDE)}

    assert "vault.config" in server_side(loaded("import vault.bootstrap.app; "))
    caller = loaded("vault.cli.build_parser().parse_args(['get', '--as', 'a', 's', 'f']); ")
    assert "vault.cli.client_commands" in caller
    assert server_side(caller) == set()


def test_a_bad_setting_refuses_to_serve_naming_the_flag_and_variable(tmp_path: Path) -> None:
    env = {**clean_env(), "PII_VAULT_THREADS": "many"}
    done = subprocess.run(
        vault_command("serve", "--data-dir", str(tmp_path)),
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "invalid setting: --threads / PII_VAULT_THREADS" in done.stderr
    assert "many" not in done.stderr


def test_an_old_variable_name_still_works_and_says_its_new_name(
    initialised: tuple[Path, str],
) -> None:
    data_dir, _ = initialised
    env = {**clean_env(), "VAULT_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        vault_command("policy", "explain", "--as", "admin", "admin"),
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"policy:  {data_dir / 'policy.toml'}" in done.stdout
    warning = "VAULT_DATA_DIR is deprecated; set PII_VAULT_DATA_DIR instead"
    assert done.stderr.count(warning) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrate_reports_a_schema_that_is_behind_and_brings_it_up_to_date(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        request.getfixturevalue("postgres_url")
        if backend == "postgres"
        else f"sqlite:///{tmp_path / 'fresh.db'}"
    )

    def migrate(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            vault_command("migrate", "--data-dir", str(tmp_path), "--database-url", url, *extra),
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=120,
            check=False,
        )

    behind = migrate("--check")
    assert behind.returncode == 1, behind.stderr
    assert "data store: schema empty" in behind.stdout
    done = migrate()
    assert done.returncode == 0, done.stderr
    assert migrate("--check").returncode == 0
    assert "empty" not in done.stdout


def test_ordinary_mistakes_get_one_line_and_a_non_zero_exit(
    initialised: tuple[Path, str], tmp_path: Path
) -> None:
    data_dir, _ = initialised

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            vault_command(*args), capture_output=True, text=True, env=clean_env(), timeout=60
        )

    missing = run("health", "--as", "registration", "--data-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "pii-vault init --data-dir" in missing.stderr
    unknown = run("health", "--as", "registrashun", "--data-dir", str(data_dir))
    assert unknown.returncode == 2
    assert unknown.stderr.count("\n") == 1
    assert "'registrashun'" in unknown.stderr and "registration" in unknown.stderr
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("pii-vault ")
