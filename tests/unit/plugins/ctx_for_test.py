"""A RequestContext of our own for driving plugin phases without a proxy, plus a ConfigIndex."""
from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from typing import Any, Mapping

from meshway.plugins import Plugin


class _Headers:
    """Ordered, case-insensitive multi-valued headers."""

    def __init__(self, items: Any = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self.items: list[tuple[str, str]] = [(k, v) for k, v in pairs]

    def get(self, name: str) -> str | None:
        lname = name.lower()
        found = [v for k, v in self.items if k.lower() == lname]
        return ", ".join(found) if found else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.items if k.lower() == name.lower()]

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self.items.append((name, value))

    def add(self, name: str, value: str) -> None:
        self.items.append((name, value))

    def remove(self, name: str) -> None:
        self.items = [(k, v) for k, v in self.items if k.lower() != name.lower()]


class CtxForTest:
    """Implements meshway.plugins.RequestContext over plain values; records what plugins did."""

    http_version = "1.1"
    client_trusted = False
    tries: tuple = ()  # the balancer's tries (none: a plugin phase before the proxy picked a peer)
    upstream_connect_time: tuple = ()
    balancer_hostname = None

    def __init__(self, method: str = "GET", path: str = "/", query: str = "", headers: Any = (),
                 body: bytes | None = None, client_ip: str = "127.0.0.1", route: Any = None,
                 service: Any = None, scheme: str = "http", host: str = "example.com",
                 uri_captures: Mapping[str, str] | None = None) -> None:
        self.request_id = uuid.uuid4().hex
        self.client_ip, self.method, self.scheme, self.host = client_ip, method, scheme, host
        self.path, self.query = path, query
        self.route, self.service = route, service
        self.consumer = self.credential = self.credential_identifier = None
        self.authenticated_groups = None
        self.uri_captures = dict(uri_captures or {})
        self.shared: dict[str, Any] = {}
        self.status = None
        self.started_at = time.time()
        self.headers = _Headers(headers)
        self.body = body
        self.exited: tuple[int, Any, dict[str, str]] | None = None
        self.body_limit: int | None = None
        self.response_status: int | None = None
        self.response_headers = _Headers()
        self.response_source: str | None = None
        self.latencies: dict[str, float | None] = {"request": 0.0, "kong": 0.0, "proxy": None}
        self.request_size = self.response_size = 0
        self.fields: dict[str, Any] = {}

    # request side
    def get_header(self, name: str) -> str | None:
        return self.headers.get(name)

    def get_headers(self) -> list[tuple[str, str]]:
        return list(self.headers.items)

    def set_header(self, name: str, value: str) -> None:
        self.headers.set(name, value)

    def add_header(self, name: str, value: str) -> None:
        self.headers.add(name, value)

    def remove_header(self, name: str) -> None:
        self.headers.remove(name)

    def set_path(self, path: str) -> None:
        self.path = path

    def set_query(self, query: str) -> None:
        self.query = query

    def set_method(self, method: str) -> None:
        self.method = method

    def read_body(self) -> bytes | None:
        return self.body

    def set_body(self, body: bytes) -> None:
        self.body = body

    def authenticate(self, consumer: Any, credential: Any, identifier: str | None = None) -> None:
        self.consumer, self.credential = consumer, credential
        self.credential_identifier = identifier or (credential or {}).get("id")

    def limit_request_body(self, max_bytes: int) -> None:
        self.body_limit = max_bytes

    def exit(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        # Like the engine, exit records the answer and returns: the phase itself must stop.
        assert self.exited is None, f"exit called twice: {self.exited} then {status}"
        self.exited = (status, body, dict(headers or {}))
        self.status = status

    # response side
    def get_response_header(self, name: str) -> str | None:
        return self.response_headers.get(name)

    def set_response_header(self, name: str, value: str) -> None:
        self.response_headers.set(name, value)

    def set_response_headers(self, headers: Any) -> None:
        for name, value in headers:
            self.response_headers.set(name, value)

    def add_response_header(self, name: str, value: str) -> None:
        self.response_headers.add(name, value)

    def remove_response_header(self, name: str) -> None:
        self.response_headers.remove(name)

    def log_fields(self) -> dict[str, Any]:
        return self.fields or {"request": {"method": self.method, "uri": self.path},
                               "response": {"status": self.response_status},
                               "client_ip": self.client_ip, "started_at": int(self.started_at * 1000)}


class IndexForTest:
    """A ConfigIndex over a dict of collections."""

    def __init__(self, **collections: list[dict[str, Any]]) -> None:
        self.collections = collections
        self._consumers = {c["id"]: c for c in collections.get("consumers", [])}

    def entities(self, collection: str) -> list[dict[str, Any]]:
        return list(self.collections.get(collection, []))

    def consumer(self, consumer_id: str) -> dict[str, Any] | None:
        return self._consumers.get(consumer_id)


def make_plugin_for_test(cls: type[Plugin], config: dict[str, Any] | None = None,
                         index: IndexForTest | None = None, entity: dict[str, Any] | None = None) -> Any:
    """Validate `config` through the plugin's schema, as the engine does, and build the instance."""
    model = cls.Config.model_validate(config or {})
    entity = entity or {"id": str(uuid.uuid4()), "name": cls.name, "config": model.model_dump(mode="json")}
    return cls(model, index or IndexForTest(), entity)


def run_phase_for_test(plugin: Any, phase: str, ctx: CtxForTest, *args: Any) -> Any:
    """Run one phase; returns the exit tuple if it answered, else the phase's return value."""
    fn = getattr(plugin, phase)
    if fn is None:  # the instance dropped this phase for its config: the engine does not run it
        return None
    result = fn(ctx, *args)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return ctx.exited if ctx.exited is not None else result


async def _await(result: Any) -> Any:
    return await result


def consumer_for_test(username: str, custom_id: str | None = None) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "username": username, "custom_id": custom_id, "tags": None}
