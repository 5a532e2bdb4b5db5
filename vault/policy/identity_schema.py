"""The ``[identity]`` section of ``policy.toml``, declared: where a caller's name comes from.

A typo here must not quietly hand an identity to the wrong caller, so a
mapped URI must be an absolute URI (and, the document checks, name a caller
of ``[callers]``); ``source = "uri_san"`` needs at least one way to map
(``uris`` or ``uri_prefix``); and the mapping keys are refused with
``source = "cn"``, where they would do nothing.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Annotated, Final

from pydantic import AfterValidator, Field, model_validator

from vault.policy.identity import IdentityRules, IdentitySource
from vault.toml_schema import TomlTable, expecting, member_of, refuse

__all__ = ["NOT_A_CALLER", "IdentityTable"]

_SCHEME: Final = re.compile(r"[a-z][a-z0-9+.-]*")
_PREFIX_EXPECTED: Final = (
    "expected an absolute URI ending in '/', such as spiffe://domain/ns/prod/sa/"
)
NOT_A_CALLER: Final = "expected the name of a caller in [callers]"


def _is_uri(text: str) -> bool:
    scheme, sep, rest = text.partition("://")
    return bool(sep and _SCHEME.fullmatch(scheme) and rest and text.isprintable()) and not any(
        c.isspace() for c in text
    )


def _uri(text: str) -> str:
    if not _is_uri(text):
        raise refuse("expected an absolute URI such as spiffe://domain/path")
    return text


def _uri_prefix(text: str) -> str:
    if text and not (_is_uri(text) and text.endswith("/")):
        raise refuse(_PREFIX_EXPECTED)
    return text


class IdentityTable(TomlTable):
    """``[identity]``: ``source``, and for ``uri_san`` the exact ``uris`` and one ``uri_prefix``."""

    source: Annotated[IdentitySource, member_of(IdentitySource, "source")] = IdentitySource.CN
    uris: dict[Annotated[str, AfterValidator(_uri)], Annotated[str, expecting(NOT_A_CALLER)]] = (
        Field(default_factory=dict)
    )
    uri_prefix: Annotated[str, expecting(_PREFIX_EXPECTED), AfterValidator(_uri_prefix)] = ""

    @model_validator(mode="after")
    def _one_way_to_map(self) -> IdentityTable:
        if self.source is IdentitySource.CN and (self.uris or self.uri_prefix):
            raise refuse('uris and uri_prefix need source = "uri_san"')
        if self.source is IdentitySource.URI_SAN and not (self.uris or self.uri_prefix):
            raise refuse('source = "uri_san" needs uris or uri_prefix')
        return self

    def rules(self) -> IdentityRules:
        return IdentityRules(self.source, MappingProxyType(dict(self.uris)), self.uri_prefix)
