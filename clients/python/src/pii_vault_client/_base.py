"""What the sync and the asyncio client share: settings, deadlines, the retry decision."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from pii_vault_client.config import (
    DEFAULT_DEADLINES,
    DEFAULT_KEEPALIVE,
    DEFAULT_RETRY,
    METHODS,
    Keepalive,
    Kind,
    RetryPolicy,
    channel_options,
)
from pii_vault_client.credentials import Credentials

if TYPE_CHECKING:
    from pii_vault_client.errors import VaultError

DEFAULT_TARGET = "localhost:50051"


class Default(enum.Enum):
    """``timeout=DEFAULT``: the method's default deadline (``None`` means no deadline)."""

    DEFAULT = "default"


DEFAULT = Default.DEFAULT
Timeout = float | None | Default
#: ``on_retry(method, error, attempt, pause)``: the call failed with ``error`` on
#: attempt ``attempt`` (from 1) and is sent again after ``pause`` seconds.
RetryHook = Callable[[str, "VaultError", int, float], None]


class Settings:
    """Deadlines, retry policy and channel options of one client."""

    def __init__(
        self,
        *,
        deadlines: Mapping[str, float | None] | None,
        retry: RetryPolicy | None,
        keepalive: Keepalive | None,
        round_robin: bool,
        options: Sequence[tuple[str, Any]],
    ) -> None:
        unknown = set(deadlines or {}) - set(METHODS)
        if unknown:
            raise ValueError(f"no such RPC: {', '.join(sorted(unknown))}")
        self.deadlines: dict[str, float | None] = {**DEFAULT_DEADLINES, **(deadlines or {})}
        self.retry = retry
        self.options = channel_options(
            retry=retry, keepalive=keepalive, round_robin=round_robin, extra=tuple(options)
        )

    def deadline(self, method: str, timeout: Timeout) -> float | None:
        """The call's absolute deadline on the monotonic clock, or ``None``."""
        seconds = self.deadlines[method] if timeout is DEFAULT else timeout
        assert not isinstance(seconds, Default)
        return None if seconds is None else time.monotonic() + seconds

    def attempts(self, method: str, key: str) -> int:
        """How many times the client itself may send this call.

        ``READ`` calls are retried by gRPC (service config), so the client sends
        them once; ``KEYED`` ones up to the policy's attempts when ``key`` is set.
        """
        if self.retry is None or METHODS[method].kind is not Kind.KEYED or not key:
            return 1
        return self.retry.max_attempts

    def pause_before(self, retry: int, deadline: float | None) -> float | None:
        """The backoff before retry ``retry``, or ``None`` when it would pass the deadline."""
        assert self.retry is not None
        pause = self.retry.backoff(retry)
        if deadline is not None and time.monotonic() + pause >= deadline:
            return None
        return pause


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def retryable(error: grpc.RpcError) -> bool:
    return bool(error.code() is grpc.StatusCode.UNAVAILABLE)


__all__ = ["DEFAULT", "DEFAULT_KEEPALIVE", "DEFAULT_RETRY", "DEFAULT_TARGET", "Credentials"]
