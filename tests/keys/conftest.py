"""Fixtures for the key provider tests: the process's throwaway SoftHSM2 (``softhsm.py``)."""

from openbao import openbao, tcp_proxy, transit_key, transit_uri
from softhsm import fresh_token, object_label, pkcs11_uri, softhsm

__all__ = ["fresh_token", "object_label", "pkcs11_uri", "softhsm"]
__all__ += ["openbao", "tcp_proxy", "transit_key", "transit_uri"]  # OpenBao (openbao.py)
