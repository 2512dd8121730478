"""meshway: an API gateway and service mesh with a Kong-compatible Admin API."""

__version__ = "0.1.0"
