"""`meshway config db_export` / `db_import`: the store to a YAML declarative file, and back."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from meshway.model import parse_declarative, to_declarative
from meshway.store._store import Store


def db_export(store: Store, path: str | os.PathLike) -> None:
    """Write the whole configuration as a Kong-shaped YAML file (atomically replaced)."""
    text = yaml.safe_dump(to_declarative(store.export_snapshot()), sort_keys=False, allow_unicode=True)
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename: a crash leaves the old file or the whole new one
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def db_import(store: Store, path: str | os.PathLike, *, replace: bool = True) -> dict:
    """Validate a declarative file and load it in one transaction; return the snapshot loaded."""
    snapshot = parse_declarative(Path(path).read_text())
    store.import_snapshot(snapshot, replace=replace)
    return snapshot
