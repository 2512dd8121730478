"""Writing key material: never clobber by accident, never leave a readable key behind."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def refuse_existing(*paths: str | os.PathLike, force: bool) -> None:
    """Raise FileExistsError naming every existing path unless `force`."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not force:
        raise FileExistsError(f"{', '.join(existing)} already exist(s); use force=True (--force) to overwrite")


def write_private(path: str | os.PathLike, data: bytes, mode: int = 0o600) -> None:
    """Atomically write `data` with `mode`: temp file in the same dir, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600 under a fresh name: the bytes are never visible more widely.
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)
