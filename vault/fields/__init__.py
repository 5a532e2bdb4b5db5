"""fields layer."""
