"""Policy layer: the deny-by-default access policy (``policy.toml``)."""

from vault.policy.policy import (
    DEFAULT_POLICY_TOML,
    Action,
    Decision,
    FindAnswers,
    Policy,
    PolicyError,
    View,
)

__all__ = [
    "DEFAULT_POLICY_TOML",
    "Action",
    "Decision",
    "FindAnswers",
    "Policy",
    "PolicyError",
    "View",
]
