"""``protoc-gen-api_doc`` for buf: the vault.v1 API reference (``docs/api.md``) from comments.

A protoc plugin run by ``buf generate`` (``buf.gen.yaml``), so the reference is
rendered from the same compiled descriptors, with their source comments, as the
Python and TypeScript code. It writes one Markdown file, ``api.md``: the
services and their RPCs, then every message (fields, types, numbers, oneofs)
and enum of the ``vault.v1`` package, each with the comment above it in the
``.proto`` (and a trailing comment, if any). Files of other packages (the
vendored ``google.*`` protos) are linked to, not rendered.

Deterministic: the output depends only on the descriptors, so
``tests/test_generated_code.py`` can regenerate and compare it byte for byte.
Run by ``scripts/gen_proto.py``; never by hand.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

PACKAGE = "vault.v1"
OUTPUT = "api.md"
# FileDescriptorProto / DescriptorProto / ... field numbers used in SourceCodeInfo paths.
_MESSAGE, _ENUM, _SERVICE = 4, 5, 6
_FIELD, _NESTED, _NESTED_ENUM, _ONEOF = 2, 3, 4, 8
_VALUE, _METHOD = 2, 2

_SCALARS = {
    descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE: "double",
    descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT: "float",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64: "int64",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT64: "uint64",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32: "int32",
    descriptor_pb2.FieldDescriptorProto.TYPE_FIXED64: "fixed64",
    descriptor_pb2.FieldDescriptorProto.TYPE_FIXED32: "fixed32",
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL: "bool",
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING: "string",
    descriptor_pb2.FieldDescriptorProto.TYPE_BYTES: "bytes",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT32: "uint32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED32: "sfixed32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED64: "sfixed64",
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT32: "sint32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT64: "sint64",
}
_WELL_KNOWN = "https://protobuf.dev/reference/protobuf/google.protobuf/#"
_GOOGLEAPIS = "https://github.com/googleapis/googleapis/blob/master/"


class _Comments:
    """The comments of one file, by SourceCodeInfo path."""

    def __init__(self, source: descriptor_pb2.SourceCodeInfo) -> None:
        self._by_path: dict[tuple[int, ...], descriptor_pb2.SourceCodeInfo.Location] = {
            tuple(location.path): location for location in source.location
        }

    def block(self, path: tuple[int, ...]) -> str:
        """Leading and trailing comment as paragraphs (blank lines kept)."""
        location = self._by_path.get(path)
        if location is None:
            return ""
        parts = [location.leading_comments, location.trailing_comments]
        lines = [line.strip() for part in parts for line in part.strip("\n").splitlines()]
        return "\n".join(lines).strip()

    def cell(self, path: tuple[int, ...]) -> str:
        """The same comment on one line, for a table cell."""
        return " ".join(self.block(path).split()).replace("|", "\\|")


def _anchor(name: str) -> str:
    return name.lower().replace(".", "")


def _type_link(type_name: str, files: dict[str, str]) -> str:
    """A message or enum type as a link: to this page, or to its upstream definition."""
    full = type_name.lstrip(".")
    if full.startswith(f"{PACKAGE}."):
        short = full[len(PACKAGE) + 1 :]
        return f"[`{short}`](#{_anchor(short)})"
    if full.startswith("google.protobuf."):
        short = full.removeprefix("google.protobuf.")
        return f"[`{full}`]({_WELL_KNOWN}{short.lower()})"
    origin = files.get(full)
    if origin is not None:
        return f"[`{full}`]({_GOOGLEAPIS}{origin})"
    return f"`{full}`"


def _field_type(field: descriptor_pb2.FieldDescriptorProto, files: dict[str, str]) -> str:
    if field.type_name:
        rendered = _type_link(field.type_name, files)
    else:
        rendered = f"`{_SCALARS[field.type]}`"
    if field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED:
        return f"repeated {rendered}"
    return rendered


def _type_origins(request: plugin_pb2.CodeGeneratorRequest) -> dict[str, str]:
    """Fully qualified message and enum names of every file in the request -> that file's path."""
    origins: dict[str, str] = {}

    def walk(prefix: str, messages: list[descriptor_pb2.DescriptorProto], path: str) -> None:
        for message in messages:
            name = f"{prefix}.{message.name}"
            origins[name] = path
            walk(name, list(message.nested_type), path)
            for enum in message.enum_type:
                origins[f"{name}.{enum.name}"] = path

    for proto in request.proto_file:
        walk(proto.package, list(proto.message_type), proto.name)
        for enum in proto.enum_type:
            origins[f"{proto.package}.{enum.name}"] = proto.name
    return origins


def _service_sections(proto: descriptor_pb2.FileDescriptorProto, notes: _Comments) -> Iterator[str]:
    yield "## Services\n"
    for s_index, service in enumerate(proto.service):
        yield f"### {service.name}\n"
        yield f"`{proto.package}.{service.name}`\n"
        about = notes.block((_SERVICE, s_index))
        if about:
            yield f"{about}\n"
        yield "| RPC | Request | Response | Description |"
        yield "| --- | --- | --- | --- |"
        for m_index, method in enumerate(service.method):
            request = _type_link(method.input_type, {})
            response = _type_link(method.output_type, {})
            if method.client_streaming:
                request = f"stream {request}"
            if method.server_streaming:
                response = f"stream {response}"
            description = notes.cell((_SERVICE, s_index, _METHOD, m_index))
            yield f"| `{method.name}` | {request} | {response} | {description} |"
        yield ""


def _message_sections(
    messages: list[descriptor_pb2.DescriptorProto],
    path: tuple[int, ...],
    prefix: str,
    notes: _Comments,
    files: dict[str, str],
) -> Iterator[str]:
    for index, message in enumerate(messages):
        here = (*path, index)
        name = f"{prefix}{message.name}"
        yield f"### {name}\n"
        about = notes.block(here)
        if about:
            yield f"{about}\n"
        if message.field:
            yield "| Field | Number | Type | Description |"
            yield "| --- | --- | --- | --- |"
            for f_index, field in enumerate(message.field):
                description = notes.cell((*here, _FIELD, f_index))
                if field.HasField("oneof_index") and not field.proto3_optional:
                    oneof = message.oneof_decl[field.oneof_index].name
                    description = f"oneof `{oneof}`. {description}".strip()
                kind = _field_type(field, files)
                yield f"| `{field.name}` | {field.number} | {kind} | {description} |"
            yield ""
            for o_index, oneof in enumerate(message.oneof_decl):
                about_oneof = notes.cell((*here, _ONEOF, o_index))
                if about_oneof and not oneof.name.startswith("_"):  # "_x": proto3 optional
                    yield f"Oneof `{oneof.name}`: {about_oneof}\n"
        else:
            yield "No fields.\n"
        yield from _enum_sections(list(message.enum_type), (*here, _NESTED_ENUM), f"{name}.", notes)
        yield from _message_sections(
            list(message.nested_type), (*here, _NESTED), f"{name}.", notes, files
        )


def _enum_sections(
    enums: list[descriptor_pb2.EnumDescriptorProto],
    path: tuple[int, ...],
    prefix: str,
    notes: _Comments,
) -> Iterator[str]:
    for index, enum in enumerate(enums):
        here = (*path, index)
        yield f"### {prefix}{enum.name}\n"
        about = notes.block(here)
        if about:
            yield f"{about}\n"
        yield "| Name | Number | Description |"
        yield "| --- | --- | --- |"
        for v_index, value in enumerate(enum.value):
            description = notes.cell((*here, _VALUE, v_index))
            yield f"| `{value.name}` | {value.number} | {description} |"
        yield ""


def render(proto: descriptor_pb2.FileDescriptorProto, files: dict[str, str]) -> str:
    notes = _Comments(proto.source_code_info)
    # The file's leading comment sits on the syntax statement (path [12]).
    overview = notes.block((12,))
    lines = [
        f"# `{proto.package}` API reference",
        "",
        f"<!-- Generated from proto/{proto.name} by scripts/gen_proto.py"
        " (scripts/protoc_gen_api_doc.py). Do not edit: edit the proto's comments. -->",
        "",
    ]
    if overview:
        lines += [overview, ""]
    lines += [
        "Errors are gRPC status codes with `google.rpc` details in the"
        " `grpc-status-details-bin` trailer; every error carries a"
        " `google.rpc.ErrorInfo` (domain `pii-vault`) whose `reason` is listed in"
        " [errors.md](errors.md).",
        "",
    ]
    lines += _service_sections(proto, notes)
    lines += ["## Messages", ""]
    lines += _message_sections(list(proto.message_type), (_MESSAGE,), "", notes, files)
    lines += ["## Enums", ""]
    lines += _enum_sections(list(proto.enum_type), (_ENUM,), "", notes)
    return "\n".join(lines).rstrip("\n") + "\n"


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    files = _type_origins(request)
    wanted = set(request.file_to_generate)
    documented = [p for p in request.proto_file if p.name in wanted and p.package == PACKAGE]
    # buf calls the plugin once per directory: the google/rpc one has nothing to document.
    if not documented:
        return response
    if len(documented) > 1:
        response.error = f"expected one {PACKAGE} file to document, got {len(documented)}"
        return response
    response.file.add(name=OUTPUT, content=render(documented[0], files))
    return response


def main() -> int:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    sys.stdout.buffer.write(generate(request).SerializeToString())
    return 0


if __name__ == "__main__":
    sys.exit(main())
