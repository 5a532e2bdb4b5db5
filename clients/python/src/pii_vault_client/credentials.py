"""mTLS material: the CA that signed the vault's certificate, the caller's certificate and key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True, repr=False)
class Credentials:
    """PEM bytes. The caller's identity is the name in its certificate."""

    ca: bytes
    cert: bytes
    key: bytes

    @classmethod
    def from_files(cls, *, ca: str | Path, cert: str | Path, key: str | Path) -> Credentials:
        read = Path.read_bytes
        return cls(ca=read(Path(ca)), cert=read(Path(cert)), key=read(Path(key)))

    @classmethod
    def from_data_dir(cls, data_dir: str | Path, caller: str) -> Credentials:
        """The dev PKI that ``pii-vault init`` makes: ``DIR/tls/ca.crt``,
        ``DIR/tls/clients/<caller>.crt`` and ``.key``."""
        tls = Path(data_dir) / "tls"
        return cls.from_files(
            ca=tls / "ca.crt",
            cert=tls / "clients" / f"{caller}.crt",
            key=tls / "clients" / f"{caller}.key",
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )

    def __repr__(self) -> str:  # never the key
        return "Credentials(<pem>)"
