"""The ``pkcs11`` key provider: master keys that live in an HSM and never leave it.

Layer: ``vault.keys`` (imports ``vault.crypto``, ``vault.errors``, ``vault.keys``,
python-pkcs11). URI (RFC 7512): ``pkcs11:token=T;object=kek?module-path=/x.so
&pin-source=file:/abs/path`` (owner-only) or ``env:NAME`` (default
``env:PII_VAULT_PKCS11_PIN``); ``pin-value`` is refused (URIs stand in settings).

Objects for ``object=kek``: master-key versions ``kek.v1``, ``kek.v2``, ... are
AES-256 keys (token, private, sensitive, never extractable, not modifiable,
ENCRYPT/DECRYPT only) whose CKA_ID is their creation time (ISO 8601 UTC). The
highest present is current; a lower one without an object is retired
(C_DestroyObject). The audit key is CKM_SHA256_HMAC of ``AUDIT_KEY_LABEL`` under
the generic secret ``kek.audit``. Wrap is CKM_AES_GCM in the token under the
local provider's associated data; the ciphertext is IV || ciphertext || tag.
Threads, processes and failures: see ``_OnToken``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import re
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import unquote

import pkcs11
from pkcs11 import Attribute, GCMParams, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11

from vault.crypto.envelope import encode_context
from vault.errors import DataLoss, FailedPrecondition, NotFound, Unavailable
from vault.keys.private_files import read_owner_only
from vault.keys.provider import MasterKeyInfo, MasterKeyState, WrappedKey

PIN_ENV = "PII_VAULT_PKCS11_PIN"
AUDIT_KEY_LABEL = b"pii-vault/audit-chain-key/v1"
IV_BYTES, TAG_BYTES = 12, 16
_AES_USES = MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT
_ED25519 = bytes.fromhex("06032b6570")  # EC_PARAMS: the DER OID 1.3.101.112 (RFC 8410)
_LOCKED = dict.fromkeys([Attribute.TOKEN, Attribute.PRIVATE, Attribute.SENSITIVE], True)
_LOCKED |= dict.fromkeys([Attribute.EXTRACTABLE, Attribute.MODIFIABLE], False)
_PIN_KEY = os.urandom(32)  # a PIN is compared and remembered only as an HMAC under this

log = logging.getLogger("vault.keys")
T = TypeVar("T")
P = ParamSpec("P")
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Pkcs11Uri:
    module_path: str
    token_label: str
    object_label: str
    pin_source: str | None  # "file:/path" or "env:NAME"; None: env PII_VAULT_PKCS11_PIN

    @property
    def kek_id(self) -> str:
        """``pkcs11:<token>/<object>``, hashed when over 64 characters."""
        kek_id = f"pkcs11:{self.token_label}/{self.object_label}"
        digest = hashlib.sha256(kek_id.encode()).hexdigest()
        return kek_id if len(kek_id) <= 64 else f"pkcs11:{digest[:57]}"

    def pin_path(self) -> str:
        source = self.pin_source or ""
        path = source.removeprefix("file:").removeprefix("//")  # file:///abs: no authority
        if not source.startswith("file:") or not path.startswith("/"):
            raise ValueError("pkcs11 URI: pin-source must be file:/absolute/path or env:NAME")
        return path

    def read_pin(self) -> str:
        """The PIN, read now; ``Unavailable`` names its source, never the PIN."""
        source = self.pin_source or f"env:{PIN_ENV}"
        if source.startswith("env:"):
            pin = os.environ.get(source[4:], "")
        else:
            path = self.pin_path()
            try:
                pin = read_owner_only(path, "PIN file").decode()
            except UnicodeDecodeError:
                raise Unavailable(f"PIN file {path} cannot be read (not UTF-8)") from None
            pin = pin.removesuffix("\n").removesuffix("\r")
        if not pin:
            raise Unavailable(f"no PKCS#11 PIN in {source} (unset or empty)")
        return pin


def parse_pkcs11_uri(uri: str) -> Pkcs11Uri:
    """Parse an RFC 7512 URI; a ``ValueError`` names the attribute, never a value."""
    if not uri.startswith("pkcs11:"):
        raise ValueError("a PKCS#11 key URI starts with 'pkcs11:'")
    path, _, query = uri[len("pkcs11:") :].partition("?")
    found: dict[str, str] = {}
    allowed = {"path": ("token", "object"), "query": ("module-path", "pin-source")}
    for part, sep, where in ((path, ";", "path"), (query, "&", "query")):
        for item in part.split(sep) if part else ():
            name, equals, raw = item.partition("=")
            if name == "pin-value":
                raise ValueError("pkcs11 URI: pin-value is refused, a PIN must never be in a URI")
            if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
                raise ValueError("pkcs11 URI: malformed attribute")
            if name not in allowed[where]:
                raise ValueError(f"pkcs11 URI: attribute {name} is not supported in the {where}")
            if name in found:
                raise ValueError(f"pkcs11 URI: attribute {name} appears twice")
            if not equals or re.search(r"%(?![0-9A-Fa-f]{2})", raw):
                raise ValueError(f"pkcs11 URI: attribute {name} has no value or bad %-encoding")
            try:
                found[name] = unquote(raw, errors="strict")
            except UnicodeDecodeError:
                raise ValueError(f"pkcs11 URI: attribute {name} is not UTF-8") from None
    for name in ("token", "object", "module-path"):
        if not found.get(name):
            raise ValueError(f"pkcs11 URI: attribute {name} is required")
    source = found.get("pin-source")
    parsed = Pkcs11Uri(found["module-path"], found["token"], found["object"], source)
    if source is not None and not re.fullmatch(r"env:[A-Za-z_][A-Za-z0-9_]*", source):
        parsed.pin_path()
    return parsed


class _Module:
    """A loaded PKCS#11 module; ``lock`` serialises every call into it."""

    def __init__(self, path: str) -> None:
        self.path, self.lock, self.generation = path, threading.RLock(), 0
        self.lib: Any = None


class _Token:
    """The one logged-in session this process keeps on a token, shared by all its users."""

    def __init__(self, module: _Module, label: str) -> None:
        self.module, self.label, self.digest = module, label, b""  # digest: of the login PIN
        self.session: Any = None
        self.refused: set[bytes] = set()  # digests of PINs the token refused
        self.generation, self.epoch = -1, 0  # the module's at login; +1 per session

    def live(self) -> bool:
        return self.session is not None and self.generation == self.module.generation

    def login(self, pin: str) -> None:
        digest, module = hmac.new(_PIN_KEY, pin.encode(), "sha256").digest(), self.module
        if digest in self.refused:
            raise Unavailable(f"PKCS#11 token {self.label!r} refused this PIN before")
        if module.lib is None and not os.path.exists(module.path):
            raise Unavailable(f"PKCS#11 module {module.path} does not exist")
        try:
            if module.lib is None:
                module.lib = pkcs11.lib(module.path)
            try:
                token = module.lib.get_token(token_label=self.label)
            except p11.PKCS11Error:  # not found: re-initialising rescans the slots
                module.generation += 1
                with suppress(p11.PKCS11Error):
                    module.lib.finalize()
                module.lib.initialize()
                token = module.lib.get_token(token_label=self.label)
            session = token.open(rw=True, user_pin=pin)
        except p11.NoSuchToken:
            raise Unavailable(f"PKCS#11 token {self.label!r} is not present") from None
        except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
            self.refused.add(digest)
            raise Unavailable(f"PKCS#11 token {self.label!r} refused the PIN") from None
        except (p11.PKCS11Error, OSError) as exc:
            where = f"module {module.path}" if module.lib is None else f"token {self.label!r}"
            raise Unavailable(f"PKCS#11 {where} cannot be used ({type(exc).__name__})") from None
        self.session, self.digest = session, digest
        self.generation, self.epoch = module.generation, self.epoch + 1

    def drop(self, error: Exception) -> None:
        session, self.session = self.session, None
        gone = isinstance(error, p11.SessionHandleInvalid | p11.SessionClosed)
        if session is not None and self.generation == self.module.generation and not gone:
            with suppress(p11.PKCS11Error):
                session.close()


_registry_lock = threading.Lock()
_modules: dict[str, _Module] = {}
_tokens: dict[tuple[str, str], _Token] = {}
C = TypeVar("C", bound="_OnToken")  # a user of a token


def _on_token(method: Callable[Concatenate[C, Any, P], T]) -> Callable[Concatenate[C, P], T]:
    """Run ``method`` under the module lock, passing the session as its first argument."""

    @functools.wraps(method)
    def run(self: C, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(lambda session: method(self, session, *args, **kwargs))

    return run


def _created(key: Any) -> str:
    return bytes(key[Attribute.ID]).decode("ascii", "replace")


class _OnToken:
    """Works on one token over the session this process shares on it.

    python-pkcs11's C_Initialize(NULL) promises the module no concurrent calls,
    so one lock per module serialises them; a login is the application's, so
    all users of a token share one session. ``_run`` reopens a failed session
    once; a token not found re-initialises the module (a slot rescan), so the
    vault unseals by itself; a refused PIN is never presented again (HSMs lock
    PINs). Each wrap asks whether version current+1 exists (~40 us on SoftHSM2).
    Concurrent rotations may both make ``kek.vN``: unwrap tries each, retire both.
    """

    def __init__(self, uri: str | Pkcs11Uri, clock: Clock = lambda: datetime.now(UTC)) -> None:
        self._uri = parse_pkcs11_uri(uri) if isinstance(uri, str) else uri
        self._clock, self._digest, self._epoch = clock, b"", -1
        module_path, label = self._uri.module_path, self._uri.token_label
        with _registry_lock:
            module = _modules.setdefault(module_path, _Module(module_path))
            self._token = _tokens.setdefault((module_path, label), _Token(module, label))

    def _forget(self) -> None:
        """Drop the object handles held: their session is gone, or an object vanished."""

    def _session(self) -> Any:
        token = self._token
        if not token.live():
            token.login(self._uri.read_pin())  # read again: a fixed PIN file unseals
            self._digest = token.digest
        if not self._digest:
            self._digest = hmac.new(_PIN_KEY, self._uri.read_pin().encode(), "sha256").digest()
        if not hmac.compare_digest(self._digest, token.digest):
            raise Unavailable(f"PKCS#11 token {token.label!r} is open here under another PIN")
        return token.session

    def _run(self, op: Callable[[Any], T]) -> T:
        token = self._token
        with token.module.lock:
            failure = ""  # a name only: a live exception pins python-pkcs11's session lock
            for _attempt in range(2):
                session = self._session()
                if token.epoch != self._epoch:
                    self._forget()
                    self._epoch = token.epoch
                try:
                    return op(session)
                except (p11.ObjectHandleInvalid, p11.KeyHandleInvalid) as exc:
                    self._forget()  # destroyed, perhaps by another process: look it up again
                    failure = type(exc).__name__
                except p11.PKCS11Error as exc:
                    failure = type(exc).__name__
                    log.warning("PKCS#11 token %r failed (%s); reopening", token.label, failure)
                    token.drop(exc)
            raise Unavailable(f"PKCS#11 token {token.label!r} failed ({failure})")

    def _find(self, session: Any, suffix: str, cls: ObjectClass = ObjectClass.SECRET_KEY) -> Any:
        """The objects labelled ``<object><suffix>``, earliest CKA_ID first."""
        label = self._uri.object_label + suffix
        found = list(session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: label}))
        return sorted(found, key=_created)

    def _versions(self, session: Any) -> dict[int, list[Any]]:
        """Every version's key objects: the AES keys labelled ``<object>.v<n>``."""
        pattern = re.compile(re.escape(self._uri.object_label) + r"\.v([1-9][0-9]{0,8})")
        found: dict[int, list[Any]] = {}
        template = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES}
        for key in session.get_objects(template):
            if match := pattern.fullmatch(key[Attribute.LABEL]):
                found.setdefault(int(match[1]), []).append(key)
        return {version: sorted(keys, key=_created) for version, keys in found.items()}

    def _new_secret(self, session: Any, kind: KeyType, suffix: str, uses: MechanismFlag) -> None:
        label, made = self._uri.object_label + suffix, self._clock().isoformat().encode()
        session.generate_key(kind, 256, label=label, id=made, capabilities=uses, template=_LOCKED)

    @_on_token
    def _create_master_key(self, session: Any) -> None:
        if not self._versions(session):
            self._new_secret(session, KeyType.AES, ".v1", _AES_USES)
        if not self._find(session, ".audit"):
            self._new_secret(session, KeyType.GENERIC_SECRET, ".audit", MechanismFlag.SIGN)

    @_on_token
    def _create_signing_key(self, session: Any) -> None:
        if not self._find(session, "", ObjectClass.PRIVATE_KEY):
            made, public = self._clock().isoformat().encode(), {Attribute.EC_PARAMS: _ED25519}
            kw = {"label": self._uri.object_label, "id": made, "public_template": public}
            session.generate_keypair(KeyType.EC_EDWARDS, store=True, private_template=_LOCKED, **kw)


def create_master_key(uri: str | Pkcs11Uri, *, clock: Clock = lambda: datetime.now(UTC)) -> None:
    """For ``pii-vault init``: make version 1 and the audit key unless they exist (idempotent)."""
    _OnToken(uri, clock)._create_master_key()


def create_signing_key(uri: str | Pkcs11Uri, *, clock: Clock = lambda: datetime.now(UTC)) -> None:
    """Make the Ed25519 pair labelled ``object`` in the token unless it exists (idempotent)."""
    _OnToken(uri, clock)._create_signing_key()


class Pkcs11KeyProvider(_OnToken):
    """Master keys in a PKCS#11 token; wrap and unwrap run inside it."""

    def __init__(self, uri: str | Pkcs11Uri, *, clock: Clock = lambda: datetime.now(UTC)) -> None:
        super().__init__(uri, clock)
        self.kek_id, self._current = self._uri.kek_id, 0
        self._keys: dict[int, list[Any]] = {}  # key objects by version, of the current session
        self._audit: bytes | None = None
        self.check()

    def _forget(self) -> None:
        self._keys, self._current = {}, 0

    def _latest(self, session: Any, *, rescan: bool = False) -> int:
        """The highest version: as known, after one look for a newer one made elsewhere."""
        if rescan or not self._current:
            self._keys = self._versions(session)
            self._current = max(self._keys, default=0)
        if not self._current:
            token, label = self._uri.token_label, self._uri.object_label
            raise Unavailable(f"PKCS#11 token {token!r} holds no master key {label!r}")
        while newer := self._find(session, f".v{self._current + 1}"):
            self._current += 1
            self._keys[self._current] = newer
        return self._current

    def _gcm(self, iv: bytes, context: bytes, version: int) -> dict[str, Any]:
        aad = encode_context(b"pii-vault/kek", self.kek_id, str(version)) + context
        return {"mechanism": Mechanism.AES_GCM, "mechanism_param": GCMParams(iv, aad, 128)}

    @_on_token
    def wrap(self, session: Any, key: bytes, context: bytes) -> WrappedKey:
        version, iv = self._latest(session), os.urandom(IV_BYTES)
        body = self._keys[version][0].encrypt(key, **self._gcm(iv, context, version))
        return WrappedKey(self.kek_id, version, iv + bytes(body))

    @_on_token
    def unwrap(self, session: Any, wrapped: WrappedKey, context: bytes) -> bytes:
        version, blob = wrapped.kek_version, wrapped.ciphertext
        if wrapped.kek_id != self.kek_id:
            raise Unavailable("the key was wrapped by another master key")
        keys = self._keys.get(version) or self._find(session, f".v{version}")
        if not keys:
            state = "retired" if 0 < version <= self._latest(session) else "unknown"
            raise Unavailable(f"master key version {version} is {state}")
        self._keys[version], self._current = keys, max(self._current, version)
        gcm = self._gcm(blob[:IV_BYTES], context, version)
        for key in keys if len(blob) >= IV_BYTES + TAG_BYTES else ():
            with suppress(p11.GeneralError, p11.EncryptedDataInvalid, p11.DataInvalid):
                return bytes(key.decrypt(blob[IV_BYTES:], **gcm))  # a bad tag: GeneralError
        keys[0][Attribute.CLASS]  # the token still answers: the tag was wrong, not the token
        raise DataLoss("a wrapped subject key failed authentication")

    @_on_token
    def versions(self, session: Any) -> list[MasterKeyInfo]:
        return [self._info(n) for n in range(1, self._latest(session, rescan=True) + 1)]

    def _info(self, version: int) -> MasterKeyInfo:
        if keys := self._keys.get(version):
            return MasterKeyInfo(self.kek_id, version, MasterKeyState.ACTIVE, _created(keys[0]))
        return MasterKeyInfo(self.kek_id, version, MasterKeyState.RETIRED, "")

    @_on_token
    def current_version(self, session: Any) -> int:
        return self._latest(session)

    @_on_token
    def rotate(self, session: Any) -> MasterKeyInfo:
        """Make version max+1 in the token; it wraps from now on, older ones still unwrap."""
        version = self._latest(session, rescan=True) + 1
        self._new_secret(session, KeyType.AES, f".v{version}", _AES_USES)
        self._keys[version], self._current = self._find(session, f".v{version}"), version
        return self._info(version)

    @_on_token
    def retire(self, session: Any, version: int) -> MasterKeyInfo:
        """Destroy ``version``'s key objects (C_DestroyObject); it never unwraps again."""
        if version == self._latest(session, rescan=True):
            raise FailedPrecondition(f"master key version {version} is current; rotate first")
        if not 0 < version < self._current:
            raise NotFound(f"master key version {version} does not exist")
        for key in self._keys.pop(version, []):
            key.destroy()
        return self._info(version)  # retired, its creation time gone with the object

    @_on_token
    def check(self, session: Any) -> None:
        """Raise ``Unavailable`` naming why unless the current master key answers now."""
        session.generate_random(64)  # not a search first: python-pkcs11 garbles a failed one
        current = self._latest(session)  # (before self._keys: it may replace the dict)
        self._keys[current][0][Attribute.CLASS]

    def audit_key(self) -> bytes:
        """HMAC-SHA256 of ``AUDIT_KEY_LABEL`` under ``<object>.audit``, made in the token."""
        if self._audit is None:
            self._audit = self._audit_mac()
        return self._audit

    @_on_token
    def _audit_mac(self, session: Any) -> bytes:
        if not (keys := self._find(session, ".audit")):
            token, label = self._uri.token_label, self._uri.object_label
            raise Unavailable(f"PKCS#11 token {token!r} holds no audit key {label}.audit")
        return bytes(keys[0].sign(AUDIT_KEY_LABEL, mechanism=Mechanism.SHA256_HMAC))

    def adopts_unkeyed_audit_chain(self) -> bool:
        return False  # an HSM installation never had an unkeyed chain

    def close_unkeyed_audit_chain(self) -> None:
        return None


class Pkcs11Signer(_OnToken):
    """An Ed25519 key in the token (see ``create_signing_key``); CKM_EDDSA signs inside it."""

    def __init__(self, uri: str | Pkcs11Uri) -> None:
        super().__init__(uri)
        point = self._public_point()
        self._public = point[2:] if point[:2] == b"\x04\x20" else point  # a DER OCTET STRING
        if len(self._public) != 32:
            raise Unavailable(f"signing key {self._uri.object_label!r} is not Ed25519")

    def _key(self, session: Any, cls: ObjectClass) -> Any:
        if not (keys := self._find(session, "", cls)):
            raise Unavailable(f"the token holds no signing key {self._uri.object_label!r}")
        return keys[0]

    @_on_token
    def _public_point(self, session: Any) -> bytes:
        return bytes(self._key(session, ObjectClass.PUBLIC_KEY)[Attribute.EC_POINT])

    @_on_token
    def sign(self, session: Any, data: bytes) -> bytes:
        """A 64-byte Ed25519 signature of ``data``, made in the token."""
        key = self._key(session, ObjectClass.PRIVATE_KEY)
        return bytes(key.sign(data, mechanism=Mechanism.EDDSA))

    def public_key_bytes(self) -> bytes:
        """The raw 32-byte public key."""
        return self._public
