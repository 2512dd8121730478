"""The store's own error (Kong-shaped entity errors live in meshway.model)."""


class StoreError(RuntimeError):
    """The database is unreachable, not bootstrapped, or refused an operation."""
