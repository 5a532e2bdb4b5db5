"""Development PKI for mutual TLS: one local CA, a server certificate, client certificates.

The vault takes a caller's identity from the one common name of its client
certificate (``vault.transport.identity`` reads it from the certificate; two
CNs or none identify nobody), so a caller name is both a file name and an
identity: it is held to a strict pattern before anything is written.

What must hold:

- Nothing is ever overwritten. Every target path is checked before the first
  byte is written, and each file is created with ``O_EXCL`` as a backstop
  against a concurrent writer; if any write fails, the files this call
  created are removed again, so a failed run leaves the tree as it found it.
- A private key is never readable by anyone but its owner, not even for an
  instant: key files are created with mode ``0o600`` in the ``open`` call
  itself, never written first and tightened afterwards. Directories are
  ``0o700``; certificates are public and ``0o644``.
- Time is injectable (``now``), so tests are deterministic; ``not_valid_before``
  is backdated five minutes to tolerate clock skew between machines.

This is a development and example PKI: the CA key sits unencrypted next to the
certificates. Production deployments bring their own CA.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# "probe" has no grant in the default policy: its certificate is for health probes.
DEFAULT_CALLERS: tuple[str, ...] = (
    "registration",
    "checkout",
    "deletion",
    "privacy-desk",
    "admin",
    "probe",
)

CA_COMMON_NAME = "pii-vault dev CA"
CLOCK_SKEW = timedelta(minutes=5)

_CALLER_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
_KEY_MODE = 0o600
_CERT_MODE = 0o644
_DIR_MODE = 0o700


class PkiExistsError(FileExistsError):
    """A PKI file is already there; nothing was written."""


@dataclass(frozen=True)
class TlsPaths:
    """Where the PKI lives. ``under(DIR)`` gives the layout ``init`` uses: ``DIR/tls/...``."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    clients_dir: Path

    def client_cert(self, name: str) -> Path:
        return self.clients_dir / f"{validate_caller_name(name)}.crt"

    def client_key(self, name: str) -> Path:
        return self.clients_dir / f"{validate_caller_name(name)}.key"

    @classmethod
    def under(cls, data_dir: Path) -> TlsPaths:
        tls = Path(data_dir) / "tls"
        return cls(
            ca_cert=tls / "ca.crt",
            ca_key=tls / "ca.key",
            server_cert=tls / "server.crt",
            server_key=tls / "server.key",
            clients_dir=tls / "clients",
        )


def validate_caller_name(name: str) -> str:
    """Return ``name`` if it is a valid caller name, else raise ``ValueError``.

    The name becomes a certificate CN (the caller's identity) and a file name,
    so it must not carry path separators, dots, upper case or whitespace.
    ``fullmatch`` rather than ``match`` with ``$``, which would accept a
    trailing newline.
    """
    if not isinstance(name, str) or _CALLER_NAME.fullmatch(name) is None:
        raise ValueError(
            f"invalid caller name {name!r}: must match ^[a-z][a-z0-9-]{{0,62}}$ "
            "(lower-case letter first, then lower-case letters, digits or '-', "
            "at most 63 characters)"
        )
    return name


def create_dev_pki(
    paths: TlsPaths,
    callers: Sequence[str] = DEFAULT_CALLERS,
    *,
    server_names: Sequence[str] = ("localhost",),
    server_ips: Sequence[str] = ("127.0.0.1", "::1"),
    now: datetime | None = None,
    valid_days: int = 825,
) -> None:
    """Create the CA, the server certificate and one client certificate per caller.

    Raises ``PkiExistsError`` naming the first existing target, and writes
    nothing, if any of the files is already there.
    """
    names = [validate_caller_name(name) for name in callers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate caller names: {', '.join(duplicates)}")
    san = _server_alt_names(server_names, server_ips)
    issued_at = _issue_time(now)
    not_after = issued_at + _validity(valid_days)

    targets = [paths.ca_cert, paths.ca_key, paths.server_cert, paths.server_key]
    for name in names:
        targets += [paths.client_cert(name), paths.client_key(name)]
    _refuse_existing(targets)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _build_ca_certificate(ca_key, issued_at, not_after)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_common_name = server_names[0] if server_names else server_ips[0]
    server_cert = _build_leaf_certificate(
        common_name=server_common_name,
        public_key=server_key.public_key(),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        alt_names=san,
        ca_cert=ca_cert,
        ca_key=ca_key,
        not_before=issued_at,
        not_after=not_after,
    )
    files: list[tuple[Path, bytes, int]] = [
        (paths.ca_key, _key_pem(ca_key), _KEY_MODE),
        (paths.ca_cert, _cert_pem(ca_cert), _CERT_MODE),
        (paths.server_key, _key_pem(server_key), _KEY_MODE),
        (paths.server_cert, _cert_pem(server_cert), _CERT_MODE),
    ]
    for name in names:
        files += _client_files(paths, name, ca_cert, ca_key, issued_at, not_after)

    _ensure_private_dir(paths.ca_cert.parent)
    _ensure_private_dir(paths.ca_key.parent)
    _ensure_private_dir(paths.server_cert.parent)
    _ensure_private_dir(paths.server_key.parent)
    if names:
        _ensure_private_dir(paths.clients_dir)
    _write_all(files)


def issue_client_certificate(
    paths: TlsPaths,
    name: str,
    *,
    now: datetime | None = None,
    valid_days: int = 825,
) -> None:
    """Issue one more client certificate from an existing dev CA.

    Needs the CA's private key (``paths.ca_key``). Refuses, writing nothing,
    if the client's certificate or key already exists. The certificate never
    outlives the CA: its ``not_valid_after`` is capped at the CA's.
    """
    validate_caller_name(name)
    issued_at = _issue_time(now)
    not_after = issued_at + _validity(valid_days)
    _refuse_existing([paths.client_cert(name), paths.client_key(name)])

    ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    loaded = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{paths.ca_key}: CA key is not an EC private key")
    if loaded.public_key() != ca_cert.public_key():
        raise ValueError(f"{paths.ca_key}: CA key does not belong to {paths.ca_cert}")
    if issued_at >= ca_cert.not_valid_after_utc:
        raise ValueError(f"{paths.ca_cert}: CA certificate has expired")
    not_after = min(not_after, ca_cert.not_valid_after_utc)

    files = _client_files(paths, name, ca_cert, loaded, issued_at, not_after)
    _ensure_private_dir(paths.clients_dir)
    _write_all(files)


# -- certificates -----------------------------------------------------------


def _build_ca_certificate(
    key: ec.EllipticCurvePrivateKey, not_before: datetime, not_after: datetime
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def _build_leaf_certificate(
    *,
    common_name: str,
    public_key: ec.EllipticCurvePublicKey,
    usage: x509.ObjectIdentifier,
    alt_names: Sequence[x509.GeneralName],
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _client_files(
    paths: TlsPaths,
    name: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    not_after: datetime,
) -> list[tuple[Path, bytes, int]]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _build_leaf_certificate(
        common_name=name,
        public_key=key.public_key(),
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        alt_names=(),
        ca_cert=ca_cert,
        ca_key=ca_key,
        not_before=not_before,
        not_after=not_after,
    )
    return [
        (paths.client_key(name), _key_pem(key), _KEY_MODE),
        (paths.client_cert(name), _cert_pem(cert), _CERT_MODE),
    ]


def _server_alt_names(
    server_names: Sequence[str], server_ips: Sequence[str]
) -> list[x509.GeneralName]:
    if isinstance(server_names, str) or isinstance(server_ips, str):
        raise TypeError("server_names and server_ips are sequences of strings, not a string")
    if not server_names and not server_ips:
        raise ValueError("the server certificate needs at least one DNS name or IP address")
    alt_names: list[x509.GeneralName] = []
    for dns_name in server_names:
        if not dns_name or any(c.isspace() for c in dns_name):
            raise ValueError(f"invalid server DNS name {dns_name!r}")
        alt_names.append(x509.DNSName(dns_name))
    for ip in server_ips:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise ValueError(f"invalid server IP address {ip!r}") from None
    return alt_names


def _issue_time(now: datetime | None) -> datetime:
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC) - CLOCK_SKEW


def _validity(valid_days: int) -> timedelta:
    if valid_days <= 0:
        raise ValueError(f"valid_days must be positive, got {valid_days}")
    return timedelta(days=valid_days) + CLOCK_SKEW


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# -- files ------------------------------------------------------------------


def _refuse_existing(targets: Sequence[Path]) -> None:
    for target in targets:
        # lexists: a dangling symlink counts too; O_EXCL would refuse it anyway.
        if os.path.lexists(target):
            raise PkiExistsError(
                f"refusing to overwrite existing PKI file {target}; nothing was written"
            )


def _ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` (and missing parents) with mode 0o700.

    A directory this call creates is chmod-ed explicitly, since ``mkdir``'s
    mode is filtered by the umask. An existing one is left as it is: it may
    be the operator's own data directory.
    """
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=_DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(path, _DIR_MODE)


def _write_all(files: Sequence[tuple[Path, bytes, int]]) -> None:
    """Write every file or none: on failure, remove the ones this call created."""
    created: list[Path] = []
    try:
        for path, data, mode in files:
            _write_new_file(path, data, mode)
            created.append(path)
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` exclusively with ``mode`` from the first instant, write, fsync."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise PkiExistsError(
            f"refusing to overwrite existing PKI file {path}; it appeared while writing"
        ) from None
    try:
        # The umask may have narrowed the mode; set it exactly. It can only
        # ever have been narrower than asked, so a key is never exposed.
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
