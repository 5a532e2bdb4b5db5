"""pii-vault-client: the generated vault.v1 stubs (``pii_vault_client.v1``) and a typed client."""
