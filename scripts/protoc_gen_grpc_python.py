"""``protoc-gen-grpc_python`` for buf: grpcio-tools' gRPC generator as a protoc plugin.

grpcio-tools builds its ``grpc_python`` generator into its own protoc (the
``grpc_tools.protoc`` module) and ships no plugin executable, and buf only
proxies protoc's own built-in generators (``protoc_builtin: python``), not
grpcio-tools' extra one. ``buf.gen.yaml`` therefore runs this script as a local
plugin: it reads buf's ``CodeGeneratorRequest`` on stdin, hands the request's
descriptors to ``grpc_tools.protoc`` (``--descriptor_set_in``, so no ``.proto``
is parsed twice and buf's compilation is the one used), and writes the files
back as a ``CodeGeneratorResponse`` on stdout.

Offline and pinned: the generator is the venv's grpcio-tools (``pyproject.toml``).
Run by ``scripts/gen_proto.py`` through ``buf generate``; never by hand.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc  # type: ignore[import-untyped]


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    with tempfile.TemporaryDirectory(prefix="grpc_python-") as scratch:
        root = Path(scratch)
        descriptor_set = root / "descriptors.binpb"
        descriptor_set.write_bytes(
            descriptor_pb2.FileDescriptorSet(file=request.proto_file).SerializeToString()
        )
        out = root / "out"
        out.mkdir()
        option = f"{request.parameter}:" if request.parameter else ""
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"--descriptor_set_in={descriptor_set}",
                f"--grpc_python_out={option}{out}",
                *request.file_to_generate,
            ]
        )
        if code != 0:
            response.error = f"grpc_tools.protoc exited with {code}"
            return response
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            response.file.add(
                name=path.relative_to(out).as_posix(), content=path.read_text(encoding="utf-8")
            )
    return response


def main() -> int:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    sys.stdout.buffer.write(generate(request).SerializeToString())
    return 0


if __name__ == "__main__":
    sys.exit(main())
