"""The canonical byte form of a normal form: the plaintext that gets encrypted.

Compact, key-sorted JSON of the value's dataclass fields, so equal normal forms
always give equal bytes. ``CanonicalReader`` is the strict way back: bytes that
came out of an authenticated decryption but do not parse as the expected shape
mean corruption or a schema bug, reported as ``DataLoss`` without echoing any
of the content.
"""

from __future__ import annotations

import dataclasses
import json

from vault.errors import DataLoss
from vault.fields.base import FieldType, FieldValue


def encode_canonical(value: FieldValue) -> bytes:
    return json.dumps(
        dataclasses.asdict(value), separators=(",", ":"), sort_keys=True, ensure_ascii=False
    ).encode()


class CanonicalReader:
    """Typed access to the members of one decoded canonical object."""

    def __init__(self, field_type: FieldType, canonical: bytes) -> None:
        self._field_type = field_type
        try:
            obj = json.loads(canonical.decode("utf-8"))
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
            raise self._corrupt() from None
        if not isinstance(obj, dict):
            raise self._corrupt()
        self._obj: dict[str, object] = obj

    def text(self, key: str) -> str:
        item = self._obj.get(key)
        if not isinstance(item, str):
            raise self._corrupt()
        return item

    def integer(self, key: str) -> int:
        item = self._obj.get(key)
        if not isinstance(item, int) or isinstance(item, bool):
            raise self._corrupt()
        return item

    def texts(self, key: str) -> tuple[str, ...]:
        item = self._obj.get(key)
        if not isinstance(item, list) or not all(isinstance(x, str) for x in item):
            raise self._corrupt()
        return tuple(str(x) for x in item)

    def _corrupt(self) -> DataLoss:
        return DataLoss(f"stored {self._field_type.value} value is malformed")
