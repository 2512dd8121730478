"""meshway migrations bootstrap|up|status|reset."""
from __future__ import annotations

import json

from meshway.cli._common import add_node_options, fail, settings_from


def register(sub) -> None:
    p = sub.add_parser("migrations", help="manage the database schema")
    msub = p.add_subparsers(dest="action", metavar="ACTION")
    msub.required = True
    for name, text in (
        ("bootstrap", "create the schema in an empty database"),
        ("up", "run pending migrations"),
        ("status", "show executed and pending migrations"),
        ("reset", "drop everything (asks for --yes)"),
    ):
        q = msub.add_parser(name, help=text)
        add_node_options(q)
        if name == "reset":
            q.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
        q.set_defaults(handler=_run)


def _open(args):
    from meshway.store import open_store

    settings = settings_from(args)
    if settings.database == "off":
        raise SystemExit(fail("migrations need a database (database = off is set)"))
    try:
        return open_store(settings)
    except Exception as e:
        raise SystemExit(fail(f"cannot open the {settings.database} database: {e}"))


def _run(args) -> int:
    store = _open(args)
    try:
        return ACTIONS[args.action](store, args)
    finally:
        store.close()


def _bootstrap(store, args) -> int:
    if store.migrations_status()["bootstrapped"]:
        print("database already bootstrapped")
        return 0
    store.bootstrap()
    print("database is up-to-date")
    return 0


def _up(store, args) -> int:
    status = store.migrations_status()
    if not status["bootstrapped"]:
        return fail("database needs bootstrapping; run 'meshway migrations bootstrap'")
    store.up()
    print("database is up-to-date")
    return 0


def _status(store, args) -> int:
    status = store.migrations_status()
    print(json.dumps(status, indent=2))
    return 0 if status["bootstrapped"] and not status["pending"] else 3


def _reset(store, args) -> int:
    if not args.yes:
        return fail("this drops every entity; run again with --yes to confirm")
    store.reset()
    print("database reset")
    return 0


ACTIONS = {"bootstrap": _bootstrap, "up": _up, "status": _status, "reset": _reset}
