"""Plugins shipped with meshway: one module per plugin, each exposing `PLUGIN` (its class)."""
