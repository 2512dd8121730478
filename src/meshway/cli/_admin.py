"""meshway admin token create|list|revoke: Admin API tokens in the prefix's database.

Like `meshway migrations`, these commands work on the database itself (not through the Admin
API), so the first token can be made before the Admin API requires one.
"""
from __future__ import annotations

import datetime
import json

from meshway.cli._common import add_node_options, fail, settings_from


def register(sub) -> None:
    p = sub.add_parser("admin", help="Admin API access: tokens for admin_auth = token")
    asub = p.add_subparsers(dest="admin_group", metavar="GROUP")
    asub.required = True
    t = asub.add_parser("token", help="create, list or revoke Admin API tokens (sent as Kong-Admin-Token)")
    tsub = t.add_subparsers(dest="action", metavar="ACTION")
    tsub.required = True
    for name, text, handler in (
        ("create", "create a token and print it (the only time it is shown)", _create),
        ("list", "list the tokens' names and creation times (never their values)", _list),
        ("revoke", "revoke a token: requests carrying it are refused at once", _revoke),
    ):
        q = tsub.add_parser(name, help=text)
        if name != "list":
            q.add_argument("name", metavar="NAME", help="the token's name (who or what uses it)")
        else:
            q.add_argument("--json", action="store_true", help="print JSON")
        add_node_options(q)
        q.set_defaults(handler=_run(handler))


def _run(action):
    def handler(args) -> int:
        from meshway.store import StoreError

        store = _open(args)
        try:
            return action(store.admin_tokens, args)
        except StoreError as e:
            return fail(str(e))
        finally:
            store.close()

    return handler


def _open(args):
    from meshway.store import open_store

    settings = settings_from(args)
    if settings.database == "off":
        raise SystemExit(fail("Admin API tokens are kept in the database (database = off is set)"))
    try:
        # SQLite is made on first use, as `meshway start` does; PostgreSQL needs `migrations bootstrap`.
        store = open_store(settings, bootstrap=settings.database == "sqlite")
        status = store.migrations_status()
    except Exception as e:
        raise SystemExit(fail(f"cannot open the {settings.database} database: {e}"))
    if not status["bootstrapped"]:
        store.close()
        raise SystemExit(fail("database needs bootstrapping; run 'meshway migrations bootstrap'"))
    if status["pending"]:
        store.close()
        raise SystemExit(fail(f"database has pending migrations ({', '.join(status['pending'])}); "
                              "run 'meshway migrations up'"))
    return store


def _create(tokens, args) -> int:
    token = tokens.create(args.name)
    print(token)
    return 0


def _list(tokens, args) -> int:
    rows = tokens.list()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        created = datetime.datetime.fromtimestamp(row["created_at"], datetime.timezone.utc)
        print(f"{row['name']}\tcreated {created:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def _revoke(tokens, args) -> int:
    if not tokens.revoke(args.name):
        return fail(f"no token named {args.name!r}")
    print(f"token {args.name!r} revoked")
    return 0
