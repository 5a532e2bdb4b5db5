"""The ``transit`` key provider: master keys in the Transit engine of OpenBao or Vault.

Layer: ``vault.keys`` (imports only ``vault.crypto``, ``vault.errors``,
``vault.keys`` and hvac). ``transit+https://HOST:PORT/MOUNT/KEY?token-file=/path``
(or ``transit+http``) names the key; the token is read at each call from that
owner-only file or ``VAULT_TOKEN``; ``ca-cert=`` or ``VAULT_CACERT`` names a CA.

Keys, none exportable, backed up in plain or deletable: ``KEY``, the master key
(``aes256-gcm96``), wraps with ``encrypt`` under ``associated_data`` =
``encode_context(b"pii-vault/transit-kek", kek_id) + context``; its
``vault:vN:...`` answer is ``WrappedKey.ciphertext``, N the ``kek_version``.
``KEY-audit`` (``hmac``, never rotated) makes the audit key, an HMAC of
``AUDIT_KEY_LABEL``; ``KEY-signing`` (``ed25519``) signs for ``TransitSigner``.
``retire(v)`` raises ``min_decryption_version`` to v+1 (reversible alone) and
``min_encryption_version`` to the latest, then ``trim``s the material for good.

Only the audit key is cached, so another replica's rotation is seen at once.
A server down (2 s connect, 5 s read timeouts) or sealed, or a refused token,
raises ``Unavailable`` naming the server and what failed, never the token, and
the object works again once the server does. Each thread has its own hvac
client: requests does not promise a Session is thread safe; each keeps alive.

``create_master_key`` (``pii-vault init``) needs a token that may create keys;
the vault's own needs only ``TRANSIT_POLICY_TEMPLATE`` (see ``transit_policy``;
no ``create`` on ``encrypt``, so it cannot create a missing key; ``config``
only for the minimum versions), plus ``TRANSIT_SIGNER_POLICY_TEMPLATE`` to sign::

    path "$mount/encrypt/$key" { capabilities = ["update"] }
    path "$mount/decrypt/$key" { capabilities = ["update"] }
    path "$mount/keys/$key" { capabilities = ["read"] }
    path "$mount/keys/$key/rotate" { capabilities = ["update"] }
    path "$mount/keys/$key/trim" { capabilities = ["update"] }
    path "$mount/keys/$key/config" {
      capabilities = ["update"]
      allowed_parameters = { "min_decryption_version" = [], "min_encryption_version" = [] }
    }
    path "$mount/hmac/$key-audit/sha2-256" { capabilities = ["update"] }
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import hvac
from hvac import exceptions as bao

from vault.crypto.envelope import encode_context
from vault.errors import DataLoss, FailedPrecondition, NotFound, Unavailable, VaultError
from vault.keys.private_files import read_owner_only
from vault.keys.provider import MasterKeyInfo, MasterKeyState, WrappedKey

TOKEN_ENV = "VAULT_TOKEN"  # noqa: S105 (a variable's name)
CACERT_ENV = "VAULT_CACERT"
AUDIT_KEY_LABEL = b"pii-vault/audit-chain-key/v1"
TIMEOUTS = (2.0, 5.0)  # seconds to connect, to read
MASTER_KEY_TYPE = "aes256-gcm96"

TRANSIT_POLICY_TEMPLATE = """\
path "$mount/encrypt/$key" { capabilities = ["update"] }
path "$mount/decrypt/$key" { capabilities = ["update"] }
path "$mount/keys/$key" { capabilities = ["read"] }
path "$mount/keys/$key/rotate" { capabilities = ["update"] }
path "$mount/keys/$key/trim" { capabilities = ["update"] }
path "$mount/keys/$key/config" {
  capabilities = ["update"]
  allowed_parameters = { "min_decryption_version" = [], "min_encryption_version" = [] }
}
path "$mount/hmac/$key-audit/sha2-256" { capabilities = ["update"] }
"""
TRANSIT_SIGNER_POLICY_TEMPLATE = """\
path "$mount/keys/$key-signing" { capabilities = ["read"] }
path "$mount/sign/$key-signing" { capabilities = ["update"] }
"""


# -- the URI ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransitUri:
    address: str  # http(s)://HOST:PORT
    mount: str
    key: str
    token_file: str | None  # None: VAULT_TOKEN
    ca_cert: str | None = None

    @property
    def kek_id(self) -> str:
        kek_id = f"transit:{self.mount}/{self.key}"
        digest = "transit:" + hashlib.sha256(kek_id.encode()).hexdigest()[:56]
        return kek_id if len(kek_id) <= 64 else digest  # at most 64 characters


_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def parse_transit_uri(uri: str) -> TransitUri:
    """Parse a Transit key URI; a ``ValueError`` names the attribute, never a value."""
    scheme = uri.partition("://")[0].lower()
    if scheme not in ("transit+http", "transit+https"):
        raise ValueError("a Transit key URI starts with transit+http:// or transit+https://")
    parts = urlsplit(uri)
    found: dict[str, str] = {}
    for item in parts.query.split("&") if parts.query else ():
        name, _, raw = item.partition("=")
        if name == "token":
            refusal = f"never in a URI, use token-file=/path or {TOKEN_ENV}"
            raise ValueError(f"transit URI: attribute token is refused: a token is {refusal}")
        if not re.match(r"[a-z][a-z0-9-]*\Z", name):
            raise ValueError("transit URI: malformed query attribute")
        if name not in ("token-file", "ca-cert") or name in found:
            raise ValueError(f"transit URI: attribute {name} is unknown or repeated")
        found[name] = unquote(raw)
        if not found[name].startswith("/"):
            raise ValueError(f"transit URI: attribute {name} needs an absolute path")
    if "@" in parts.netloc or parts.fragment:
        raise ValueError("transit URI: credentials or a fragment are refused")
    try:
        if not parts.hostname or parts.port == 0:
            raise ValueError
    except ValueError:
        raise ValueError("transit URI: needs a host and a valid port") from None
    segments = parts.path.strip("/").split("/")
    if len(segments) < 2 or not all(_SEGMENT.match(s) for s in segments):
        raise ValueError("transit URI: the path must be /MOUNT/KEY (letters, digits, _ . -)")
    if "ca-cert" in found and scheme != "transit+https":
        raise ValueError("transit URI: attribute ca-cert needs transit+https")
    address = f"{scheme.removeprefix('transit+')}://{parts.netloc}"
    mount = "/".join(segments[:-1])
    return TransitUri(address, mount, segments[-1], found.get("token-file"), found.get("ca-cert"))


def transit_policy(uri: str | TransitUri, template: str = TRANSIT_POLICY_TEMPLATE) -> str:
    """``template`` (HCL) for the key ``uri`` names."""
    parsed = parse_transit_uri(uri) if isinstance(uri, str) else uri
    return string.Template(template).substitute(mount=parsed.mount, key=parsed.key)


# -- the token and the HTTP clients -------------------------------------------------------
def _read_token(path: str | None) -> str:
    """The token, read now from its file (owner-only) or ``VAULT_TOKEN``; never logged."""
    token = os.environ.get(TOKEN_ENV, "")
    if path is not None:
        token = read_owner_only(path, "Transit token file").decode("utf-8", "replace")
    if not token.strip():
        raise Unavailable(f"no Transit token: {path or TOKEN_ENV} is empty or unset")
    return token.strip()


Faults = Callable[[bao.VaultError, str], VaultError | None]


class _Transit:
    """Calls to one Transit mount: one hvac client per thread; failures are ``Unavailable``."""

    def __init__(self, uri: str | TransitUri, timeouts: tuple[float, float]) -> None:
        self.uri = parse_transit_uri(uri) if isinstance(uri, str) else uri
        self.where = f"Transit at {self.uri.address}"
        self._timeouts = timeouts
        self._verify: bool | str = self.uri.ca_cert or os.environ.get(CACERT_ENV) or True
        self._local = threading.local()

    def call(
        self, method: str, path: str, what: str, body: Any = None, faults: Faults | None = None
    ) -> dict[str, Any]:
        """The ``data`` Transit answers to ``method`` on ``MOUNT/path``; ``what`` is for errors."""
        token = _read_token(self.uri.token_file)
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = hvac.Client(
                url=self.uri.address, token=token, verify=self._verify, timeout=self._timeouts
            )
        client.token = token
        try:
            answer = client.adapter.request(method, f"/v1/{self.uri.mount}/{path}", json=body)
        except bao.VaultError as error:
            detail = _detail(error, token)
            fault = faults(error, detail) if faults is not None else None
            raise (fault or self._fault(error, detail, path, what)) from None
        except (OSError, ValueError) as error:  # requests' errors are OSErrors
            cause = type(error).__name__
            raise Unavailable(f"{self.where} cannot be reached while {what} ({cause})") from None
        data = answer.get("data") if isinstance(answer, dict) else None
        return data if isinstance(data, dict) else {}

    def _fault(self, error: bao.VaultError, detail: str, path: str, what: str) -> Unavailable:
        if isinstance(error, bao.VaultDown):
            return Unavailable(f"{self.where} is sealed or not active while {what} ({detail})")
        if isinstance(error, (bao.Forbidden, bao.Unauthorized)):  # revoked, expired, policy
            return Unavailable(f"{self.where} refused the token while {what} ({detail})")
        if isinstance(error, bao.InvalidPath):
            return Unavailable(f"{self.where} has no {self.uri.mount}/{path} (while {what})")
        return Unavailable(f"{self.where} failed while {what} ({detail})")

    def state(self, name: str, key_type: str, what: str) -> _Key:
        data = self.call("GET", f"keys/{name}", what)
        return _Key.parse(f"{self.uri.mount}/{name}", data, key_type)


def _detail(error: bao.VaultError, token: str) -> str:  # Transit's words, never the token
    text = " ".join(" ".join(str(e) for e in error.errors or ()).split())
    text = re.sub(r"^\d+ errors? occurred: \* ", "", text)[:200] or type(error).__name__
    return text.replace(token, "<token>")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


_PREFIXED = re.compile(r"vault:v([1-9][0-9]{0,8}):[A-Za-z0-9+/]+={0,2}\Z")


def _version_of(text: Any) -> int | None:
    match = _PREFIXED.match(text) if isinstance(text, str) else None
    return int(match.group(1)) if match else None


def _decode(text: Any) -> bytes:
    try:
        return base64.b64decode(text, validate=True) if isinstance(text, str) else b""
    except ValueError:
        return b""


def _unprefix(text: Any, version: int) -> bytes:  # "vault:vN:<base64>" of version N
    return _decode(text.rsplit(":", 1)[1]) if _version_of(text) == version else b""


@dataclass(frozen=True)
class _Key:
    latest: int
    oldest: int  # the lowest version that decrypts: every lower one is retired
    min_available: int  # trimmed below this
    min_encryption: int
    keys: dict[str, Any]

    @classmethod
    def parse(cls, name: str, data: dict[str, Any], key_type: str) -> _Key:
        """The description of ``name`` (``MOUNT/KEY``); ``Unavailable`` unless it is fit."""
        try:
            key = cls(
                int(data["latest_version"]),
                max(1, int(data["min_decryption_version"]), int(data["min_available_version"])),
                int(data["min_available_version"]),
                int(data["min_encryption_version"]),
                dict(data.get("keys") or {}),
            )
            kind = str(data["type"])
            leaves = any(
                data[f] for f in ("exportable", "allow_plaintext_backup", "deletion_allowed")
            )
        except (KeyError, TypeError, ValueError):
            raise Unavailable(f"Transit key {name} has a malformed description") from None
        if kind != key_type:
            raise Unavailable(f"Transit key {name} is of type {kind}, not {key_type}")
        if leaves:
            raise Unavailable(f"Transit key {name} is exportable or deletable; it must not be")
        return key

    def info(self, kek_id: str, version: int) -> MasterKeyInfo:
        if not 1 <= version <= self.latest:
            raise NotFound(f"master key version {version} does not exist")
        state = MasterKeyState.RETIRED if version < self.oldest else MasterKeyState.ACTIVE
        created = self.keys.get(str(version), "")
        if isinstance(created, int):  # aes256-gcm96 keys: Unix seconds
            created = datetime.fromtimestamp(created, UTC).isoformat()
        return MasterKeyInfo(kek_id, version, state, str(created))


# -- the provider ---------------------------------------------------------------------------
class TransitKeyProvider:
    """Master key versions in Transit: wraps and unwraps there, the key never leaves it."""

    def __init__(self, uri: str | TransitUri, *, timeouts: tuple[float, float] = TIMEOUTS) -> None:
        self._transit = _Transit(uri, timeouts)
        self._key = self._transit.uri.key
        self.kek_id = self._transit.uri.kek_id
        self._aad = encode_context(b"pii-vault/transit-kek", self.kek_id)
        self._audit: bytes | None = None
        self._state()  # Unavailable unless the key exists and is fit

    def _state(self) -> _Key:
        return self._transit.state(self._key, MASTER_KEY_TYPE, "reading the master key")

    def wrap(self, key: bytes, context: bytes) -> WrappedKey:
        body = {"plaintext": _b64(key), "associated_data": _b64(self._aad + context)}
        data = self._transit.call("POST", f"encrypt/{self._key}", "wrapping", body)
        ciphertext, version = data.get("ciphertext"), _version_of(data.get("ciphertext"))
        if version is None:
            raise Unavailable(f"{self._transit.where} answered encrypt without a ciphertext")
        return WrappedKey(self.kek_id, version, str(ciphertext).encode())

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        if wrapped.kek_id != self.kek_id:
            raise Unavailable("the key was wrapped by another master key")
        version = wrapped.kek_version
        ciphertext = wrapped.ciphertext.decode("ascii", "replace")
        if _version_of(ciphertext) != version:
            raise DataLoss("a wrapped subject key is malformed or names another version")

        def faults(error: bao.VaultError, detail: str) -> VaultError | None:
            if not isinstance(error, bao.InvalidRequest):
                return None
            if "too old" in detail:  # below min_decryption_version
                return Unavailable(f"master key version {version} is retired")
            if "too new" in detail:
                return Unavailable(f"master key version {version} is unknown to Transit")
            if "message authentication failed" in detail or "invalid ciphertext" in detail:
                return DataLoss("a wrapped subject key failed authentication")
            return None

        body = {"ciphertext": ciphertext, "associated_data": _b64(self._aad + context)}
        data = self._transit.call("POST", f"decrypt/{self._key}", "unwrapping", body, faults)
        key = _decode(data.get("plaintext"))
        if not key:
            raise Unavailable(f"{self._transit.where} answered decrypt without a key")
        return key

    def versions(self) -> list[MasterKeyInfo]:
        state = self._state()
        return [state.info(self.kek_id, v) for v in range(1, state.latest + 1)]

    def current_version(self) -> int:
        return self._state().latest

    def rotate(self) -> MasterKeyInfo:
        """A new Transit version, current at once; older versions keep unwrapping."""
        data = self._transit.call("POST", f"keys/{self._key}/rotate", "rotating the master key")
        name = f"{self._transit.uri.mount}/{self._key}"  # some servers answer 204, no body
        state = _Key.parse(name, data, MASTER_KEY_TYPE) if data else self._state()
        return state.info(self.kek_id, state.latest)

    def retire(self, version: int) -> MasterKeyInfo:
        """Stop ``version`` decrypting, then trim its key material out of Transit for good."""
        state = self._state()
        info = state.info(self.kek_id, version)  # NotFound for an unknown version
        if version == state.latest:
            raise FailedPrecondition(
                f"master key version {version} is current; rotate before retiring it"
            )
        if version > state.oldest:
            raise FailedPrecondition(
                f"master key version {version} cannot be retired before versions "
                f"{state.oldest} to {version - 1}: Transit retires oldest first, retire those first"
            )
        if version < state.min_available:
            return info  # retired and trimmed already
        # The config also finishes a retire that stopped before trimming.
        config = {
            "min_decryption_version": max(state.oldest, version + 1),
            "min_encryption_version": max(state.min_encryption, state.latest),
        }
        what = f"retiring master key version {version}"
        self._transit.call("POST", f"keys/{self._key}/config", what, config)
        trim = {"min_available_version": version + 1}
        self._transit.call("POST", f"keys/{self._key}/trim", what, trim)
        return MasterKeyInfo(self.kek_id, version, MasterKeyState.RETIRED, info.created_at)

    def check(self) -> None:
        """Raise ``Unavailable`` naming why unless Transit serves the key now (never logs)."""
        self._state()

    def audit_key(self) -> bytes:
        """HMAC-SHA256 of ``AUDIT_KEY_LABEL`` under ``KEY-audit`` version 1, made in Transit."""
        if self._audit is None:
            name = f"{self._key}-audit"
            body = {"input": _b64(AUDIT_KEY_LABEL), "key_version": 1}
            path, what = f"hmac/{name}/sha2-256", "computing the audit key"
            key = _unprefix(self._transit.call("POST", path, what, body).get("hmac"), 1)
            if len(key) != 32:
                raise Unavailable(f"Transit audit key {name} gave no 32-byte HMAC")
            self._audit = key
        return self._audit

    def adopts_unkeyed_audit_chain(self) -> bool:
        return False  # a Transit installation never had an unkeyed chain

    def close_unkeyed_audit_chain(self) -> None:
        return None


def _ensure_key(transit: _Transit, name: str, key_type: str, **extra: Any) -> None:
    """Create key ``name``; Transit answers an existing one unchanged, which must be fit."""
    body = {"type": key_type, "exportable": False, "allow_plaintext_backup": False} | extra
    data = transit.call("POST", f"keys/{name}", f"creating key {name}", body)
    data = data or transit.call("GET", f"keys/{name}", f"reading key {name}")  # after a 204
    try:
        _Key.parse(f"{transit.uri.mount}/{name}", data, key_type)
    except Unavailable as error:  # the key exists but is unfit
        raise FailedPrecondition(error.message) from None


def create_master_key(uri: str | TransitUri) -> None:
    """For ``pii-vault init``: create ``KEY`` and ``KEY-audit`` unless they exist (idempotent)."""
    transit = _Transit(uri, TIMEOUTS)
    _ensure_key(transit, transit.uri.key, MASTER_KEY_TYPE)
    _ensure_key(transit, f"{transit.uri.key}-audit", "hmac", key_size=32)


def create_signing_key(uri: str | TransitUri) -> None:
    """Create the ``ed25519`` key ``KEY-signing`` unless it exists (idempotent)."""
    transit = _Transit(uri, TIMEOUTS)
    _ensure_key(transit, f"{transit.uri.key}-signing", "ed25519")


# -- a signing key in custody -----------------------------------------------------------------
class TransitSigner:
    """The Ed25519 key ``KEY-signing``: signs in Transit with the version it was opened on,
    so every signature verifies under ``public_key_bytes``; the private half never leaves."""

    def __init__(self, uri: str | TransitUri, *, timeouts: tuple[float, float] = TIMEOUTS) -> None:
        self._transit = _Transit(uri, timeouts)
        self._name = f"{self._transit.uri.key}-signing"
        key = self._transit.state(self._name, "ed25519", "reading the signing key")
        self._version = key.latest
        entry = key.keys.get(str(key.latest))
        self._public = _decode(entry.get("public_key") if isinstance(entry, dict) else None)
        if len(self._public) != 32:
            raise Unavailable(f"Transit signing key {self._name} has no Ed25519 public key")

    def sign(self, data: bytes) -> bytes:
        """A raw 64-byte Ed25519 signature over ``data``."""
        body = {"input": _b64(data), "key_version": self._version}
        answer = self._transit.call("POST", f"sign/{self._name}", "signing", body)
        signature = _unprefix(answer.get("signature"), self._version)
        if len(signature) != 64:
            raise Unavailable(f"Transit signing key {self._name} gave no Ed25519 signature")
        return signature

    def public_key_bytes(self) -> bytes:
        return self._public
