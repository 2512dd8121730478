"""The acme plugin's Admin API endpoints (Kong's api.lua), on the node that orders the certificates.

- `POST /acme` `{"host": "example.com"}`: order a certificate for that host now (201
  `certificate for host <host> is created`); `test_http_challenge_flow: true` only checks that
  `http://<host>/.well-known/acme-challenge/x` reaches the plugin.
- `PATCH /acme` (and a daily timer): renew, in the background, every certificate within `renew_threshold_days` of
  its expiry (202 `Renewal process started successfully`).
- `GET /acme/certificates[?invalid_only=true]`, `GET /acme/certificates/{host}`: what was obtained.

On a node with a database (traditional mode) the certificate becomes `certificates` + `snis`
entities (tag `managed-by-acme`), replacing the host's previous ones; on a DB-less node or a
control plane it stays in the plugin's storage (with `redis`, where the data planes find it),
as Kong's client.lua does.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("meshway.plugins")
TAGS = ["managed-by-acme"]
RENEW_EVERY = 86400


def acme_routes(master: Any) -> list[Route]:
    def plugin() -> Any:
        from meshway.plugins.bundled.acme import AcmeConfig

        for entity in (master.snapshot or {}).get("plugins") or ():
            if entity.get("name") == "acme" and entity.get("enabled", True):
                return AcmeConfig.model_validate(entity.get("config") or {})
        return None

    def store_of(conf: Any) -> Any:
        from meshway.plugins.bundled._acme_storage import open_storage

        return open_storage(conf, master.prefix / "shm", _trusted(master.settings))

    def entities() -> Any:
        """Kong: only a node with a database outside hybrid mode keeps certificates as entities."""
        settings = master.settings
        if settings.database == "off" or settings.role in ("control_plane", "data_plane"):
            return None
        return getattr(master, "store", None)

    async def create(request: Request) -> Response:
        conf = plugin()
        if conf is None:
            return JSONResponse({"message": "Not found"}, status_code=404)
        params = await _params(request)
        host = params.get("host")
        if not isinstance(host, str) or not host:
            return JSONResponse({"message": "host must be provided and containing a single domain"}, status_code=400)
        if ":" in host:
            return JSONResponse({"message": "port is not allowed in host"}, status_code=400)
        if params.get("test_http_challenge_flow") in (True, "true"):
            return await _sanity_check(conf, host)
        try:
            await asyncio.to_thread(obtain, conf, store_of(conf), entities(), host, _trusted(master.settings), None)
        except Exception as e:
            return JSONResponse({"message": f"failed to update certificate: {e}"}, status_code=500)
        return JSONResponse({"message": f"certificate for host {host} is created"}, status_code=201)

    async def renew_all(request: Request) -> Response:
        conf = plugin()
        if conf is None:
            return JSONResponse({"message": "Not found"}, status_code=404)
        task = asyncio.get_running_loop().create_task(
            asyncio.to_thread(renew, conf, store_of(conf), entities(), _trusted(master.settings)))
        _background.add(task)
        task.add_done_callback(_background.discard)
        return JSONResponse({"message": "Renewal process started successfully"}, status_code=202)

    async def certificates(request: Request) -> Response:
        conf = plugin()
        if conf is None:
            return JSONResponse({"message": "Not found"}, status_code=404)
        invalid_only = request.query_params.get("invalid_only") in ("true", "1")
        try:  # in a thread: the storage may be a redis server
            data = await asyncio.to_thread(listing, conf, store_of(conf), entities(), invalid_only)
        except Exception as e:
            return JSONResponse({"message": str(e)}, status_code=500)
        return JSONResponse({"data": data})

    async def certificate(request: Request) -> Response:
        from meshway.plugins.bundled import _acme_client as client

        conf = plugin()
        if conf is None:
            return JSONResponse({"message": "Not found"}, status_code=404)
        host = request.path_params["host"]
        try:
            found = await asyncio.to_thread(load_certkey, conf, store_of(conf), entities(), host)
        except Exception as e:
            return JSONResponse({"message": str(e)}, status_code=500)
        if found is None:
            return JSONResponse({"message": f"Certificate for host {host}not found in storage"}, status_code=404)
        return JSONResponse({"data": client.describe(found[0])})

    async def daily() -> None:
        """Kong's renewal timer (every 86400 s in each worker; here once per node, in the master)."""
        while True:
            await asyncio.sleep(RENEW_EVERY)
            conf = plugin()
            if conf is not None:
                try:
                    await asyncio.to_thread(renew, conf, store_of(conf), entities(), _trusted(master.settings))
                except Exception as e:  # the next day tries again
                    log.error("acme: renewal failed: %s", e)

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # built outside a running node (tests of the app alone): no timer
        loop = None
    if loop is not None:
        task = loop.create_task(daily())
        _background.add(task)
        task.add_done_callback(_background.discard)

    return [
        Route("/acme", create, methods=["POST"]),
        Route("/acme", renew_all, methods=["PATCH"]),
        Route("/acme/certificates", certificates, methods=["GET"]),
        Route("/acme/certificates/{host}", certificate, methods=["GET"]),
    ]


_background: set = set()


async def _params(request: Request) -> dict[str, Any]:
    if "json" in request.headers.get("content-type", ""):
        try:
            body = await request.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}
    form = await request.form()
    return {**dict(request.query_params), **{k: v for k, v in form.items() if isinstance(v, str)}}


def _trusted(settings: Any) -> str | None:
    from meshway.plugins.bundled.acme import trusted_file

    return trusted_file(getattr(settings, "lua_ssl_trusted_certificate", ""))


async def _sanity_check(conf: Any, host: str) -> Response:
    import httpx

    from meshway.plugins.bundled.acme import DomainMatcher

    if host not in DomainMatcher(conf.domains):
        return JSONResponse({"message": f"problem found running sanity check for {host}: host is not included in plugin "
                                        "config.domains"}, status_code=400)
    check = f"http://{host}/.well-known/acme-challenge/"
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            res = await http.get(check + "x")
    except httpx.HTTPError as e:
        err = str(e)
    else:
        if "no Route matched with those values" in res.text:
            err = f"{check}* doesn't map to a Route in Kong; please refer to docs on how to create dummy Route and Service"
        elif res.text != "Not found\n":
            err = f'unexpected response: "{res.text}"' + (f", unexpected status code: {res.status_code}"
                                                          if res.status_code != 404 else "")
        else:
            return JSONResponse({"message": f"sanity test for host {host} passed"})
    return JSONResponse({"message": f"problem found running sanity check for {host}: {err}"}, status_code=400)


def obtain(conf: Any, store: Any, db: Any, host: str, trusted: str | None, previous_key: str | None) -> None:
    """Order, then keep (entities or store), then record for renewal (blocking: run in a thread)."""
    from meshway.plugins.bundled import _acme_client as client

    cert, key = client.update_certificate(store, conf, host, trusted, previous_key)
    if db is not None:
        save_entities(db, host, cert, key)
    else:
        client.store_certkey(store, host, cert, key)
    client.store_renew_config(store, host)


def listing(conf: Any, store: Any, db: Any, invalid_only: bool) -> list[dict[str, Any]]:
    """GET /acme/certificates: each recorded host's certificate, described as Kong's parse_certkey."""
    from meshway.plugins.bundled import _acme_client as client

    data = []
    for host in client.renew_hosts(store):
        found = load_certkey(conf, store, db, host)
        if found is not None:
            shown = client.describe(found[0])
            if not invalid_only or not shown["valid"]:
                data.append(shown)
    return data


def save_entities(db: Any, host: str, cert: str, key: str) -> None:
    """Kong's save_dao: a new certificate, the host's SNI pointed at it, the old certificate deleted."""
    entity = db.insert("certificates", {"cert": cert, "key": key, "tags": TAGS})
    old = db.find("snis", host)
    db.upsert("snis", host, {"name": host, "certificate": {"id": entity["id"]}, "tags": TAGS})
    previous = (old or {}).get("certificate")
    previous_id = previous.get("id") if isinstance(previous, dict) else previous
    if previous_id and previous_id != entity["id"]:
        try:
            db.delete("certificates", previous_id)
        except Exception as e:  # still used by another SNI: keep it
            log.warning("acme: could not delete the previous certificate %s of %s: %s", previous_id, host, e)


def load_certkey(conf: Any, store: Any, db: Any, host: str) -> tuple[str, str | None] | None:
    """The host's certificate and key: from the entities (a node with a database) or the storage."""
    from meshway.plugins.bundled._acme_client import load_stored_certkey

    if db is not None:
        sni = db.find("snis", host)
        ref = (sni or {}).get("certificate")
        cert_id = ref.get("id") if isinstance(ref, dict) else ref
        entity = db.find("certificates", cert_id) if cert_id else None
        return (entity["cert"], entity["key"]) if entity else None
    return load_stored_certkey(store, host)


def renew(conf: Any, store: Any, db: Any, trusted: str | None) -> None:
    """Kong's renew_certificate_storage: every recorded host within the threshold gets a new certificate."""
    import time

    from meshway.plugins.bundled import _acme_client as client

    threshold = client.DAY * conf.renew_threshold_days
    try:
        store.set(client.RENEW_LAST_RUN, time.strftime("%Y-%m-%d %H:%M:%S"))
        hosts = client.renew_hosts(store)
    except Exception as e:  # the storage is down: the next run tries again
        log.error("acme: can't list renew hosts: %s", e)
        return
    for host in hosts:
        found = load_certkey(conf, store, db, host)
        if found is None:
            store.delete(client.RENEW_PREFIX + host)
            continue
        if not client.expires_within(found[0], threshold):
            log.info("acme: certificate for %s is not due for renewal", host)
            continue
        try:
            obtain(conf, store, db, host, trusted, found[1])
        except Exception as e:
            log.error("acme: failed to renew certificate for %s: %s", host, e)



