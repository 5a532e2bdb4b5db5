"""Who a client certificate names: the ``[identity]`` section of ``policy.toml``.

A caller's name is all the policy goes by, so a certificate must name
exactly one. By default that is its subject's common name; a service mesh
that issues SPIFFE-style certificates (an empty subject and a URI SAN such as
``spiffe://shop.example/ns/prod/sa/checkout``) maps its URIs to caller names
instead, by an exact table or one prefix. A certificate that names no caller,
or more than one, identifies nobody: the call is refused UNAUTHENTICATED and
audited, and never runs as the first name or as ``""``.

```toml
[identity]
source = "uri_san"                                  # or "cn" (the default)
uri_prefix = "spiffe://shop.example/ns/prod/sa/"    # .../sa/checkout -> checkout
uris = { "spiffe://shop.example/ns/ops/sa/dpo" = "privacy-desk" }
```
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class IdentitySource(enum.StrEnum):
    CN = "cn"
    URI_SAN = "uri_san"


# What a name taken from the tail of a URI may look like: the dev PKI's caller names.
_CALLER_TAIL = re.compile(r"[a-z][a-z0-9-]{0,62}")


@dataclass(frozen=True)
class IdentityRules:
    """How a verified client certificate maps to one caller name.

    With ``source`` ``uri_san``: a URI SAN equal to a key of ``uris`` names
    that caller; one that starts with ``uri_prefix`` names the rest of the
    URI, if that is a plain caller name (lower-case letters, digits, ``-``).
    URIs are compared exactly, byte for byte.
    """

    source: IdentitySource = IdentitySource.CN
    uris: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    uri_prefix: str = ""

    def caller_for_uri(self, uri: str) -> str | None:
        """The caller this URI SAN names, or None if it names none."""
        named = self.uris.get(uri)
        if named is not None:
            return named
        if self.uri_prefix and uri.startswith(self.uri_prefix):
            tail = uri[len(self.uri_prefix) :]
            if _CALLER_TAIL.fullmatch(tail):
                return tail
        return None

    def describe(self) -> str:
        if self.source is IdentitySource.CN:
            return "caller = the client certificate's one common name"
        parts = [f"{len(self.uris)} mapped URIs"]
        if self.uri_prefix:
            parts.append(f"prefix {self.uri_prefix}")
        return "caller = the client certificate's one mapped URI SAN (" + ", ".join(parts) + ")"


CN_IDENTITY = IdentityRules()
