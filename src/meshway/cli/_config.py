"""meshway config parse|db_import|db_export FILE (Kong), write|read|list|delete (Consul, see _zones.py)."""
from __future__ import annotations

from meshway.cli._common import add_node_options, fail, settings_from


def register(sub) -> None:
    p = sub.add_parser("config", help="declarative configuration files")
    csub = p.add_subparsers(dest="action", metavar="ACTION")
    csub.required = True
    for name, text in (
        ("parse", "validate a declarative file and print its summary"),
        ("db_import", "replace the database's entities with a declarative file"),
        ("db_export", "write the database's entities to a declarative file"),
    ):
        q = csub.add_parser(name, help=text)
        add_node_options(q)
        q.add_argument("file", nargs="?" if name == "db_export" else None, default="meshway.yml")
        q.set_defaults(handler=ACTIONS[name])
    from meshway.cli._zones import add_config_verbs

    add_config_verbs(csub)


def _parse(args) -> int:
    from meshway.model import DeclarativeError, parse_declarative

    try:
        with open(args.file) as f:
            snapshot = parse_declarative(f.read())
    except OSError as e:
        return fail(f"cannot read {args.file}: {e.strerror}")
    except DeclarativeError as e:
        errors = getattr(e, "errors", {}) or {}
        lines = [f"  {path}: {msg}" for path, msg in errors.items()] or [f"  {e}"]
        return fail(f"{args.file} is invalid:\n" + "\n".join(lines))
    counts = ", ".join(f"{len(v)} {k}" for k, v in snapshot.items() if isinstance(v, list) and v)
    print(f"parse successful: {counts or 'empty configuration'}")
    return 0


def _with_store(args, action) -> int:
    from meshway.store import open_store

    settings = settings_from(args)
    if settings.database == "off":
        return fail("db_import/db_export need a database (database = off is set)")
    store = open_store(settings)
    try:
        if not store.migrations_status()["bootstrapped"]:
            if settings.database != "sqlite":
                return fail("database needs bootstrapping; run 'meshway migrations bootstrap'")
            store.bootstrap()
        return action(store)
    finally:
        store.close()


def _db_import(args) -> int:
    from meshway.model import DeclarativeError
    from meshway.store import db_import

    def run(store) -> int:
        try:
            db_import(store, args.file)
        except OSError as e:
            return fail(f"cannot read {args.file}: {e.strerror}")
        except DeclarativeError as e:
            errors = getattr(e, "errors", {}) or {}
            return fail(f"{args.file} is invalid: " + "; ".join(f"{p}: {m}" for p, m in errors.items()))
        print(f"import successful from {args.file}")
        return 0

    return _with_store(args, run)


def _db_export(args) -> int:
    from meshway.store import db_export

    def run(store) -> int:
        db_export(store, args.file)
        print(f"export successful to {args.file}")
        return 0

    return _with_store(args, run)


ACTIONS = {"parse": _parse, "db_import": _db_import, "db_export": _db_export}
