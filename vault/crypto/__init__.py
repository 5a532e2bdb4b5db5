"""Pure cryptography: bytes in, bytes out.

This package imports nothing else of the vault and does no I/O; randomness
and time are injected so that tests are deterministic. Every primitive comes
from ``cryptography``.
"""
