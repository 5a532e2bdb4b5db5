"""Prometheus metrics on a plain-HTTP port of their own (off unless ``PII_VAULT_METRICS_LISTEN``).

Layer: ``bootstrap`` (wiring: it reaches into the app's parts to read
gauges and installs a gRPC interceptor). What is exported, and what never is:

- ``vault_rpc_total{method, code}``, ``vault_rpc_seconds{method}`` (histogram),
  ``vault_rpc_in_flight``: from a server interceptor. ``method`` is the RPC
  name, ``code`` the gRPC status name.
- ``vault_audit_events_total{action, outcome, code}``: every chained audit
  event, counted as it is chained: shreds, reveals, denials, rate-limit
  refusals (``code="RESOURCE_EXHAUSTED"``), canary reads (``outcome="canary"``).
- ``vault_audit_buffered_events``: masked-read events waiting for the flusher;
  ``vault_audit_flush_seconds`` and ``vault_audit_flushed_events_total``: each
  batch the flusher writes, its time and size.
- ``vault_key_provider_calls_total{operation, outcome}`` and
  ``vault_key_provider_seconds{operation}``: wrap and unwrap of subject keys by
  the key hierarchy (a cold read is one unwrap; a warm read none).
- ``vault_key_cache_entries{cache}``: unwrapped keys held (subject, data), and
  ``vault_key_cache_misses_total{cache}``: lookups that found no usable key
  (counted on the miss path only; hits are not counted, so that a warm read
  pays nothing: hit rate ~ 1 - data misses / masked reads).
- ``vault_sealed``: 1 while the vault is sealed or draining.

No label or value ever carries a subject id, a field value, a caller's
certificate name or a token: labels come from fixed vocabularies (RPC
names, status names, audit actions and outcomes), which a test checks over
a full end-to-end run. The registry is the app's own, not the process-wide
default, so two apps in one process (tests) never share counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vault.audit.log import AuditLog
from vault.audit.records import AuditRecord
from vault.keys.hierarchy import KeyHierarchy
from vault.keys.provider import DelegatingKeyProvider, KeyProvider, WrappedKey


class Metrics:
    """The metrics of one server process, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rpcs = Counter("vault_rpc", "RPCs answered", ["method", "code"], registry=r)
        self.rpc_seconds = Histogram(
            "vault_rpc_seconds", "RPC latency in the server", ["method"], registry=r
        )
        self.in_flight = Gauge("vault_rpc_in_flight", "RPCs being served", registry=r)
        self.audit_events = Counter(
            "vault_audit_events", "audit events chained", ["action", "outcome", "code"], registry=r
        )
        self.provider_calls = Counter(
            "vault_key_provider_calls", "key provider calls", ["operation", "outcome"], registry=r
        )
        self.audit_flush_seconds = Histogram(
            "vault_audit_flush_seconds", "writing one batch of buffered audit events", registry=r
        )
        self.audit_flushed = Counter(
            "vault_audit_flushed_events", "buffered audit events written", registry=r
        )
        self.provider_seconds = Histogram(
            "vault_key_provider_seconds", "key provider call latency", ["operation"], registry=r
        )

    def observe_audit(self, records: list[AuditRecord]) -> None:
        for record in records:
            self.audit_events.labels(
                str(record.action), str(record.outcome), str(record.status_code)
            ).inc()

    def observe_flush(self, events: int, seconds: float) -> None:
        self.audit_flushed.inc(events)
        self.audit_flush_seconds.observe(seconds)

    def serve(self, listen: str) -> None:
        """Serve ``/metrics`` on ``HOST:PORT`` from a daemon thread."""
        host, _, port = listen.rpartition(":")
        start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry)


class _StateCollector(Collector):
    def __init__(self, gauges: Callable[[], Iterable[Any]]) -> None:
        self._gauges = gauges

    def collect(self) -> Iterable[Any]:
        return self._gauges()


def watch_app_state(
    metrics: Metrics, audit: AuditLog, keys: KeyHierarchy, sealed: Callable[[], bool]
) -> None:
    """Gauges read at scrape time, and the audit and key-provider counters."""

    def gauges() -> Iterable[Any]:
        buffered = GaugeMetricFamily(
            "vault_audit_buffered_events", "masked-read events waiting for the flusher"
        )
        buffered.add_metric([], audit.buffered())
        entries = GaugeMetricFamily(
            "vault_key_cache_entries", "unwrapped keys held", labels=["cache"]
        )
        entries.add_metric(["subject"], len(keys.subject_keys))
        entries.add_metric(["data"], len(keys.data_keys))
        misses = CounterMetricFamily(
            "vault_key_cache_misses", "key lookups that found no usable key", labels=["cache"]
        )
        misses.add_metric(["subject"], keys.subject_keys.misses)
        misses.add_metric(["data"], keys.data_keys.misses)
        seal = GaugeMetricFamily("vault_sealed", "1 while sealed or draining")
        seal.add_metric([], 1.0 if sealed() else 0.0)
        return [buffered, entries, misses, seal]

    metrics.registry.register(_StateCollector(gauges))
    audit.observers.append(metrics.observe_audit)
    audit.flush_observers.append(metrics.observe_flush)
    keys.provider = MeteredProvider(keys.provider, metrics)


class MeteredProvider(DelegatingKeyProvider):
    """The key hierarchy's provider, timing and counting wrap and unwrap."""

    def __init__(self, inner: KeyProvider, metrics: Metrics) -> None:
        super().__init__(inner)
        self._metrics = metrics

    def _timed(self, operation: str, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = call()
            outcome = "ok"
            return result
        finally:
            self._metrics.provider_calls.labels(operation, outcome).inc()
            self._metrics.provider_seconds.labels(operation).observe(
                time.perf_counter() - started
            )

    def wrap(self, key: bytes, context: bytes) -> WrappedKey:
        wrapped: WrappedKey = self._timed("wrap", lambda: self._inner.wrap(key, context))
        return wrapped

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        key: bytes = self._timed("unwrap", lambda: self._inner.unwrap(wrapped, context))
        return key


class RpcMetrics(grpc.ServerInterceptor):
    """Counts and times every unary and server-streaming RPC by method and status."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = str(details.method).rsplit("/", 1)[-1]
        metrics = self._metrics
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                metrics.in_flight.inc()
                started = time.perf_counter()
                try:
                    return inner(request, context)
                finally:
                    metrics.in_flight.dec()
                    metrics.rpc_seconds.labels(method).observe(time.perf_counter() - started)
                    # grpcio's context has code(); the type stubs do not know it.
                    code = context.code() or grpc.StatusCode.OK  # type: ignore[attr-defined]
                    metrics.rpcs.labels(method, code.name).inc()

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # streams (exports, audit lists, health watch) are not timed
