"""Example callers of the vault (registration, checkout), built on vault.client."""
