"""A `.proto` file compiled for the grpc-web and grpc-gateway plugins: methods and message classes.

Theory of operation:
- protoc (grpcio-tools) compiles the file, with its imports, to a FileDescriptorSet; protobuf's
  descriptor pool turns that into message classes. No hand-written parser. Include paths: the
  file's own directory first (Kong adds it too), then protobuf's well-known types shipped with
  grpcio-tools, then googleapis-common-protos' `google/api/*.proto` (the `google.api.http`
  annotations), so a file that imports `google/api/annotations.proto` needs nothing beside it.
- protoc runs in a child process: its errors come back as text for the 400 that names
  `config.proto`, and a crash or a hang (bounded by a timeout) cannot take the node with it.
- One compile per file version and process: the result is cached by path, mtime and size, so
  every worker compiles a config's file once, and an edited file is read again on the next
  config change. Nothing here runs per request.
- Methods are keyed by their gRPC path `/<package>.<Service>/<Method>`, for the services of the
  named file (not of the files it imports), as Kong's `each_method` does.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

__all__ = ["Method", "Proto", "ProtoError", "load_proto", "struct_from_json", "json_from_message"]

_PROTOC_TIMEOUT = 60.0


class ProtoError(ValueError):
    """The file is missing, unreadable or does not compile; the message says why."""


@dataclass(frozen=True)
class Method:
    """One RPC: its gRPC path, message classes and `google.api.http` rules."""

    path: str
    input: Any
    output: Any
    rules: tuple[Any, ...]  # google.api.HttpRule, additional_bindings flattened in


@dataclass(frozen=True)
class Proto:
    """The services of one compiled .proto file."""

    file: str
    methods: dict[str, Method]


def load_proto(path: str) -> Proto:
    """The compiled file at `path` (cached per file version); ProtoError when it cannot be."""
    full = os.path.abspath(path)
    try:
        st = os.stat(full)
    except OSError as e:
        raise ProtoError(f"cannot read {path}: {e.strerror}") from None
    return _load(full, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=32)
def _load(full: str, mtime_ns: int, size: int) -> Proto:
    data = _descriptor_set(full)
    return _methods(full, data)


def _include_paths(full: str) -> list[str]:
    import grpc_tools

    paths = [os.path.dirname(full), os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")]
    spec = importlib.util.find_spec("google.api")
    if spec is not None and spec.submodule_search_locations:
        paths.append(os.path.dirname(os.path.dirname(list(spec.submodule_search_locations)[0])))
    return paths


def _descriptor_set(full: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="meshway-proto-") as tmp:
        out = os.path.join(tmp, "set.pb")
        args = [sys.executable, "-m", "grpc_tools.protoc", *(f"-I{p}" for p in _include_paths(full)),
                "--include_imports", f"--descriptor_set_out={out}", full]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=_PROTOC_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ProtoError(f"compiling {full} took more than {_PROTOC_TIMEOUT:.0f} s") from None
        if done.returncode != 0 or not os.path.exists(out):
            why = (done.stderr or done.stdout).strip().splitlines()
            raise ProtoError(f"cannot compile {full}: {'; '.join(why[:3]) or 'protoc failed'}")
        with open(out, "rb") as f:
            return f.read()


def _methods(full: str, data: bytes) -> Proto:
    import google.api.annotations_pb2 as annotations  # registers the google.api.http extension
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    pool = descriptor_pool.DescriptorPool()
    for file in fds.file:
        pool.Add(file)
    own = fds.file[-1]  # --include_imports lists dependencies first, the named file last
    methods: dict[str, Method] = {}
    for service in own.service:
        name = f"{own.package}.{service.name}" if own.package else service.name
        desc = pool.FindServiceByName(name)
        for proto_method, method in zip(service.method, desc.methods):
            rules = _rules(proto_method.options.Extensions[annotations.http]) \
                if proto_method.options.HasExtension(annotations.http) else ()
            path = f"/{name}/{method.name}"
            methods[path] = Method(path, message_factory.GetMessageClass(method.input_type),
                                   message_factory.GetMessageClass(method.output_type), rules)
    return Proto(full, methods)


def _rules(rule: Any) -> tuple[Any, ...]:
    return (rule, *(extra for extra in rule.additional_bindings))


def struct_from_json(doc: Any, cls: Any) -> bytes:
    """A JSON document (parsed) as the serialized message `cls`; ValueError when it does not fit."""
    from google.protobuf import json_format

    try:
        return json_format.ParseDict(doc, cls(), ignore_unknown_fields=True).SerializeToString()
    except (json_format.ParseError, TypeError, AttributeError) as e:
        raise ValueError(str(e)) from None


def json_from_message(raw: bytes, cls: Any) -> dict[str, Any]:
    """A serialized message as JSON with the proto's field names and every field (Kong's shape)."""
    from google.protobuf import json_format

    msg = cls.FromString(raw)
    return json_format.MessageToDict(msg, always_print_fields_with_no_presence=True, preserving_proto_field_name=True)
