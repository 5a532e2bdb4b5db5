"""bootstrap layer."""
