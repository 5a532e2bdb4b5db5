"""Who the caller commands call as, where, and how their failures read: one line each.

A caller is named by ``--as NAME`` (the dev PKI ``pii-vault init`` made in the
data directory: ``DIR/tls/clients/NAME.{crt,key}`` and ``DIR/tls/ca.crt``) or
by its own files, ``--cert FILE --key FILE [--cacert FILE]`` (or
``PII_VAULT_CLIENT_CERT``, ``PII_VAULT_CLIENT_KEY``, ``PII_VAULT_CA_CERT``;
the CA defaults to ``DIR/tls/ca.crt``). ``--as`` and ``--cert`` exclude each
other; a flag wins over a variable. ``VAULT_CACERT`` is HashiCorp Vault's and
never read.

Client-side only, like ``client_commands``: no server layer is imported.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import grpc

from vault.client import DEFAULT_TARGET, VaultError, error_reason
from vault.environment import DEFAULT_DATA_DIR, read_variable

CERT_VARIABLE, KEY_VARIABLE, CA_VARIABLE = "CLIENT_CERT", "CLIENT_KEY", "CA_CERT"


class CallerMistakeError(Exception):
    """A mistake on the caller's side (settings, credentials); the message is one line."""


@dataclass(frozen=True)
class PemFiles:
    """The caller's certificate, its key and the CA that signed the server's, as PEM."""

    ca: bytes
    cert: bytes
    key: bytes


def data_dir_of(args: argparse.Namespace) -> Path:
    """``--data-dir``, else ``PII_VAULT_DATA_DIR`` (or the deprecated name), else the default."""
    return Path(args.data_dir or read_variable("DATA_DIR") or DEFAULT_DATA_DIR)


def target_of(args: argparse.Namespace) -> str:
    """``--target``, else ``PII_VAULT_TARGET`` (or the deprecated name), else the default."""
    return str(args.target or read_variable("TARGET") or DEFAULT_TARGET)


def missing_credentials(data_dir: Path, caller: str) -> str:
    """Why ``caller`` cannot call from ``data_dir``'s dev PKI, in one line; '' when it can."""
    tls = data_dir / "tls"
    if not (tls / "ca.crt").is_file():
        return (
            f"no certificates in {tls}: point --data-dir (PII_VAULT_DATA_DIR) at the server's"
            f" data directory, or create one with: pii-vault init --data-dir {data_dir}"
        )
    clients = tls / "clients"
    if not ((clients / f"{caller}.crt").is_file() and (clients / f"{caller}.key").is_file()):
        known = sorted(p.stem for p in clients.glob("*.crt")) if clients.is_dir() else []
        return (
            f"no certificate for caller {caller!r} in {clients}; known: {', '.join(known)}"
            " (or give your own with --cert FILE --key FILE)"
        )
    return ""


def pem_files(args: argparse.Namespace) -> PemFiles:
    """The caller's PEM files, from ``--as`` or ``--cert``/``--key``/``--cacert``."""
    caller = getattr(args, "caller", None)
    cert = getattr(args, "cert", None)
    key = getattr(args, "key", None)
    ca = getattr(args, "cacert", None)
    data_dir = data_dir_of(args)
    if caller:
        if key or ca:
            given = "--key" if key else "--cacert"
            raise CallerMistakeError(f"{given} goes with --cert, not with --as")
        problem = missing_credentials(data_dir, caller)
        if problem:
            raise CallerMistakeError(problem)
        tls = data_dir / "tls"
        return PemFiles(
            ca=_read(tls / "ca.crt", "the CA certificate", _CERTIFICATE),
            cert=_read(tls / "clients" / f"{caller}.crt", "--as certificate", _CERTIFICATE),
            key=_read(tls / "clients" / f"{caller}.key", "--as key", _KEY),
        )
    cert = cert or read_variable(CERT_VARIABLE)
    key = key or read_variable(KEY_VARIABLE)
    if not cert and not key:
        raise CallerMistakeError(
            "say who calls: --as NAME (a certificate from DIR/tls/clients) or --cert FILE"
            " --key FILE [--cacert FILE] (PII_VAULT_CLIENT_CERT, PII_VAULT_CLIENT_KEY)"
        )
    if not cert or not key:
        have, need = ("--cert", "--key") if cert else ("--key", "--cert")
        raise CallerMistakeError(
            f"{have} needs {need} too (or PII_VAULT_CLIENT_{need[2:].upper()})"
        )
    ca_path = Path(ca or read_variable(CA_VARIABLE) or data_dir / "tls" / "ca.crt")
    files = PemFiles(
        ca=_read(ca_path, "--cacert", _CERTIFICATE),
        cert=_read(Path(cert), "--cert", _CERTIFICATE),
        key=_read(Path(key), "--key", _KEY),
    )
    _check_pair(files.cert, files.key)
    return files


def _check_pair(cert: bytes, key: bytes) -> None:
    """Refuse a ``--key`` that is not ``--cert``'s: TLS would fail with nothing but UNAVAILABLE."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        public = x509.load_pem_x509_certificate(cert).public_key().public_bytes(*raw)
    except ValueError:
        raise CallerMistakeError("--cert is not a readable PEM certificate") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise CallerMistakeError("--key is not a readable, unencrypted PEM private key") from None
    if private.public_key().public_bytes(*raw) != public:
        raise CallerMistakeError("--key is not the private key of --cert")


_CERTIFICATE = ("a PEM certificate", re.compile(rb"-----BEGIN CERTIFICATE-----"))
_KEY = ("a PEM private key", re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"))


def _read(path: Path, what: str, kind: tuple[str, re.Pattern[bytes]]) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CallerMistakeError(f"cannot read {what} file {path}: {error.strerror}") from None
    if not kind[1].search(data):
        raise CallerMistakeError(f"{what} file {path} is not {kind[0]}")
    return data


def describe_rpc_error(error: grpc.RpcError | VaultError, target: str = "") -> str:
    """A failed call in one line: ``CODE: message [REASON]`` (REASON when the vault sent one).

    An UNAVAILABLE the vault did not send (nothing listening, a TLS handshake
    that failed) says where it called and what to check.
    """
    details: str | None
    if isinstance(error, VaultError):  # the client's typed methods
        code, details = error.code, error.message
    else:  # the generated stubs (RewrapKeys)
        code, details = error.code(), error.details()
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    reason = error_reason(error)
    message = " ".join(str(details or "").split())
    if reason:
        return f"{name}: {message} [{reason}]"
    if code is grpc.StatusCode.UNAVAILABLE and target:
        message += (
            f" (is a vault serving at {target}, --target or PII_VAULT_TARGET, and did the CA"
            " certificate, --cacert, sign its certificate?)"
        )
    return f"{name}: {message}"
