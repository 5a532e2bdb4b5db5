"""Ordinary mistakes at the command line: one line on stderr, no traceback, a non-zero exit.

Each mistake a person makes with ``pii-vault`` (a wrong caller name, a wrong
data directory, credentials given twice or half, standard input in the wrong
shape, a file that cannot be written, a call the vault refuses) is fed to a
real ``pii-vault`` process against a real server over mTLS. The answer must
be exactly one line naming what is wrong (the flag, the field type, the key)
and never the value given: a card number or birth date typed by mistake must
not land in a terminal's scrollback or a CI log.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from vault_server import clean_env, vault_command

from vault.config import declared_settings

if TYPE_CHECKING:
    from vault_server import VaultServer

pytestmark = pytest.mark.e2e

SECRET_PAN = "4242 4242 4242 4241"  # fails Luhn
SECRET_DATE = "12.04.1985"
SECRET_TOKEN = "pm_1Q2w3E4r5T6y7U8iF3A9"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, start_vault_server: type[VaultServer]
) -> Iterator[VaultServer]:
    server = start_vault_server(tmp_path_factory.mktemp("cli-mistakes") / "vault")
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.output


def cli(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        vault_command(*args),
        input=stdin,
        capture_output=True,
        text=True,
        env={**clean_env(), **(env or {})},
        timeout=60,
        check=False,
    )


def caller_args(server: VaultServer, *more: str) -> list[str]:
    return ["--data-dir", str(server.data_dir), "--target", server.target, *more]


def one_line(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The single stderr line of a refused command (asserted: exit code, one line, no trace)."""
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.endswith("\n") and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def put(
    server: VaultServer, caller: str, kind: str, stdin: str
) -> subprocess.CompletedProcess[str]:
    return cli(
        "put", *caller_args(server, "--as", caller), f"cli-{uuid.uuid4()}", kind, "--type", kind,
        stdin=stdin,
    )  # fmt: skip


# -- who calls ------------------------------------------------------------------------------
def test_an_unknown_caller_name_lists_the_known_ones(server: VaultServer) -> None:
    line = one_line(cli("get", *caller_args(server, "--as", "registrashun"), "s", "phone"))
    assert "'registrashun'" in line
    for known in ("registration", "checkout", "deletion", "privacy-desk", "admin"):
        assert known in line


def test_a_missing_data_directory_says_what_to_run(tmp_path: Path) -> None:
    line = one_line(cli("get", "--data-dir", str(tmp_path / "nowhere"), "--as", "admin", "s", "f"))
    assert "pii-vault init --data-dir" in line


def test_migrate_on_a_missing_data_directory_is_one_line(tmp_path: Path) -> None:
    line = one_line(cli("migrate", "--data-dir", str(tmp_path / "nowhere"), "--check"))
    assert "--data-dir" in line


def test_as_and_cert_exclude_each_other(server: VaultServer) -> None:
    cert = str(server.data_dir / "tls" / "clients" / "checkout.crt")
    line = one_line(cli("get", *caller_args(server, "--as", "checkout", "--cert", cert), "s", "f"))
    assert "--cert" in line and "--as" in line


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--cert", "{tls}/clients/checkout.crt"], "--key"),
        (["--key", "{tls}/clients/checkout.key"], "--cert"),
        (["--cert", "{tls}/nowhere.crt", "--key", "{tls}/clients/checkout.key"], "nowhere.crt"),
        (["--cert", "{tls}/clients/checkout.key", "--key", "{tls}/clients/checkout.key"], "--cert"),
        (["--as", "checkout", "--cacert", "{tls}/ca.crt"], "--cacert"),
        (["--cert", "{tls}/clients/checkout.crt", "--key", "{tls}/clients/admin.key"], "--key"),
        ([], "--as"),
    ],
    ids=[
        "cert-without-key",
        "key-without-cert",
        "no-such-file",
        "not-pem",
        "cacert-with-as",
        "another-callers-key",
        "no-one",
    ],
)
def test_half_or_wrong_credentials_say_which_flag(
    server: VaultServer, flags: list[str], named: str
) -> None:
    tls = str(server.data_dir / "tls")
    given = [flag.format(tls=tls) for flag in flags]
    line = one_line(cli("get", *caller_args(server, *given), "s", "f"))
    assert named in line


def test_a_ca_that_did_not_sign_the_server_is_one_line_naming_the_target(
    server: VaultServer,
) -> None:
    clients = server.data_dir / "tls" / "clients"
    done = cli(
        "get", *caller_args(server, "--cert", str(clients / "checkout.crt")),
        "--key", str(clients / "checkout.key"), "--cacert", str(clients / "admin.crt"), "s", "f",
    )  # fmt: skip
    line = one_line(done, code=1)
    assert line.startswith("UNAVAILABLE: ") and server.target in line and "--cacert" in line


def test_own_certificate_files_work_instead_of_as(server: VaultServer) -> None:
    tls = server.data_dir / "tls"
    subject = f"cli-{uuid.uuid4()}"
    by_flags = cli(
        "put", "--target", server.target, "--cert", str(tls / "clients" / "registration.crt"),
        "--key", str(tls / "clients" / "registration.key"), "--cacert", str(tls / "ca.crt"),
        subject, "phone", "--type", "phone", stdin="+372 5123 4567",
    )  # fmt: skip
    assert by_flags.returncode == 0, by_flags.stderr
    env = {
        "PII_VAULT_TARGET": server.target,
        "PII_VAULT_CLIENT_CERT": str(tls / "clients" / "registration.crt"),
        "PII_VAULT_CLIENT_KEY": str(tls / "clients" / "registration.key"),
        "PII_VAULT_CA_CERT": str(tls / "ca.crt"),
    }
    by_variables = cli("get", subject, "phone", env=env)
    assert by_variables.returncode == 0, by_variables.stderr
    assert "+372 **** **67" in by_variables.stdout


# -- standard input ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "stdin", "named", "secret"),
    [
        ("card", '{"pan": "4242 4242 4242 4241", "exp_month": 12', "not JSON", SECRET_PAN),
        ("card", '{"pan": "4242 4242 4242 4241", "exp_month": "12", "exp_year": 2030}', "exp_month",
         SECRET_PAN),
        ("card", '{"number": "4242 4242 4242 4241", "exp_month": 12, "exp_year": 2030}', "'number'",
         SECRET_PAN),
        ("card", '["4242 4242 4242 4241"]', "JSON object", SECRET_PAN),
        ("address", '{"country": "EE", "street": "Pikk 12"}', "'country'", "Pikk"),
        ("address", '{"region_code": "EE", "address_lines": "Pikk 12"}', "address_lines", "Pikk"),
        ("date_of_birth", SECRET_DATE, "YYYY-MM-DD", SECRET_DATE),
        ("payment_token", SECRET_TOKEN, "PROVIDER:TOKEN", SECRET_TOKEN),
        ("phone", "   ", "empty", "never-typed"),
    ],
    ids=["card-bad-json", "card-month-text", "card-unknown-key", "card-not-object",
         "address-natural-keys", "address-lines-not-list", "date-wrong-format", "token-no-colon",
         "empty"],
)  # fmt: skip
def test_bad_standard_input_names_the_type_and_what_it_expects_never_the_value(
    server: VaultServer, kind: str, stdin: str, named: str, secret: str
) -> None:
    caller = "checkout" if kind in ("card", "address", "payment_token") else "registration"
    done = put(server, caller, kind, stdin)
    line = one_line(done)
    assert line.startswith("INVALID_ARGUMENT: ")
    assert f" {kind} " in line and named in line and "e.g." in line  # what it expects, an example
    assert secret not in line + done.stdout
    assert secret.replace(" ", "") not in line + done.stdout


def test_a_value_the_vault_refuses_is_one_line_with_field_and_reason_without_the_value(
    server: VaultServer,
) -> None:
    done = put(
        server, "checkout", "card", f'{{"pan": "{SECRET_PAN}", "exp_month": 12, "exp_year": 2030}}'
    )
    line = one_line(done, code=1)
    assert line.startswith("INVALID_ARGUMENT: value.card.pan") and line.endswith(
        "[INVALID_ARGUMENT]\n"
    )
    assert SECRET_PAN not in line and SECRET_PAN.replace(" ", "") not in line


@pytest.mark.parametrize("spelling", ["snake_case", "camelCase"])
def test_an_address_takes_snake_case_or_camel_case_keys(server: VaultServer, spelling: str) -> None:
    keys = (
        ("region_code", "address_lines", "postal_code")
        if spelling == "snake_case"
        else ("regionCode", "addressLines", "postalCode")
    )
    stdin = (
        f'{{"{keys[0]}": "EE", "{keys[1]}": ["Narva mnt 5"], "locality": "Tallinn",'
        f' "{keys[2]}": "10117"}}'
    )
    done = put(server, "checkout", "address", stdin)
    assert done.returncode == 0, done.stderr
    assert "*** Tallinn, EE" in done.stdout


# -- the vault's answer and files ------------------------------------------------------------
def test_a_refused_call_prints_its_status_message_and_reason(server: VaultServer) -> None:
    done = cli("get", *caller_args(server, "--as", "registration"), f"cli-{uuid.uuid4()}", "phone")
    assert one_line(done, code=1) == "NOT_FOUND: field not found [NOT_FOUND]\n"
    subject = f"cli-{uuid.uuid4()}"
    stored = cli(
        "put", *caller_args(server, "--as", "registration"), subject, "phone", "--type", "phone",
        stdin="+372 5123 4567",
    )  # fmt: skip
    assert stored.returncode == 0, stored.stderr
    plain = cli(
        "get", *caller_args(server, "--as", "registration"), subject, "phone", "--view", "plaintext"
    )
    assert one_line(plain, code=1).endswith("[PURPOSE_REQUIRED]\n")


def test_a_file_that_cannot_be_written_is_one_line(server: VaultServer, tmp_path: Path) -> None:
    subject = f"cli-{uuid.uuid4()}"
    out = tmp_path / "no-such-dir" / "receipt.json"
    done = cli(
        "shred", *caller_args(server, "--as", "deletion"), subject, "--reason", "test",
        "--request-id", str(uuid.uuid4()), "--receipt-out", str(out),
    )  # fmt: skip
    assert str(out) in one_line(done)


@pytest.mark.parametrize(
    "args",
    [["put", "--as", "registration", "s", "phone"], ["get", "--as", "admin", "s"], ["frobnicate"]],
    ids=["no-type", "no-field", "no-such-command"],
)
def test_a_command_line_mistake_is_one_line(args: list[str]) -> None:
    line = one_line(cli(*args))
    assert "--help" in line


# -- help ---------------------------------------------------------------------------------------
def test_put_help_documents_every_type_with_an_example() -> None:
    done = cli("put", "--help")
    assert done.returncode == 0
    for kind in ("phone", "email", "address", "card", "payment_token", "name", "date_of_birth"):
        assert f"  {kind}: " in done.stdout, kind
        assert f"--type {kind}\n" in done.stdout, kind
    assert "region_code" in done.stdout and "regionCode" in done.stdout


CALLER_VARIABLES = (
    "PII_VAULT_DATA_DIR", "PII_VAULT_TARGET", "PII_VAULT_CLIENT_CERT", "PII_VAULT_CLIENT_KEY",
    "PII_VAULT_CA_CERT", "PII_VAULT_LOG_LEVEL", "PII_VAULT_LOG_FORMAT",
)  # fmt: skip


def test_help_documents_every_variable_the_cli_reads() -> None:
    for args in (["--help"], ["get", "--help"], ["put", "--help"]):
        done = cli(*args)
        assert done.returncode == 0
        for variable in CALLER_VARIABLES:
            assert variable in done.stdout, (args, variable)
        assert "exit codes" in done.stdout
    served = cli("serve", "--help").stdout
    for declared in declared_settings():
        if declared.variable:
            assert declared.variable in served, declared.variable


def test_the_variables_the_cli_reads_are_declared_settings() -> None:
    """The caller-side variables are rows of the README's generated settings table too."""
    declared = {d.variable for d in declared_settings()}
    assert set(CALLER_VARIABLES) <= declared
    assert "VAULT_CACERT" not in declared and "PII_VAULT_CACERT" not in declared  # HashiCorp's
