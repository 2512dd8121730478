"""PostgreSQL LISTEN/NOTIFY: a node hears at once that another node on the database wrote a change.

Rules:
- Every configuration write (`Store._write`) bumps the version row and, on PostgreSQL, sends
  `NOTIFY meshway_changes` in the same transaction: PostgreSQL delivers it at commit, to every
  session listening, on every node (Kuma's store does the same with a trigger and
  `pg_notify('resource_events', ...)`).
- A node with PostgreSQL keeps one connection of its own listening (`ChangeListener`, a thread),
  and each notification wakes its store poller at once, instead of at the next
  `db_update_frequency` tick.
- The version row stays the truth and the poller keeps polling (Kong's `db_update_frequency`):
  a notification lost while the listening connection was down costs at most one poll interval.
  The listener reconnects with a capped backoff, and wakes the poller once it is back.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

log = logging.getLogger("meshway.store")
CHANNEL = "meshway_changes"
STOP_CHECK = 1.0  # seconds between two looks at the stop flag while waiting for notifications


def notify_sql() -> str:
    return f"NOTIFY {CHANNEL}"


class ChangeListener:
    """LISTEN on its own PostgreSQL connection; `on_change()` (from its thread) per notification."""

    def __init__(self, engine: Any, on_change: Callable[[], None]) -> None:
        self._connect_args = engine.dialect.create_connect_args(engine.url)
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meshway-pg-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(STOP_CHECK + 2)

    def _run(self) -> None:
        delay, failing = 1.0, False
        while not self._stop.is_set():
            try:
                self._listen(failing)
                delay, failing = 1.0, False
            except Exception as e:  # the database went away: poll meanwhile, listen again later
                if not failing:
                    log.warning("listening for changes made through other nodes failed (%s); polling every "
                                "db_update_frequency until it is back", e)
                failing = True
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _listen(self, recovered: bool) -> None:
        import psycopg

        args, kwargs = self._connect_args
        # bounded connect; TCP keepalives so that a connection dead without a FIN (a partition) ends
        # and is made again, rather than listening to nothing until the next restart
        options = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                   "keepalives_count": 3, **kwargs, "autocommit": True}
        with psycopg.connect(*args, **options) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            if recovered:
                log.warning("listening for changes made through other nodes again")
                self._on_change()  # what was written while we were away
            while not self._stop.is_set():
                for _ in conn.notifies(timeout=STOP_CHECK, stop_after=1):
                    self._on_change()
