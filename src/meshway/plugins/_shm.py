"""Shared counters for plugins: Kong's `ngx.shared` dict, for counting, across a node's workers.

Rules:
- One file per table, `<prefix>/shm/<name>.<regions>`, mmap'ed (MAP_SHARED) by every worker of
  the node. The master empties `<prefix>/shm` before it spawns the workers, so a node starts
  from zero; the first worker that opens a table creates it whole under a temporary name and
  hard-links it into place (`link` fails if another worker won), so nobody sees a half-made
  file. A respawned worker reopens the same file and keeps its region's counts.
- The file holds one region per worker (`regions` = the node's `workers`); region i is
  written only by worker i. A single writer per region needs no lock: an increment is a plain
  read-modify-write of the worker's own cell. A reader sums a key over every region, with
  aligned 8-byte loads (never torn).
- A region is an open-addressing table of `slots` entries of three int64 cells: key hash
  (63-bit blake2b, never 0), expires (unix seconds), count. A key has at most one live entry
  per region, within `PROBES` slots of its home slot. Slots are never emptied, so a hash of 0
  ends a probe chain; an entry whose `expires` has passed is dead and its slot is reused.
- Claiming a slot writes expires=0 (dead) first, then count, hash, and expires last, so a
  reader sees a dead entry or a whole one. (That needs stores to become visible in program
  order, as on x86-64; elsewhere a reader may briefly see a stale count, never a broken table.)
- A key that finds no free slot within `PROBES` is counted in this worker's memory: per-worker
  counting for that key and one log line per table; degraded accuracy, never an error.
- Without a node (unit tests, a standalone worker) a table is an in-process dict with the same
  interface.
"""
from __future__ import annotations

import hashlib
import logging
import mmap
import os
import struct
import threading
from pathlib import Path
from typing import Hashable, Sequence

__all__ = ["InProcessCounters", "ShmCounters", "attach_shared_memory", "reset_shared_memory", "shared_counters",
           "shared_directory"]

log = logging.getLogger("meshway.plugins")

MAGIC = b"MWSHM\x00\x00\x01"
HEADER = struct.Struct("<8sqqq")  # magic, regions, slots, probes
HEADER_CELLS = 8  # 64 bytes, so entries stay 8-byte aligned
ENTRY = 3  # cells per entry: key hash, expires, count
PROBES = 16
DEFAULT_SLOTS = 16384  # per region: 384 KiB, about Kong's 12m rate-limiting dict for a few workers
HASH_CACHE = 65536
_HASH_MASK = (1 << 63) - 1


class InProcessCounters:
    """Expiring counters in this process's memory: key -> [count, expires]."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.counts: dict[Hashable, list[int]] = {}
        self._swept = 0.0
        self.key = str  # the text is the key; str() of a str is that str, at C speed

    def totals(self, keys: Sequence[Hashable], now: float) -> list[int]:
        """The count of each key; 0 for a key never counted or expired."""
        counts, sec = self.counts, int(now)  # expires are whole seconds; int compares are cheaper
        return [e[0] if (e := counts.get(k)) is not None and e[1] > sec else 0 for k in keys]

    def add(self, keys: Sequence[Hashable], expires: Sequence[int], now: float, amount: int = 1) -> None:
        """Count `amount` (one) for each key; a new (or expired) key's entry lives until its `expires`."""
        counts, sec = self.counts, int(now)
        for key, exp in zip(keys, expires):
            entry = counts.get(key)
            if entry is None or entry[1] <= sec:
                counts[key] = [amount, int(exp)]
            else:
                entry[0] += amount
        if now - self._swept >= 1.0:
            self.sweep(now)

    def take(self, keys: Sequence[Hashable], limits: Sequence[float], expires: Sequence[int], now: float) -> list[int]:
        """`totals`, then `add` when every count is below its limit (one call per request)."""
        if len(keys) == 1:  # one period (the usual config): no lists to build and zip
            return [self.take_one(keys[0], limits[0], expires[0], now)]
        counts, sec, found, live = self.counts, int(now), [], []
        for k in keys:
            e = counts.get(k)
            if e is not None and e[1] > sec:
                found.append(e[0])
                live.append(e)
            else:
                found.append(0)
                live.append(None)
        for n, limit in zip(found, limits):
            if n >= limit:
                return found
        for k, exp, e in zip(keys, expires, live):
            if e is None:
                counts[k] = [1, int(exp)]
            else:
                e[0] += 1
        if now - self._swept >= 1.0:
            self.sweep(now)
        return found

    def take_one(self, key: Hashable, limit: float, expires: int, now: float) -> int:
        counts = self.counts
        e = counts.get(key)
        if e is not None and e[1] > int(now):
            n = e[0]
            if n >= limit:
                return n
            e[0] = n + 1
        else:
            n = 0
            if n >= limit:
                return n
            counts[key] = [1, int(expires)]
        if now - self._swept >= 1.0:
            self.sweep(now)
        return n

    def sweep(self, now: float) -> None:
        self._swept = now
        for key in [k for k, (_, exp) in self.counts.items() if exp <= now]:
            del self.counts[key]


class ShmCounters:
    """Expiring counters in a file shared by the node's workers; this worker writes its region."""

    def __init__(self, name: str, mm: mmap.mmap, region: int, regions: int, slots: int) -> None:
        self.name = name
        self._mm = mm
        self.cells = memoryview(mm).cast("q")
        self.mask = slots - 1
        self.bases = tuple(HEADER_CELLS + r * slots * ENTRY for r in range(regions))
        self.own = self.bases[region]
        self.overflow = InProcessCounters(name)
        self.full = False
        # The key's 63-bit hash, the same in every process; a C-level lookup when cached.
        self.key = _Hashes().__getitem__
        # `take_one` in C (meshway.proxy._core._counters) where the compiled core is on.
        self.compiled = _compiled_cells(mm, self.bases, self.own, self.mask, self.overflow.counts)
        # `take_one` for a caller that handles -1 by calling `take_one` itself (rate-limiting, per
        # request): the C step without this method's Python frame; None on the pure path.
        self.fast_take_one = self.compiled.take_fast if self.compiled is not None else None

    def totals(self, keys: Sequence[int], now: float) -> list[int]:
        """Node-wide count of each key: the sum over every worker's region."""
        cells, mask, bases, found = self.cells, self.mask, self.bases, []
        sec = int(now)  # expires are whole seconds; int compares are far cheaper than int-float
        for h in keys:
            home, total = (h & mask) * ENTRY, 0
            for base in bases:
                i = base + home
                if cells[i] == h and cells[i + 1] > sec:  # most keys sit in their home slot
                    total += cells[i + 2]
                elif cells[i]:
                    total += self._probe_count(base, h, sec)
            found.append(total)
        if self.overflow.counts:
            found = [n + m for n, m in zip(found, self.overflow.totals(keys, now))]
        return found

    def take(self, keys: Sequence[int], limits: Sequence[float], expires: Sequence[int], now: float) -> list[int]:
        """`totals`, then `add` when every count is below its limit, in one pass over the regions:
        this worker's live entry of a key, seen while summing, is incremented in place."""
        if len(keys) == 1:  # one period (the usual config): no lists to build and zip
            return [self.take_one(keys[0], limits[0], expires[0], now)]
        cells, sec = self.cells, int(now)
        found, mine = [], []
        for h in keys:
            total, at = self._count(h, sec)
            found.append(total)
            mine.append(at)
        if self.overflow.counts:
            found = [n + m for n, m in zip(found, self.overflow.totals(keys, now))]
        for n, limit in zip(found, limits):
            if n >= limit:
                return found
        for h, exp, at in zip(keys, expires, mine):
            if at >= 0:
                cells[at + 2] += 1  # single writer: the entry is still h's, and live this second
            elif not self._probe_add(h, exp, sec):
                self._overflow(h, exp, now)
        return found

    def _count(self, h: int, sec: int) -> tuple[int, int]:
        """Key h's live count summed over every worker's region, and where this worker's own entry
        of it is (-1: none)."""
        cells, own, home, total, at = self.cells, self.own, (h & self.mask) * ENTRY, 0, -1
        for base in self.bases:
            i = base + home
            if cells[i] == h and cells[i + 1] > sec:
                total += cells[i + 2]
                if base == own:
                    at = i
            elif cells[i]:
                total += self._probe_count(base, h, sec)
        return total, at

    def take_one(self, h: int, limit: float, exp: int, now: float) -> int:
        """`take` of one key: its node-wide count, counted here when below `limit`."""
        compiled = self.compiled
        if compiled is not None:  # the same steps in C: no Python loop over the regions
            extra = self.overflow.totals((h,), now)[0] if self.overflow.counts else 0
            total = compiled.take_one(h, limit, exp, int(now), extra)
            if total < 0:  # to be counted, and this worker's region had no free slot
                total = -1 - total
                self._overflow(h, exp, now)
            return total
        cells, sec = self.cells, int(now)
        total, at = self._count(h, sec)
        if self.overflow.counts:
            total += self.overflow.totals((h,), now)[0]
        if total >= limit:
            return total
        if at >= 0:
            cells[at + 2] += 1  # single writer: the entry is still h's, and live this second
        elif not self._probe_add(h, exp, sec):
            self._overflow(h, exp, now)
        return total

    def _probe_count(self, base: int, h: int, sec: int) -> int:
        """The live count of h in one region, past its home slot."""
        cells, mask, home = self.cells, self.mask, h & self.mask
        for j in range(1, PROBES):
            i = base + ((home + j) & mask) * ENTRY
            seen = cells[i]
            if seen == h and cells[i + 1] > sec:
                return cells[i + 2]
            if seen == 0:
                break
        return 0

    def add(self, keys: Sequence[int], expires: Sequence[int], now: float, amount: int = 1) -> None:
        """Count `amount` (one) for each key in this worker's region."""
        cells, mask, base, sec = self.cells, self.mask, self.own, int(now)
        for h, exp in zip(keys, expires):
            i = base + (h & mask) * ENTRY
            if cells[i] == h and cells[i + 1] > sec:
                cells[i + 2] += amount  # single writer: a plain read-modify-write
            elif not self._probe_add(h, exp, sec, amount):
                self._overflow(h, exp, now, amount)

    def _probe_add(self, h: int, exp: int, sec: int, amount: int = 1) -> bool:
        """Count h in its live entry, else claim the first free or dead slot; False when full."""
        cells, mask, base, home, free = self.cells, self.mask, self.own, h & self.mask, -1
        for j in range(PROBES):
            i = base + ((home + j) & mask) * ENTRY
            seen = cells[i]
            if seen == 0:
                free = i if free < 0 else free
                break
            if cells[i + 1] <= sec:
                free = i if free < 0 else free
            elif seen == h:
                cells[i + 2] += amount
                return True
        if free < 0:
            return False
        cells[free + 1] = 0  # dead while it changes hands (see the module's rules)
        cells[free + 2] = amount
        cells[free] = h
        cells[free + 1] = int(exp)
        return True

    def _overflow(self, h: int, exp: int, now: float, amount: int = 1) -> None:
        if not self.full:
            self.full = True
            log.warning("shared counters %r: table full (%d slots per worker); counting some keys per worker",
                        self.name, self.mask + 1)
        self.overflow.add((h,), (exp,), now, amount)


def _compiled_cells(mm: mmap.mmap, bases: tuple[int, ...], own: int, mask: int, overflow: dict):
    """The C view of a table (`_counters.ShmCells`), or None on the pure path (`http1_impl =
    python`, or the extension not built)."""
    from meshway.proxy import _core

    if _core.compiled is None:
        return None
    try:
        from meshway.proxy._core import _counters
    except ImportError:
        return None
    return _counters.ShmCells(mm, bases, own, mask, PROBES, overflow)


class _Hashes(dict):
    """text -> key_hash(text), computed on first use; emptied when it grows past HASH_CACHE."""

    def __missing__(self, text: str) -> int:
        if len(self) >= HASH_CACHE:
            self.clear()
        h = self[text] = key_hash(text)
        return h


def key_hash(text: str) -> int:
    """A stable 63-bit hash, never 0 (0 marks an empty slot); Python's hash() differs per process."""
    h = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") & _HASH_MASK
    return h or 1


# ---- the tables of this process --------------------------------------------------------------

_lock = threading.Lock()
_tables: dict[str, InProcessCounters | ShmCounters] = {}
_layout: tuple[Path, int, int] | None = None  # directory, this worker's region, regions


def attach_shared_memory(directory: str | Path, worker_id: int, workers: int) -> None:
    """Called once by a node's worker before any config: tables live in `directory` from now on."""
    global _layout
    with _lock:
        _layout = (Path(directory), worker_id, workers)
        _tables.clear()


def shared_directory() -> Path | None:
    """The node's shared-memory directory (`<prefix>/shm`) in a worker; None outside a node."""
    return _layout[0] if _layout is not None else None


def reset_shared_memory(prefix: str | Path) -> Path:
    """Called by the master before it spawns workers: a node starts with empty tables."""
    import shutil  # here: a worker never needs it (with bz2 and lzma, ~0.6 MiB of its memory)

    directory = Path(prefix) / "shm"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def shared_counters(name: str, slots: int = DEFAULT_SLOTS) -> InProcessCounters | ShmCounters:
    """The node-wide counter table `name`; `slots` (per worker) applies when this call creates it."""
    table = _tables.get(name)
    if table is None:
        with _lock:
            table = _tables.get(name) or _open(name, slots)
            _tables[name] = table
    return table


def _open(name: str, slots: int) -> InProcessCounters | ShmCounters:
    if _layout is None:
        return InProcessCounters(name)
    directory, region, regions = _layout
    try:
        mm, regions, slots = _map(directory / f"{name}.{regions}", regions, _pow2(slots))
    except (OSError, ValueError) as e:
        log.error("shared counters %r: %s; counting per worker", name, e)
        return InProcessCounters(name)
    if region >= regions:
        log.error("shared counters %r: worker %d has no region (%d); counting per worker", name, region, regions)
        return InProcessCounters(name)
    return ShmCounters(name, mm, region, regions, slots)


def _map(path: Path, regions: int, slots: int) -> tuple[mmap.mmap, int, int]:
    """Map the table file, creating it if this is the first worker; the header's layout wins."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        fd = _create(path, regions, slots)
    try:
        head = os.pread(fd, HEADER.size, 0).ljust(HEADER.size, b"\0")
        magic, regions, slots, probes = HEADER.unpack(head)
        size = (HEADER_CELLS + regions * slots * ENTRY) * 8
        if magic != MAGIC or probes != PROBES or slots != _pow2(slots) or os.fstat(fd).st_size != size:
            raise ValueError(f"{path} is not a table of this version")
        return mmap.mmap(fd, size, mmap.MAP_SHARED), regions, slots
    finally:
        os.close(fd)


def _create(path: Path, regions: int, slots: int) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, (HEADER_CELLS + regions * slots * ENTRY) * 8)  # zeros: every slot empty
        os.pwrite(fd, HEADER.pack(MAGIC, regions, slots, PROBES), 0)
        os.link(tmp, path)
    except FileExistsError:  # another worker created it first: use theirs
        os.close(fd)
        fd = os.open(path, os.O_RDWR)
    except BaseException:
        os.close(fd)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return fd


def _pow2(n: int) -> int:
    """The smallest power of two >= max(n, PROBES), so a home slot is `hash & mask`."""
    return 1 << (max(n, PROBES) - 1).bit_length()
