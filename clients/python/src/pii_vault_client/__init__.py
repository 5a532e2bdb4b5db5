"""pii-vault-client: a typed client for the pii-vault gRPC service, sync and asyncio.

``VaultClient`` (sync) and ``AsyncVaultClient`` (``grpc.aio``) have the same surface;
``pii_vault_client.v1`` holds the generated ``vault.v1`` stubs and messages;
``pii_vault_client.errors`` the typed exceptions; ``pii_vault_client.config`` the
default deadlines, the retry policy and keepalive.
"""

from pii_vault_client._base import DEFAULT, DEFAULT_TARGET
from pii_vault_client.aio import AsyncVaultClient
from pii_vault_client.client import VaultClient
from pii_vault_client.config import (
    DEFAULT_DEADLINES,
    DEFAULT_KEEPALIVE,
    DEFAULT_RETRY,
    Keepalive,
    RetryPolicy,
)
from pii_vault_client.credentials import Credentials
from pii_vault_client.errors import (
    AlreadyExists,
    Cancelled,
    ConcurrentChange,
    ConsentRequired,
    DataLoss,
    DeadlineExceeded,
    Draining,
    FailedPrecondition,
    FieldExists,
    FieldViolation,
    IdempotencyMismatch,
    IdempotencyStale,
    Internal,
    InvalidArgument,
    LegalHold,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    PolicyDenied,
    PurposeRequired,
    RateLimited,
    ResourceExhausted,
    Sealed,
    SubjectShredded,
    Tampered,
    Unauthenticated,
    Unavailable,
    VaultError,
    error_info,
    error_reason,
    from_rpc_error,
    retry_delay,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT",
    "DEFAULT_DEADLINES",
    "DEFAULT_KEEPALIVE",
    "DEFAULT_RETRY",
    "DEFAULT_TARGET",
    "AlreadyExists",
    "AsyncVaultClient",
    "Cancelled",
    "ConcurrentChange",
    "ConsentRequired",
    "Credentials",
    "DataLoss",
    "DeadlineExceeded",
    "Draining",
    "FailedPrecondition",
    "FieldExists",
    "FieldViolation",
    "IdempotencyMismatch",
    "IdempotencyStale",
    "Internal",
    "InvalidArgument",
    "Keepalive",
    "LegalHold",
    "LimitExceeded",
    "NotFound",
    "PermissionDenied",
    "PolicyDenied",
    "PurposeRequired",
    "RateLimited",
    "ResourceExhausted",
    "RetryPolicy",
    "Sealed",
    "SubjectShredded",
    "Tampered",
    "Unauthenticated",
    "Unavailable",
    "VaultClient",
    "VaultError",
    "error_info",
    "error_reason",
    "from_rpc_error",
    "retry_delay",
]
