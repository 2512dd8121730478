"""kumactl's resource commands: apply, get, inspect, generate dataplane-token, revoke dataplane-token.

How the CLI finds the control plane: `--cp-address URL` on every command (default
`http://127.0.0.1:8001`, meshway's `admin_listen` default, so on the control plane's host no
flag is needed). kumactl keeps named control planes in `~/.kumactl/config`; meshway's Admin API
has no credentials to store yet, and a flag keeps scripts self-contained (no hidden state
deciding where `apply` writes). An environment variable would have to avoid the `MESHWAY_`
prefix, which `meshway start` reserves for node settings.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any

from meshway.cli._common import fail

DEFAULT_CP = "http://127.0.0.1:8001"
_SP = "   "


def _cp_option(p) -> None:
    p.add_argument("--cp-address", "--admin-url", dest="cp", default=DEFAULT_CP,
                   help=f"the control plane's Admin API URL (default {DEFAULT_CP})")
    p.add_argument("--admin-token", metavar="TOKEN",
                   help="sent as Kong-Admin-Token, for an Admin API with admin_auth = token")


_POLICY_LISTS = {"meshtrafficpermissions": "meshtrafficpermissions", "traffic-permissions": "traffic-permissions"}


def register(sub) -> None:
    p = sub.add_parser("apply", help="create or update Mesh and Dataplane resources (kumactl apply)")
    p.add_argument("-f", "--file", required=True, help="YAML or JSON file, or - for standard input")
    p.add_argument("-v", "--var", action="append", default=[], metavar="KEY=VALUE",
                   help="value for a {{ KEY }} placeholder (mustache); repeatable or comma separated")
    p.add_argument("--dry-run", action="store_true", help="check and print the resources, change nothing")
    _cp_option(p)
    p.set_defaults(handler=_apply)

    p = sub.add_parser("get", help="list meshes, dataplanes, zones or permissions, or show one (kumactl get)")
    p.add_argument("kind", choices=("meshes", "mesh", "dataplanes", "dataplane", "zones", *_POLICY_LISTS))
    p.add_argument("name", nargs="?")
    p.add_argument("-m", "--mesh", default="default", help="mesh (default: default)")
    p.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")
    _cp_option(p)
    p.set_defaults(handler=_get)

    p = sub.add_parser("inspect", help="dataplanes with their status (kumactl inspect dataplanes)")
    p.add_argument("kind", choices=("dataplanes", "dataplane"))
    p.add_argument("name", nargs="?", help="with `dataplane`: its name (see --type)")
    p.add_argument("--type", choices=("policies", "config"), default="policies",
                   help="with `dataplane NAME`: its permissions per inbound, or its translated configuration")
    p.add_argument("-m", "--mesh", default="default", help="mesh (default: default)")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="only dataplanes with this tag")
    p.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")
    _cp_option(p)
    p.set_defaults(handler=_inspect)

    p = sub.add_parser("generate", help="generate a dataplane token (kumactl generate dataplane-token)")
    gsub = p.add_subparsers(dest="what", metavar="WHAT")
    gsub.required = True
    q = gsub.add_parser("dataplane-token", help="a token for `meshway dp run`, signed by the control plane")
    q.add_argument("--name", default="", help="the Dataplane's name (empty: any dataplane of the mesh)")
    q.add_argument("-m", "--mesh", default="default")
    q.add_argument("--tag", action="append", default=[], metavar="KEY=V1,V2", help="required tag values")
    q.add_argument("--valid-for", default="87600h", help="lifetime, e.g. 24h (default 87600h, as Kuma)")
    q.add_argument("--proxy-type", default="dataplane", choices=("dataplane",))
    _cp_option(q)
    q.set_defaults(handler=_generate)

    p = sub.add_parser("revoke", help="revoke a dataplane token")
    rsub = p.add_subparsers(dest="what", metavar="WHAT")
    rsub.required = True
    q = rsub.add_parser("dataplane-token", help="refuse this token from now on")
    g = q.add_mutually_exclusive_group(required=True)
    g.add_argument("--token-file")
    g.add_argument("--token")
    _cp_option(q)
    q.set_defaults(handler=_revoke)


# ---- HTTP ---------------------------------------------------------------------------------------
def _call(args, method: str, path: str, **kw) -> Any:
    import httpx

    url = args.cp.rstrip("/") + path
    try:
        headers = {"Kong-Admin-Token": args.admin_token} if getattr(args, "admin_token", None) else {}
        response = httpx.request(method, url, timeout=30, headers=headers, **kw)
    except httpx.HTTPError as e:
        raise CliError(f"cannot reach the control plane at {args.cp}: {e}") from None
    if response.status_code >= 400:
        raise CliError(_describe(response))
    return response


def _describe(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code}: {response.text.strip()}"
    causes = "".join(f"\n  * {c.get('field')}: {c.get('message')}" for c in body.get("causes") or ())
    return f"{body.get('title') or response.status_code}: {body.get('details') or body.get('message') or ''}{causes}"


class CliError(RuntimeError):
    pass


def _guard(fn):
    def run(args) -> int:
        try:
            return fn(args)
        except CliError as e:
            return fail(str(e))
    return run


# ---- apply --------------------------------------------------------------------------------------
def parse_vars(items: list[str]) -> dict[str, Any]:
    """`k=v` pairs (repeatable or comma separated) as a dict; dotted keys nest (Kuma's rule)."""
    out: dict[str, Any] = {}
    for item in items:
        for pair in item.split(","):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise CliError(f"invalid variable {pair!r} (expected KEY=VALUE)")
            node = out
            parts = key.strip().split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
    return out


def render(text: str, variables: dict[str, Any]) -> str:
    """Mustache, as kumactl and kuma-dp: a missing variable renders as an empty string."""
    import chevron

    return chevron.render(text, variables)


def load_documents(text: str) -> list[Any]:
    import yaml

    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise CliError(f"the file is not YAML or JSON: {e}") from None


def _read(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from None


def _path_of(resource: dict) -> str:
    if resource.get("type") == "Mesh":
        return f"/meshes/{resource.get('name')}"
    collection = {"Dataplane": "dataplanes", "TrafficPermission": "traffic-permissions"}.get(
        resource.get("type"), str(resource.get("type")).lower() + "s")
    return f"/meshes/{resource.get('mesh') or 'default'}/{collection}/{resource.get('name')}"


@_guard
def _apply(args) -> int:
    from meshway.mesh._resources import ResourceError, parse_resource

    docs = load_documents(render(_read(args.file), parse_vars(args.var)))
    if not docs:
        raise CliError("no resource in the input")
    checked = []
    for i, doc in enumerate(docs):
        try:
            checked.append(parse_resource(doc))
        except ResourceError as e:
            where = f"resource {i + 1}: " if len(docs) > 1 else ""
            raise CliError(where + "resource is not valid:" + "".join(f"\n  * {f}: {m}" for f, m in e.causes)) from None
    if args.dry_run:
        import yaml

        print(yaml.safe_dump_all(checked, sort_keys=False), end="")
        return 0
    for resource in checked:
        _call(args, "PUT", _path_of(resource), json=resource)
    return 0


# ---- get / inspect ------------------------------------------------------------------------------
def age(iso: str | None, now: float | None = None) -> str:
    """Kuma's short durations: 12s, 5m, 3h, 2d; `never` when there is no time."""
    if not iso:
        return "never"
    seconds = max(0, int((now or time.time()) - _epoch(iso)))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _epoch(iso: str) -> float:
    import calendar

    return calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S"))


def tags_of(dataplane: dict) -> str:
    net = dataplane.get("networking") or {}
    tags: dict[str, set[str]] = {}
    for part in [*(net.get("inbound") or ()), net.get("gateway") or {}]:
        for k, v in (part.get("tags") or {}).items():
            tags.setdefault(k, set()).add(v)
    return " ".join(f"{k}={','.join(sorted(v))}" for k, v in sorted(tags.items()))


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = [_SP.join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines) + "\n"


def _emit(args, items: list[dict], header: list[str], row) -> None:
    if args.output == "json":
        print(json.dumps({"total": len(items), "items": items, "next": None}, indent=2))
    elif args.output == "yaml":
        import yaml

        print(yaml.safe_dump({"total": len(items), "items": items, "next": None}, sort_keys=False), end="")
    else:
        print(table(header, [row(i) for i in items]), end="")


def _mesh_row(mesh: dict) -> list[str]:
    mtls = mesh.get("mtls") or {}
    enabled = mtls.get("enabledBackend")
    kind = next((b.get("type", "builtin") for b in mtls.get("backends") or () if b.get("name") == enabled), "")
    return [mesh["name"], f"{kind}/{enabled}" if enabled else "off", "off", "off", age(mesh.get("creationTime"))]


def _dataplane_row(dp: dict) -> list[str]:
    return [dp.get("mesh", ""), dp["name"], tags_of(dp), (dp.get("networking") or {}).get("address", ""),
            age(dp.get("creationTime"))]


@_guard
def _get(args) -> int:
    if args.kind == "zones":
        from meshway.cli._zones import get_zones

        return get_zones(args)
    if args.kind in _POLICY_LISTS:
        items = _call(args, "GET", f"/meshes/{args.mesh}/{_POLICY_LISTS[args.kind]}").json()["items"]
        _emit(args, items, ["MESH", "NAME", "AGE"], lambda p: [args.mesh, p["name"], age(p.get("creationTime"))])
        return 0
    single = args.kind in ("mesh", "dataplane")
    if single and not args.name:
        raise CliError(f"get {args.kind} needs a NAME")
    if args.kind.startswith("mesh"):
        path, header, row = "/meshes", ["NAME", "mTLS", "LOCALITY", "ZONEEGRESS", "AGE"], _mesh_row
    else:
        path, header, row = f"/meshes/{args.mesh}/dataplanes", ["MESH", "NAME", "TAGS", "ADDRESS", "AGE"], _dataplane_row
    if single:
        item = _call(args, "GET", f"{path}/{args.name}" if args.kind == "dataplane" else f"/meshes/{args.name}").json()
        if args.output == "table":
            print(table(header, [row(item)]), end="")
        else:
            _dump_one(args, item)
        return 0
    _emit(args, _call(args, "GET", path).json()["items"], header, row)
    return 0


def _dump_one(args, item: dict) -> None:
    if args.output == "json":
        print(json.dumps(item, indent=2))
    else:
        import yaml

        print(yaml.safe_dump(item, sort_keys=False), end="")


INSPECT_HEADER = ["MESH", "NAME", "TAGS", "STATUS", "LAST CONNECTED AGO", "LAST UPDATED AGO", "TOTAL UPDATES",
                  "TOTAL ERRORS", "CERT REGENERATED AGO", "CERT EXPIRATION", "CERT REGENERATIONS", "CERT BACKEND",
                  "SUPPORTED CERT BACKENDS", "KUMA-DP VERSION", "ENVOY VERSION", "DEPENDENCIES VERSIONS", "NOTES"]


def inspect_row(item: dict) -> list[str]:
    from meshway.mesh._insights import status

    dp = {"mesh": item["mesh"], "name": item["name"], **item.get("dataplane", {})}
    insight = item.get("dataplaneInsight") or {}
    state, notes = status(dp, insight)
    subs = insight.get("subscriptions") or []
    last = subs[-1] if subs else {}
    totals = [((s.get("status") or {}).get("total") or {}) for s in subs]
    mtls = insight.get("mTLS") or {}
    expiry = mtls.get("certificateExpirationTime")
    version = ((last.get("version") or {}).get("kumaDp") or {}).get("version") or "-"
    return [item["mesh"], item["name"], tags_of(dp), state, age(last.get("connectTime")),
            age((last.get("status") or {}).get("lastUpdateTime")),
            str(sum(int(t.get("responsesSent") or 0) for t in totals)),
            str(sum(int(t.get("responsesRejected") or 0) for t in totals)),
            age(mtls.get("lastCertificateRegeneration")), expiry.replace("T", " ").rstrip("Z") if expiry else "-",
            str(mtls.get("certificateRegenerations") or 0), mtls.get("issuedBackend") or "-",
            ",".join(mtls.get("supportedBackends") or ()) or "-", version, "-", "-",
            "; ".join(notes) or "-"]


@_guard
def _inspect(args) -> int:
    if args.kind == "dataplane":
        from ._explain import inspect_dataplane

        return inspect_dataplane(args)
    wanted = [t.partition("=") for t in args.tag]
    items = _call(args, "GET", f"/meshes/{args.mesh}/dataplanes+insights").json()["items"]
    items = [i for i in items if all(_has_tag(i, k, v) for k, _, v in wanted)]
    _emit(args, items, INSPECT_HEADER, inspect_row)
    return 0


def _has_tag(item: dict, key: str, value: str) -> bool:
    net = (item.get("dataplane") or {}).get("networking") or {}
    return any((p.get("tags") or {}).get(key) == value for p in [*(net.get("inbound") or ()), net.get("gateway") or {}])


# ---- tokens -------------------------------------------------------------------------------------
@_guard
def _generate(args) -> int:
    from meshway.mesh._tokens import parse_duration

    try:
        parse_duration(args.valid_for)
    except ValueError as e:
        raise CliError(f"--valid-for: {e}") from None
    tags = {}
    for item in args.tag:
        key, sep, values = item.partition("=")
        if not sep or not key:
            raise CliError(f"--tag: invalid {item!r} (expected KEY=V1,V2)")
        tags[key] = values
    body = {"name": args.name, "mesh": args.mesh, "tags": tags, "validFor": args.valid_for, "type": args.proxy_type}
    print(_call(args, "POST", "/tokens/dataplane", json=body).text)
    return 0


@_guard
def _revoke(args) -> int:
    token = _read(args.token_file) if args.token_file else args.token
    _call(args, "POST", "/tokens/dataplane/revocations", json={"token": token})
    print("token revoked")
    return 0
