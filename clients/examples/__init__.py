"""Example callers built on pii-vault-client alone: registration, checkout, deletion worker.

Each runs as a script in a venv that holds only ``pii-vault-client`` (the deletion
worker also wants its ``receipts`` extra); ``tests/client/test_fresh_venv.py`` runs
all three there against a real server.
"""
