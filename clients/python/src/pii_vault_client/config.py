"""What every call gets by default: deadlines, the retry policy, keepalive, load balancing.

One table (``METHODS``) says, per RPC, its default deadline and whether it may be
retried:

- ``READ``: no side effect but an audit line; retried on ``UNAVAILABLE`` by gRPC
  itself, through the channel's service config (``retryPolicy``);
- ``KEYED``: safe to repeat only when the request carries its key
  (``PutField.idempotency_key``, ``ShredSubject.request_id``: the vault answers a
  repeat with the first result); retried on ``UNAVAILABLE`` by the client, with the
  same policy, when the key is set, and never when it is not;
- ``WRITE``: never retried (a second ``DeleteField`` or ``RotateMasterKey`` is a
  second act).

Only ``UNAVAILABLE`` is retried: the vault answers it only when nothing was
written (sealed, draining, database or key provider down), and gRPC answers it
when the connection fails. ``RESOURCE_EXHAUSTED`` carries a ``RetryInfo`` delay
for the caller to honour (``VaultError.retry_after``); it is not retried here.
"""

from __future__ import annotations

import enum
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SERVICE_PACKAGE = "vault.v1"


class Kind(enum.Enum):
    READ = "read"
    KEYED = "keyed"
    WRITE = "write"


@dataclass(frozen=True)
class Method:
    service: str
    name: str
    kind: Kind
    #: Default deadline in seconds; ``None``: none (a stream that runs as long as the job).
    deadline: float | None

    @property
    def path(self) -> str:
        return f"/{SERVICE_PACKAGE}.{self.service}/{self.name}"


_VAULT, _KEYS, _AUDIT = "VaultService", "KeyAdminService", "AuditService"
METHODS: Mapping[str, Method] = {
    m.name: m
    for m in (
        Method(_VAULT, "PutField", Kind.KEYED, 10.0),
        Method(_VAULT, "GetField", Kind.READ, 5.0),
        Method(_VAULT, "BatchGetFields", Kind.READ, 10.0),
        Method(_VAULT, "ListFields", Kind.READ, 5.0),
        Method(_VAULT, "Detokenize", Kind.READ, 5.0),
        Method(_VAULT, "FindSubjects", Kind.READ, 5.0),
        Method(_VAULT, "DeleteField", Kind.WRITE, 10.0),
        Method(_VAULT, "ShredSubject", Kind.KEYED, 30.0),
        Method(_VAULT, "ExportSubject", Kind.READ, 30.0),
        Method(_VAULT, "SetLegalHold", Kind.WRITE, 10.0),
        Method(_VAULT, "SetConsent", Kind.WRITE, 10.0),
        Method(_KEYS, "RotateMasterKey", Kind.WRITE, 30.0),
        Method(_KEYS, "RewrapKeys", Kind.WRITE, None),
        Method(_KEYS, "GetKeyStatus", Kind.READ, 10.0),
        Method(_AUDIT, "ListEvents", Kind.READ, 30.0),
        Method(_AUDIT, "VerifyChain", Kind.READ, 120.0),
    )
}

#: Default deadline (seconds) per RPC name; ``VaultClient(deadlines={...})`` overrides some.
DEFAULT_DEADLINES: Mapping[str, float | None] = {
    name: method.deadline for name, method in METHODS.items()
}


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, as gRPC's ``retryPolicy`` does it.

    ``max_attempts`` counts the first call (gRPC caps it at 5). The pause before
    retry ``n`` is uniform in ``[0, min(max_backoff, initial_backoff * multiplier**(n-1))]``.
    """

    max_attempts: int = 4
    initial_backoff: float = 0.2
    max_backoff: float = 2.0
    backoff_multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not 2 <= self.max_attempts <= 5:
            raise ValueError("max_attempts must be 2 to 5 (gRPC's limit); use retry=None for none")
        if self.initial_backoff <= 0 or self.max_backoff < self.initial_backoff:
            raise ValueError("need 0 < initial_backoff <= max_backoff")
        if self.backoff_multiplier < 1:
            raise ValueError("backoff_multiplier must be at least 1")

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """The pause before retry number ``retry`` (1 for the first retry)."""
        growth = self.backoff_multiplier ** (retry - 1)
        ceiling = min(self.max_backoff, self.initial_backoff * growth)
        return (rng or random).uniform(0.0, ceiling)

    def method_config(self) -> dict[str, Any]:
        """The ``retryPolicy`` block of a gRPC service config."""
        return {
            "maxAttempts": self.max_attempts,
            "initialBackoff": _seconds(self.initial_backoff),
            "maxBackoff": _seconds(self.max_backoff),
            "backoffMultiplier": self.backoff_multiplier,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class Keepalive:
    """HTTP/2 pings on an idle connection, so a dead peer is noticed in ``time + timeout``.

    The vault accepts client pings down to every 10 s (``PII_VAULT_KEEPALIVE``
    and OPERATIONS.md); pinging more often gets the connection closed.
    """

    time: float = 30.0
    timeout: float = 10.0
    permit_without_calls: bool = False

    def options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.keepalive_time_ms", round(self.time * 1000)),
            ("grpc.keepalive_timeout_ms", round(self.timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", int(self.permit_without_calls)),
            ("grpc.http2.max_pings_without_data", 0),
        ]


DEFAULT_KEEPALIVE = Keepalive()


def service_config(retry: RetryPolicy | None, *, round_robin: bool = False) -> str:
    """The channel's service config: the retry policy on every ``READ`` method; with
    ``round_robin``, that policy and client-side health checking."""
    config: dict[str, Any] = {}
    if round_robin:
        config["loadBalancingConfig"] = [{"round_robin": {}}]
        # Client-side health checking (Health/Watch): a replica that says NOT_SERVING
        # (sealed, or draining after SIGTERM) leaves the rotation.
        config["healthCheckConfig"] = {"serviceName": ""}
    if retry is not None:
        reads = [
            {"service": f"{SERVICE_PACKAGE}.{m.service}", "method": m.name}
            for m in METHODS.values()
            if m.kind is Kind.READ
        ]
        config["methodConfig"] = [{"name": reads, "retryPolicy": retry.method_config()}]
    return json.dumps(config, sort_keys=True)


def channel_options(
    *,
    retry: RetryPolicy | None,
    keepalive: Keepalive | None,
    round_robin: bool,
    extra: list[tuple[str, Any]] | tuple[tuple[str, Any], ...] = (),
) -> list[tuple[str, Any]]:
    """gRPC channel arguments; ``extra`` wins over ours, key by key."""
    options: dict[str, Any] = {
        "grpc.service_config": service_config(retry, round_robin=round_robin),
        "grpc.enable_retries": int(retry is not None),
    }
    if keepalive is not None:
        options.update(keepalive.options())
    options.update(dict(extra))
    return list(options.items())


def _seconds(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".") + "s"
