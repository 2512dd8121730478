"""Calls into the Admin API app, in process, as the dashboard's user."""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
from typing import Any, Iterator

import httpx

TOKEN_COOKIE = "meshway_admin_token"


@dataclasses.dataclass
class AdminAnswer:
    """An Admin API answer: status and decoded JSON body ({} when there is none)."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@contextlib.contextmanager
def no_cycle_collection() -> Iterator[None]:
    """For a page that reads thousands of resources (the mesh page, a search over 5,000 data planes):
    the millions of objects of their decoded JSON made Python's cycle collector run several full
    passes over the heap per page, half the page's time at 5,000 data planes. The objects are freed
    by reference counting when the page is done (JSON has no cycles), so the collector is paused
    meanwhile and resumes after; nothing leaks."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class AdminClient:
    """One httpx client over the Admin API's ASGI app; a request carries the caller's token."""

    def __init__(self, admin_app: Any) -> None:
        # Host `localhost` on a loopback "connection": the Admin API's DNS-rebinding rule holds as for curl
        transport = httpx.ASGITransport(app=admin_app, client=("127.0.0.1", 0))
        self._http = httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=30)

    async def call(self, method: str, path: str, token: str | None, body: Any = None,
                   params: dict | None = None) -> AdminAnswer:
        headers = {"Kong-Admin-Token": token} if token else {}
        resp = await self._http.request(method, path, json=body, params=params, headers=headers)
        try:
            decoded = resp.json() if resp.content else {}
        except json.JSONDecodeError:
            decoded = {"message": resp.text}
        return AdminAnswer(resp.status_code, decoded)

    async def call_text(self, method: str, path: str, token: str | None) -> AdminAnswer:
        """An answer that is not JSON (`/metrics`): the body as text."""
        headers = {"Kong-Admin-Token": token} if token else {}
        resp = await self._http.request(method, path, headers=headers)
        return AdminAnswer(resp.status_code, resp.text)

    async def get(self, path: str, token: str | None, **params: Any) -> AdminAnswer:
        return await self.call("GET", path, token, params={k: v for k, v in params.items() if v not in (None, "")})
