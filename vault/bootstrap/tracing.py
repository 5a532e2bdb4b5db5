"""OpenTelemetry tracing, with the optional extra ``pip install 'pii-vault[tracing]'``.

Layer: ``bootstrap`` (wiring). With ``PII_VAULT_TRACING=1`` the server makes:

- a server span per RPC (``opentelemetry-instrumentation-grpc``), carrying
  the RPC name and status and continuing the caller's trace;
- a span per database statement (``opentelemetry-instrumentation-sqlalchemy``)
  on the data and key stores: the SQL text with its placeholders, never the
  bound values (the masked-read hot path reads one row on a raw driver
  connection and is covered by its RPC span alone);
- a span per key provider call (``key_provider.wrap`` / ``key_provider.unwrap``):
  a cold read's unwrap in an HSM or Transit shows up as its own span.

Spans go to the process's tracer provider: run the server under
``opentelemetry-instrument`` (or configure the SDK) with the exporter of your
choice. No attribute carries a subject id, a value or a token; the test
checks every attribute of a traced run.
"""

from __future__ import annotations

from typing import Any

import grpc

from vault.keys.hierarchy import KeyHierarchy
from vault.keys.provider import DelegatingKeyProvider, KeyProvider, WrappedKey
from vault.storage.database import Store


class TracedProvider(DelegatingKeyProvider):
    """The key hierarchy's provider, with a span around each wrap and unwrap."""

    def __init__(self, inner: KeyProvider, tracer: Any) -> None:
        super().__init__(inner)
        self._tracer = tracer

    def wrap(self, key: bytes, context: bytes) -> WrappedKey:
        with self._tracer.start_as_current_span("key_provider.wrap"):
            return self._inner.wrap(key, context)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        with self._tracer.start_as_current_span("key_provider.unwrap") as span:
            span.set_attribute("vault.kek_version", wrapped.kek_version)
            return self._inner.unwrap(wrapped, context)


def install_tracing(
    store: Store, keys: KeyHierarchy, tracer_provider: Any = None
) -> list[grpc.ServerInterceptor]:
    """Instrument the store's engines and the key provider; returns the server interceptor."""
    from opentelemetry import trace
    from opentelemetry.instrumentation.grpc import server_interceptor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    provider = tracer_provider or trace.get_tracer_provider()
    SQLAlchemyInstrumentor().instrument(
        engines=list(store.engines()),
        tracer_provider=provider,
        enable_commenter=False,
        # It declares sqlalchemy < 2.1; the engine events it hooks are the same in 2.1.
        skip_dep_check=True,
    )
    keys.provider = TracedProvider(keys.provider, provider.get_tracer("vault.keys"))
    interceptor: grpc.ServerInterceptor = server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=provider
    )
    return [interceptor]
