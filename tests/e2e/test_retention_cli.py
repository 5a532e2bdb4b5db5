"""Retention from the outside: ``pii-vault retention run`` and the server's own sweeps.

Data is written through the real server over mTLS, then made old by editing
the SQLite rows (``subjects.updated_at``, ``fields.expires_on``) with the
``sqlite3`` module, exactly as if the time had passed: no fake clock reaches
the product. Every command runs as its own process.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import VaultClient

if TYPE_CHECKING:
    from vault_server import VaultServer

RunVault = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.e2e

LONG_AGO = "2020-01-01 00:00:00.000000"
BOTH_RULES = "[card]\nafter_expiry_days = 90\n\n[subject]\nuntouched_days = 1095\n"
PHONE = pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567"))
CARD = pb.FieldValue(
    card=pb.PaymentCard(pan="4111111111111111", exp_month=12, exp_year=2030, holder_name="Jane Doe")
)
SERVE = (sys.executable, "-m", "vault", "serve")
_LISTENING = re.compile(r"^listening on (?P<host>\S+):(?P<port>\d+)$", re.MULTILINE)


# -- helpers --------------------------------------------------------------------------------
def init(run_vault: RunVault, data_dir: Path) -> str:
    done = run_vault("init", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    return done.stdout


def put(client: VaultClient, field: str, subject_id: str, value: pb.FieldValue) -> None:
    client.vault.PutField(
        pb.PutFieldRequest(subject_id=subject_id, field=field, value=value), timeout=10
    )


def backdate(
    data_dir: Path, *, subjects: tuple[str, ...] = (), cards: tuple[str, ...] = ()
) -> None:
    """Make subjects untouched since 2020 and cards expired in January 2020."""
    with sqlite3.connect(data_dir / "vault.db", timeout=30) as db:
        for subject_id in subjects:
            updated = db.execute(
                "UPDATE subjects SET updated_at = ? WHERE subject_id = ?", (LONG_AGO, subject_id)
            )
            assert updated.rowcount == 1, subject_id
        for subject_id in cards:
            updated = db.execute(
                "UPDATE fields SET expires_on = '2020-01-31' WHERE subject_id = ? "
                "AND field = 'card.primary'",
                (subject_id,),
            )
            assert updated.rowcount == 1, subject_id
    db.close()


def state_of(data_dir: Path, subject_id: str) -> str | None:
    db = sqlite3.connect(data_dir / "vault.db", timeout=30)
    try:
        row = db.execute(
            "SELECT state FROM subjects WHERE subject_id = ?", (subject_id,)
        ).fetchone()
    finally:
        db.close()
    return None if row is None else str(row[0])


def field_names(data_dir: Path, subject_id: str) -> set[str]:
    db = sqlite3.connect(data_dir / "vault.db", timeout=30)
    try:
        rows = db.execute("SELECT field FROM fields WHERE subject_id = ?", (subject_id,))
        return {row[0] for row in rows}
    finally:
        db.close()


def retention(run_vault: RunVault, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_vault("retention", "run", "--data-dir", str(data_dir), *args)


def summary(stdout: str) -> dict[str, int]:
    """``  cards deleted   1`` lines of the summary, as a mapping."""
    found = re.findall(r"^  (.+?)\s{2,}(\d+)$", stdout, re.MULTILINE)
    return {name: int(count) for name, count in found}


@pytest.fixture(scope="module")
def swept(
    tmp_path_factory: pytest.TempPathFactory,
    run_vault: RunVault,
    start_vault_server: type[VaultServer],
) -> Path:
    """A data directory made by ``init``, with old, new, expired and held data in it."""
    data_dir = tmp_path_factory.mktemp("retention") / "vault"
    printed = init(run_vault, data_dir)
    assert f"created {data_dir / 'retention.toml'}" in printed.splitlines()
    server = start_vault_server(data_dir, init=False)
    try:
        for subject_id in ("s-old", "s-new", "s-held", "s-card"):
            put(server.client("registration"), "phone", subject_id, PHONE)
        put(server.client("checkout"), "card.primary", "s-card", CARD)
        put(server.client("checkout"), "card.primary", "s-held", CARD)
        server.client("privacy-desk").vault.SetLegalHold(
            pb.SetLegalHoldRequest(subject_id="s-held", hold=True, reason="litigation LX-2291"),
            timeout=10,
        )
    finally:
        assert server.stop() == 0, server.output
    backdate(data_dir, subjects=("s-old", "s-held"), cards=("s-card", "s-held"))
    return data_dir


# -- the command ----------------------------------------------------------------------------
def test_init_writes_a_default_file_with_the_card_rule_on(swept: Path, run_vault: RunVault) -> None:
    text = (swept / "retention.toml").read_text()
    assert "[card]\nafter_expiry_days = 90\n" in text
    assert "# [subject]\n# untouched_days = 1095\n" in text

    dry = retention(run_vault, swept, "--dry-run")

    assert dry.returncode == 0, dry.stderr
    assert "card fields deleted 90 days after expiry; idle subjects kept" in dry.stderr
    assert summary(dry.stdout) == {
        "cards to delete": 1,
        "subjects to shred": 0,
        "held (would be skipped)": 1,
        "errors": 0,
    }


@pytest.mark.slow
def test_retention_run_shows_progress_and_a_summary_dry_run_first(
    swept: Path, run_vault: RunVault, start_vault_server: type[VaultServer]
) -> None:
    rules = swept / "rules-both.toml"
    rules.write_text(BOTH_RULES)

    dry = retention(run_vault, swept, "--retention", str(rules), "--dry-run")

    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("retention dry run (nothing was changed):")
    # s-card's card; s-old; s-held's card and s-held itself (one held subject).
    assert summary(dry.stdout) == {
        "cards to delete": 1,
        "subjects to shred": 1,
        "held (would be skipped)": 1,
        "errors": 0,
    }
    bars = [line for line in dry.stderr.splitlines() if line.startswith("[")]
    assert bars[0] == "[" + "." * 30 + "] 0/4 items due"
    assert bars[-1] == "[" + "#" * 30 + "] 4/4 items due"
    assert "\r" not in dry.stderr  # not a terminal: one line per step
    assert state_of(swept, "s-old") == "active"
    assert field_names(swept, "s-card") == {"phone", "card.primary"}

    done = retention(run_vault, swept, "--retention", str(rules))

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("retention run finished:")
    assert summary(done.stdout) == {
        "cards deleted": 1,
        "subjects shredded": 1,
        "held (skipped)": 1,
        "already done": 0,
        "errors": 0,
    }
    assert [line for line in done.stderr.splitlines() if line.startswith("[")][-1].endswith(
        "4/4 items due"
    )
    assert "5123" not in done.stdout + done.stderr
    assert state_of(swept, "s-old") == "shredded"
    assert field_names(swept, "s-old") == set()
    assert field_names(swept, "s-card") == {"phone"}
    assert state_of(swept, "s-held") == "active"
    assert field_names(swept, "s-held") == {"phone", "card.primary"}

    again = retention(run_vault, swept, "--retention", str(rules))
    assert again.returncode == 0, again.stderr
    assert summary(again.stdout)["cards deleted"] == 0
    assert summary(again.stdout)["subjects shredded"] == 0

    server = start_vault_server(swept, init=False)
    try:
        vault = server.client("registration").vault
        with pytest.raises(grpc.RpcError) as shredded:
            vault.GetField(pb.GetFieldRequest(subject_id="s-old", field="phone"), timeout=10)
        assert shredded.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        checkout = server.client("checkout").vault
        with pytest.raises(grpc.RpcError) as deleted:
            checkout.GetField(
                pb.GetFieldRequest(subject_id="s-card", field="card.primary"), timeout=10
            )
        assert deleted.value.code() == grpc.StatusCode.NOT_FOUND
        kept = vault.GetField(pb.GetFieldRequest(subject_id="s-new", field="phone"), timeout=10)
        assert kept.view.masked == "+372 **** **67"
    finally:
        assert server.stop() == 0, server.output


@pytest.mark.slow
def test_an_invalid_rules_file_is_refused_naming_the_key(
    tmp_path: Path, run_vault: RunVault
) -> None:
    data_dir = tmp_path / "vault"
    init(run_vault, data_dir)
    (data_dir / "retention.toml").write_text('[card]\nafter_expiry_days = "ninety"\n')

    refused = retention(run_vault, data_dir)
    assert refused.returncode == 2
    assert "card.after_expiry_days: expected a whole number of days" in refused.stderr
    assert refused.stdout == ""

    serve = run_vault("serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0")
    assert serve.returncode == 2
    assert "refusing to start" in serve.stderr
    assert "card.after_expiry_days" in serve.stderr
    assert "listening on" not in serve.stdout


def test_no_rules_file_means_nothing_to_do(tmp_path: Path, run_vault: RunVault) -> None:
    data_dir = tmp_path / "vault"
    init(run_vault, data_dir)
    (data_dir / "retention.toml").unlink()

    done = retention(run_vault, data_dir)

    assert done.returncode == 0, done.stderr
    assert "no retention rules" in done.stdout


# -- the server's own sweeps -----------------------------------------------------------------
@contextmanager
def server_with_env(data_dir: Path, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``pii-vault serve`` with extra ``VAULT_*`` settings; SIGTERM and exit 0 on the way out."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    environment.update(env)
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*SERVE, "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
        )
    try:
        deadline = time.monotonic() + 30
        while not (found := _LISTENING.search(log_path.read_text(errors="replace"))):
            assert process.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "the server did not listen within 30s"
            time.sleep(0.05)
        yield process, int(found.group("port"))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log_path.read_text(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_the_server_sweeps_on_its_own_every_interval(tmp_path: Path, run_vault: RunVault) -> None:
    data_dir = tmp_path / "vault"
    init(run_vault, data_dir)
    (data_dir / "retention.toml").write_text("[subject]\nuntouched_days = 30\n")

    with server_with_env(data_dir, VAULT_RETENTION_INTERVAL="1") as (_process, port):
        with VaultClient.for_caller(data_dir, "registration", f"localhost:{port}") as client:
            put(client, "phone", "s-idle", PHONE)
            put(client, "phone", "s-fresh", PHONE)
            assert state_of(data_dir, "s-idle") == "active"
            backdate(data_dir, subjects=("s-idle",))  # no RPC asks for anything after this

            deadline = time.monotonic() + 20
            while state_of(data_dir, "s-idle") != "shredded":
                assert time.monotonic() < deadline, (data_dir / "server.log").read_text()
                time.sleep(0.2)

            with pytest.raises(grpc.RpcError) as shredded:
                client.vault.GetField(
                    pb.GetFieldRequest(subject_id="s-idle", field="phone"), timeout=10
                )
            assert shredded.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert state_of(data_dir, "s-fresh") == "active"

    log = (data_dir / "server.log").read_text()
    assert "maintenance every 1s" in log
    assert "retention: 0 cards deleted, 1 subjects shredded" in log
    assert "5123" not in log
