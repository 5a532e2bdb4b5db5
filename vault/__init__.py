"""pii-vault: an encrypted personal-data vault served over gRPC."""

__version__ = "0.1.0"
