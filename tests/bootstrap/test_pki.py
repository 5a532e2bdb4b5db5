"""The dev PKI: files and modes, chain verification, refusal to overwrite, real mTLS."""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from vault.bootstrap import pki as pki_module
from vault.bootstrap.pki import (
    DEFAULT_CALLERS,
    PkiExistsError,
    TlsPaths,
    create_dev_pki,
    issue_client_certificate,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WHOAMI = "/pii_vault.test.WhoAmI/Get"


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def common_name(cert: x509.Certificate) -> str:
    value = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(value, str)
    return value


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), mode_of(p))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def client_verifier(ca: x509.Certificate, at: datetime) -> ClientVerifier:
    """Web PKI defaults, except that the leaf need not carry a SAN.

    The client certificates deliberately have none: grpc reports a SAN, when
    present, as the peer identity (``peer_identity_key()`` becomes
    ``x509_subject_alternative_name``), while the vault's identity is the CN.
    """
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    return (
        PolicyBuilder()
        .store(Store([ca]))
        .time(at)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        .build_client_verifier()
    )


@pytest.fixture
def paths(tmp_path: Path) -> TlsPaths:
    return TlsPaths.under(tmp_path)


@pytest.fixture
def pki(paths: TlsPaths) -> TlsPaths:
    create_dev_pki(paths, now=NOW)
    return paths


# -- layout and modes ---------------------------------------------------------


def test_layout_is_data_dir_tls(tmp_path: Path) -> None:
    paths = TlsPaths.under(tmp_path)
    tls = tmp_path / "tls"
    assert paths.ca_cert == tls / "ca.crt"
    assert paths.ca_key == tls / "ca.key"
    assert paths.server_cert == tls / "server.crt"
    assert paths.server_key == tls / "server.key"
    assert paths.client_cert("checkout") == tls / "clients" / "checkout.crt"
    assert paths.client_key("checkout") == tls / "clients" / "checkout.key"


def test_creates_every_file_with_private_modes(pki: TlsPaths, tmp_path: Path) -> None:
    keys = [pki.ca_key, pki.server_key] + [pki.client_key(n) for n in DEFAULT_CALLERS]
    certs = [pki.ca_cert, pki.server_cert] + [pki.client_cert(n) for n in DEFAULT_CALLERS]
    for key in keys:
        assert mode_of(key) == 0o600, key
        loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        assert loaded.curve.name == "secp256r1"
        assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8
    for cert in certs:
        assert mode_of(cert) == 0o644, cert
    assert mode_of(tmp_path / "tls") == 0o700
    assert mode_of(pki.clients_dir) == 0o700
    assert sorted(p.name for p in pki.clients_dir.iterdir()) == sorted(
        f"{n}.{ext}" for n in DEFAULT_CALLERS for ext in ("crt", "key")
    )


def test_modes_hold_whatever_the_umask(paths: TlsPaths) -> None:
    previous = os.umask(0o077)
    try:
        create_dev_pki(paths, ["admin"], now=NOW)
    finally:
        os.umask(previous)
    assert mode_of(paths.ca_cert) == 0o644
    assert mode_of(paths.ca_key) == 0o600
    assert mode_of(paths.clients_dir) == 0o700


# -- certificate contents and chains ------------------------------------------


def test_ca_certificate(pki: TlsPaths) -> None:
    ca = load_cert(pki.ca_cert)
    assert common_name(ca) == "pii-vault dev CA"
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)


def test_validity_window_is_backdated_five_minutes(pki: TlsPaths) -> None:
    for path in (pki.ca_cert, pki.server_cert, pki.client_cert("admin")):
        cert = load_cert(path)
        assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
        assert cert.not_valid_after_utc == NOW + timedelta(days=825)


def test_serial_numbers_are_distinct(pki: TlsPaths) -> None:
    paths = [pki.ca_cert, pki.server_cert] + [pki.client_cert(n) for n in DEFAULT_CALLERS]
    serials = {load_cert(p).serial_number for p in paths}
    assert len(serials) == len(paths)


def test_server_certificate_verifies_for_localhost_and_loopback(pki: TlsPaths) -> None:
    ca = load_cert(pki.ca_cert)
    server = load_cert(pki.server_cert)
    assert common_name(server) == "localhost"
    builder = PolicyBuilder().store(Store([ca])).time(NOW + timedelta(days=1))
    chain = builder.build_server_verifier(x509.DNSName("localhost")).verify(server, [])
    assert chain == [server, ca]
    for ip in ("127.0.0.1", "::1"):
        subject = x509.IPAddress(ipaddress.ip_address(ip))
        builder.build_server_verifier(subject).verify(server, [])
    with pytest.raises(VerificationError):
        builder.build_server_verifier(x509.DNSName("vault.example.com")).verify(server, [])
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_server_alt_names_are_configurable(paths: TlsPaths) -> None:
    create_dev_pki(
        paths, [], server_names=("vault.internal", "localhost"), server_ips=("10.0.0.7",), now=NOW
    )
    san = load_cert(paths.server_cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert san.value.get_values_for_type(x509.DNSName) == ["vault.internal", "localhost"]
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]
    assert not paths.clients_dir.exists()


@pytest.mark.parametrize("name", DEFAULT_CALLERS)
def test_client_certificate_verifies_and_carries_the_caller_name(pki: TlsPaths, name: str) -> None:
    ca = load_cert(pki.ca_cert)
    client = load_cert(pki.client_cert(name))
    assert common_name(client) == name
    client.verify_directly_issued_by(ca)
    verified = client_verifier(ca, NOW).verify(client, [])
    assert verified.chain == [client, ca]
    assert verified.subjects is None  # no SAN: the identity is the CN
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # A client certificate must not pass as a server certificate.
    server_verifier = PolicyBuilder().store(Store([ca])).time(NOW)
    with pytest.raises(VerificationError):
        server_verifier.build_server_verifier(x509.DNSName("localhost")).verify(client, [])


def test_certificates_from_another_ca_do_not_verify(pki: TlsPaths, tmp_path: Path) -> None:
    other = TlsPaths.under(tmp_path / "other")
    create_dev_pki(other, ["checkout"], now=NOW)
    verifier = client_verifier(load_cert(pki.ca_cert), NOW)
    with pytest.raises(VerificationError):
        verifier.verify(load_cert(other.client_cert("checkout")), [])


# -- refusing to overwrite ------------------------------------------------------


def test_second_run_refuses_and_leaves_files_untouched(pki: TlsPaths, tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(PkiExistsError, match=r"ca\.crt"):
        create_dev_pki(pki, now=NOW)
    assert snapshot(tmp_path) == before


def test_one_existing_file_blocks_everything(paths: TlsPaths, tmp_path: Path) -> None:
    paths.clients_dir.mkdir(parents=True)
    existing = paths.client_key("deletion")
    existing.write_bytes(b"somebody else's key")
    with pytest.raises(PkiExistsError, match=r"deletion\.key") as raised:
        create_dev_pki(paths, now=NOW)
    assert isinstance(raised.value, FileExistsError)
    assert existing.read_bytes() == b"somebody else's key"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["deletion.key"]


def test_dangling_symlink_counts_as_existing(paths: TlsPaths, tmp_path: Path) -> None:
    paths.ca_key.parent.mkdir(parents=True)
    paths.ca_key.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PkiExistsError, match=r"ca\.key"):
        create_dev_pki(paths, now=NOW)
    assert not (tmp_path / "elsewhere").exists()


def test_failed_write_removes_what_it_wrote(
    paths: TlsPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = pki_module._write_new_file
    calls = 0

    def failing_write(path: Path, data: bytes, mode: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise OSError(28, "No space left on device")
        real_write(path, data, mode)

    monkeypatch.setattr(pki_module, "_write_new_file", failing_write)
    with pytest.raises(OSError, match="No space left"):
        create_dev_pki(paths, now=NOW)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    monkeypatch.undo()
    create_dev_pki(paths, now=NOW)  # nothing left behind to block a retry


def test_issue_client_certificate_adds_a_caller(pki: TlsPaths) -> None:
    issue_client_certificate(pki, "reporting", now=NOW + timedelta(days=1))
    client = load_cert(pki.client_cert("reporting"))
    assert common_name(client) == "reporting"
    assert mode_of(pki.client_key("reporting")) == 0o600
    assert mode_of(pki.client_cert("reporting")) == 0o644
    ca = load_cert(pki.ca_cert)
    client_verifier(ca, NOW + timedelta(days=2)).verify(client, [])
    # never outlives the CA
    assert client.not_valid_after_utc == ca.not_valid_after_utc


def test_issue_client_certificate_refuses_an_existing_caller(pki: TlsPaths) -> None:
    cert_before = pki.client_cert("checkout").read_bytes()
    key_before = pki.client_key("checkout").read_bytes()
    with pytest.raises(PkiExistsError, match=r"checkout\.crt"):
        issue_client_certificate(pki, "checkout", now=NOW)
    assert pki.client_cert("checkout").read_bytes() == cert_before
    assert pki.client_key("checkout").read_bytes() == key_before


def test_issue_client_certificate_needs_the_ca_key(pki: TlsPaths) -> None:
    pki.ca_key.unlink()
    with pytest.raises(FileNotFoundError):
        issue_client_certificate(pki, "reporting", now=NOW)
    assert not pki.client_cert("reporting").exists()
    assert not pki.client_key("reporting").exists()


# -- bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Admin",
        "1admin",
        "-admin",
        "ad_min",
        "ad.min",
        "../admin",
        "ad min",
        "admin\n",
        "a" * 64,
        "ädmin",
    ],
)
def test_bad_caller_names_are_refused(paths: TlsPaths, tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid caller name"):
        create_dev_pki(paths, ["checkout", name], now=NOW)
    assert list(tmp_path.iterdir()) == []


def test_longest_caller_name_is_accepted(paths: TlsPaths) -> None:
    name = "a" + "b-9" * 20 + "cd"
    assert len(name) == 63
    create_dev_pki(paths, [name], now=NOW)
    assert common_name(load_cert(paths.client_cert(name))) == name


def test_bad_name_refused_by_issue_client_certificate(pki: TlsPaths) -> None:
    with pytest.raises(ValueError, match="invalid caller name"):
        issue_client_certificate(pki, "../server", now=NOW)


def test_duplicate_callers_are_refused(paths: TlsPaths, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        create_dev_pki(paths, ["admin", "admin"], now=NOW)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_ips": ("not-an-ip",)},
        {"server_names": (), "server_ips": ()},
        {"valid_days": 0},
        {"now": datetime(2026, 3, 1)},  # naive on purpose
    ],
)
def test_bad_parameters_are_refused(
    paths: TlsPaths, tmp_path: Path, kwargs: dict[str, object]
) -> None:
    with pytest.raises(ValueError):
        create_dev_pki(paths, **kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# -- real mutual TLS over gRPC ---------------------------------------------------


@dataclass(frozen=True)
class RunningServer:
    port: int
    paths: TlsPaths

    def channel(self, caller: str | None) -> grpc.Channel:
        ca = self.paths.ca_cert.read_bytes()
        if caller is None:
            credentials = grpc.ssl_channel_credentials(root_certificates=ca)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=ca,
                private_key=self.paths.client_key(caller).read_bytes(),
                certificate_chain=self.paths.client_cert(caller).read_bytes(),
            )
        return grpc.secure_channel(f"localhost:{self.port}", credentials)


def _who_am_i(request: bytes, context: grpc.ServicerContext) -> bytes:
    # types-grpcio says Mapping[str, bytes]; grpc really gives a list of bytes per key.
    names = cast("list[bytes]", context.auth_context().get("x509_common_name", []))
    return names[0] if names else b""


def who_am_i(channel: grpc.Channel) -> bytes:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(WHOAMI)
    return call(b"", timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    # Real wall-clock time: the TLS stack checks validity against now.
    paths = TlsPaths.under(tmp_path)
    create_dev_pki(paths)
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    grpc_server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "pii_vault.test.WhoAmI",
                {
                    "Get": grpc.unary_unary_rpc_method_handler(
                        _who_am_i, request_deserializer=None, response_serializer=None
                    )
                },
            ),
        )
    )
    credentials = grpc.ssl_server_credentials(
        [(paths.server_key.read_bytes(), paths.server_cert.read_bytes())],
        root_certificates=paths.ca_cert.read_bytes(),
        require_client_auth=True,
    )
    port = grpc_server.add_secure_port("127.0.0.1:0", credentials)
    assert port != 0
    grpc_server.start()
    try:
        yield RunningServer(port, paths)
    finally:
        grpc_server.stop(grace=None).wait()


def test_mtls_health_check_round_trip(server: RunningServer) -> None:
    with server.channel("admin") as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_handler_sees_the_callers_common_name(server: RunningServer) -> None:
    for caller in ("checkout", "privacy-desk"):
        with server.channel(caller) as channel:
            who = who_am_i(channel)
        assert who == caller.encode()


def test_client_without_certificate_cannot_connect(server: RunningServer) -> None:
    with server.channel(None) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=10
            )
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_certificate_from_another_ca_cannot_connect(
    server: RunningServer, tmp_path: Path
) -> None:
    stranger = TlsPaths.under(tmp_path / "stranger")
    create_dev_pki(stranger, ["checkout"])
    credentials = grpc.ssl_channel_credentials(
        root_certificates=server.paths.ca_cert.read_bytes(),
        private_key=stranger.client_key("checkout").read_bytes(),
        certificate_chain=stranger.client_cert("checkout").read_bytes(),
    )
    with grpc.secure_channel(f"localhost:{server.port}", credentials) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            who_am_i(channel)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
