"""Tracing over a real socket, exported to memory: spans where they should be, no personal data.

The app and the gRPC server run in this process (so the in-memory exporter
sees the spans) on a real mTLS port. A write and a reveal give a server span
per RPC, spans for the database statements and a span for the key
provider's wrap; no attribute of any span holds a subject id, a digit group
of the value, or a token.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pii_vault_client.v1 import vault_pb2 as pb

from vault.bootstrap.app import App, build_app, init_data_dir
from vault.bootstrap.pki import TlsPaths
from vault.bootstrap.tracing import install_tracing
from vault.client import VaultClient
from vault.config import Settings
from vault.transport.server import ServerOptions, TlsFiles, build_server


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[App, VaultClient, VaultClient, InMemorySpanExporter]]:
    data_dir = tmp_path / "vault"
    init_data_dir(data_dir)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with build_app(Settings(data_dir=data_dir)) as app:
        tls = TlsPaths.under(data_dir)
        server, port, _health = build_server(
            app.vault,
            app.shredder,
            ServerOptions(
                listen="127.0.0.1:0", tls=TlsFiles(tls.ca_cert, tls.server_cert, tls.server_key)
            ),
            key_admin=app.key_admin,
            audit_reader=app.audit_reader,
            interceptors=install_tracing(app.store, app.keys, provider),
        )
        writer = VaultClient.for_caller(data_dir, "registration", f"localhost:{port}")
        desk = VaultClient.for_caller(data_dir, "privacy-desk", f"localhost:{port}")
        try:
            yield app, writer, desk, exporter
        finally:
            writer.close()
            desk.close()
            server.stop(None)


def test_rpcs_database_statements_and_key_calls_are_traced_without_personal_data(
    traced: tuple[App, VaultClient, VaultClient, InMemorySpanExporter],
) -> None:
    _app, writer, desk, exporter = traced
    subject = f"traced-{uuid.uuid4()}"
    put = writer.vault.PutField(
        pb.PutFieldRequest(
            subject_id=subject,
            field="phone",
            value=pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567")),
        ),
        timeout=30,
    )
    desk.vault.GetField(
        pb.GetFieldRequest(
            subject_id=subject, field="phone", view=pb.VIEW_PLAINTEXT, purpose="dsar"
        ),
        timeout=30,
    )
    spans = exporter.get_finished_spans()
    names = [span.name for span in spans]
    assert "/vault.v1.VaultService/PutField" in names
    assert "/vault.v1.VaultService/GetField" in names
    assert "key_provider.wrap" in names
    database = [s for s in spans if (s.attributes or {}).get("db.statement")]
    assert database, names
    # A database span belongs to the RPC that made it.
    put_span = next(s for s in spans if s.name == "/vault.v1.VaultService/PutField")
    assert any(s.context.trace_id == put_span.context.trace_id for s in database)
    for span in spans:
        for key, value in (span.attributes or {}).items():
            text = str(value)
            for secret in (subject, "5123", "4567", put.view.token):
                assert secret not in text, (span.name, key)


def test_a_json_log_line_written_inside_a_span_names_its_trace() -> None:
    import io
    import json
    import logging

    from vault.cli import _log_handler

    provider = TracerProvider()
    handler = _log_handler("json")
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    logger = logging.getLogger("vault.test-tracing")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with provider.get_tracer("test").start_as_current_span("work") as span:
            logger.warning("inside")
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert outside["trace_id"] == "-" and outside["request_id"] == "-"
