"""Consul's `config write|read|list|delete` (beside Kong's `config parse|db_import|db_export`) and
`meshway get zones`.

Flags are Consul's, single dash (`-kind`, `-name`; `--kind` works too); the control plane is found
as by `meshway apply/get`: `--cp-address URL` (Consul's `-http-addr` is accepted as its alias) and
`--admin-token` (alias `-token`). Input and output follow `consul config`: HCL, JSON or YAML in,
`Config entry written: <kind>/<name>` out; decode problems print `Failed to decode config entry
input: ...` before anything is sent; the control plane checks the entry again and refuses what
Consul refuses, with Consul's message.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from meshway.cli._common import fail

DEFAULT_CP = "http://127.0.0.1:8001"


def _cp_options(p) -> None:
    import os

    # Consul's CLI reads CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN: the document's commands work as written
    address = os.environ.get("CONSUL_HTTP_ADDR") or DEFAULT_CP
    p.add_argument("--cp-address", "-http-addr", "--http-addr", "--admin-url", dest="cp",
                   default=address if "://" in address else f"http://{address}",
                   help=f"the control plane's Admin API URL (default $CONSUL_HTTP_ADDR, else {DEFAULT_CP})")
    p.add_argument("--admin-token", "-token", "--token", dest="admin_token", metavar="TOKEN",
                   default=os.environ.get("CONSUL_HTTP_TOKEN") or None,
                   help="sent as Kong-Admin-Token, for an Admin API with admin_auth = token (default $CONSUL_HTTP_TOKEN)")


def add_config_verbs(csub) -> None:
    q = csub.add_parser("write", help="create or update a config entry (consul config write)")
    q.add_argument("file", help="HCL, JSON or YAML file, or - for standard input")
    _cp_options(q)
    q.set_defaults(handler=_write)
    for verb, text, needs_name in (("read", "print a config entry as JSON (consul config read)", True),
                                   ("list", "list the config entries of a kind (consul config list)", False),
                                   ("delete", "delete a config entry (consul config delete)", True)):
        q = csub.add_parser(verb, help=text)
        q.add_argument("-kind", "--kind", dest="kind", default="", help="the config entry's kind")
        if needs_name:
            q.add_argument("-name", "--name", dest="name", default="", help="the config entry's name")
        _cp_options(q)
        q.set_defaults(handler=ACTIONS[verb])


class _Refused(RuntimeError):
    pass


def _call(args, method: str, path: str, **kw) -> Any:
    import httpx

    headers = {"Kong-Admin-Token": args.admin_token} if args.admin_token else {}
    try:
        response = httpx.request(method, args.cp.rstrip("/") + path, timeout=30, headers=headers, **kw)
    except httpx.HTTPError as e:
        raise _Refused(f"cannot reach the control plane at {args.cp}: {e}") from None
    if response.status_code >= 400:
        try:
            message = response.json().get("message") or response.text
        except ValueError:
            message = response.text.strip()
        raise _Refused(f"Unexpected response code: {response.status_code} ({message})")
    return response.json()


def _error(text: str) -> int:
    print(text, file=sys.stderr)
    return 1


def _write(args) -> int:
    from meshway.zones import DecodeError, decode_entry, parse_text

    try:
        text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
    except OSError as e:
        return _error(f"Failed to load data: Failed to read file: {e.strerror}")
    try:
        raw = parse_text(text, "" if args.file == "-" else args.file)
        entry = decode_entry(raw)
    except DecodeError as e:
        return _error(f"Failed to decode config entry input: {e}")
    kind, name = entry["Kind"], entry.get("Name", "")
    try:
        _call(args, "PUT", "/v1/config", json=entry)
    except _Refused as e:
        return _error(f"Error writing config entry {kind}/{name}: {e}")
    print(f"Config entry written: {kind}/{name}")
    return 0


def _need(args, *flags: str) -> str | None:
    for flag in flags:
        if not getattr(args, flag):
            return f"Must specify the -{flag} parameter"
    return None


def _read(args) -> int:
    missing = _need(args, "kind", "name")
    if missing:
        return _error(missing)
    try:
        entry = _call(args, "GET", f"/v1/config/{args.kind}/{args.name}")
    except _Refused as e:
        return _error(f'Error reading config entry "{args.kind}" / "{args.name}": {e}')
    from meshway.zones import dumps

    # the Admin API's JSON has sorted keys: print in Consul's field order
    print(dumps(entry, (entry.get("CreateIndex", 0), entry.get("ModifyIndex", 0))))
    return 0


def _list(args) -> int:
    missing = _need(args, "kind")
    if missing:
        return _error(missing)
    try:
        entries = _call(args, "GET", f"/v1/config/{args.kind}")
    except _Refused as e:
        return _error(f'Error listing config entries for kind "{args.kind}": {e}')
    for entry in entries:
        print(entry["Name"])
    return 0


def _delete(args) -> int:
    missing = _need(args, "kind", "name")
    if missing:
        return _error(missing)
    try:
        _call(args, "DELETE", f"/v1/config/{args.kind}/{args.name}")
    except _Refused as e:
        return _error(f"Error deleting config entry {args.kind}/{args.name}: {e}")
    print(f"Config entry deleted: {args.kind}/{args.name}")
    return 0


ACTIONS = {"read": _read, "list": _list, "delete": _delete}


# ---- meshway get zones ----------------------------------------------------------------------------
def get_zones(args) -> int:
    from meshway.cli._mesh import age, table

    try:
        items = _call(args, "GET", "/zones")["items"]
    except _Refused as e:
        return fail(str(e))
    if args.output == "json":
        print(json.dumps({"total": len(items), "items": items, "next": None}, indent=2))
    elif args.output == "yaml":
        import yaml

        print(yaml.safe_dump({"total": len(items), "items": items, "next": None}, sort_keys=False), end="")
    else:
        rows = [[z["name"], z["status"], str(z["gateways"]), str(z["dataplanes"]),
                 age(z["lastSync"]) if z.get("lastSync") else "-"] for z in items]
        print(table(["NAME", "STATUS", "GATEWAYS", "DATAPLANES", "LAST SYNC"], rows), end="")
    return 0
