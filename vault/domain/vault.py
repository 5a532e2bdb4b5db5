"""The vault's use cases: put, read, list, detokenize, find and delete fields.

Each public method is one use case: it validates, asks the policy, runs one
transaction and answers with domain objects. Invariants kept here:

- plaintext is encrypted before it reaches storage and decrypted only for a
  granted ``plaintext`` view, a detokenization or an export;
- every reveal and every denial is in the audit log before the answer leaves;
- a ciphertext or data key that fails authentication, or belongs to another
  row, raises ``DataLoss``: never a wrong value.
"""

from __future__ import annotations

from vault.domain.export import SubjectExport
from vault.domain.field_access import utc_now as utc_now
from vault.domain.reads import FieldReads
from vault.domain.writes import FieldWrites


class Vault(FieldWrites, FieldReads, SubjectExport):
    """The domain service behind every transport: the use cases of its parts, one state.

    Built by the composition root (``vault.bootstrap.app.build_app``) with every
    collaborator it needs, hot reads included; see ``FieldAccess`` for them.
    """
