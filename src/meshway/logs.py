"""Logging set-up shared by the master and the workers: Kong's levels, one error log per prefix."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

NOTICE = 25
logging.addLevelName(NOTICE, "notice")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": NOTICE, "warn": logging.WARNING,
          "error": logging.ERROR, "crit": logging.CRITICAL}
FORMAT = "%(asctime)s [%(levelname)s] %(process)d %(name)s: %(message)s"


def setup(level: str, error_log: Path | None, stderr: bool) -> None:
    """Send meshway's log records to the error log file (and stderr in the foreground)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = logging.Formatter(FORMAT)
    if error_log is not None:
        error_log.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(error_log)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    if stderr:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(LEVELS[level])
    logging.getLogger("uvicorn.error").setLevel(max(LEVELS[level], logging.WARNING))


def notice(logger: logging.Logger, msg: str, *args) -> None:
    logger.log(NOTICE, msg, *args)
