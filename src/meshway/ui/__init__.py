"""The dashboard: server-rendered pages over the Admin API, served on `admin_gui_listen`.

    create_gui_app(*, settings, admin_app, config_hash=lambda: None) -> Starlette
    gui_urls(settings, specs) -> list[str]      # what `meshway start` prints

Every read and write goes through the node's own Admin API app, in process (ASGI), with the
user's `Kong-Admin-Token` when `admin_auth = token`: its validation, its errors and its access
rules are the dashboard's, so nothing here is a second way around them. Pages are plain HTML
tables and forms (readable with curl, usable without JavaScript); `static/app.js` only refreshes
the live parts.
"""
from meshway.ui._app import create_gui_app, gui_urls

__all__ = ["create_gui_app", "gui_urls"]
