"""Password hashing for basicauth_credentials, shared by the model (writes) and basic-auth (reads).

Stored format, one string: ``pbkdf2_sha256$<iterations>$<salt>$<base64 digest>``.
The salt is stored as given (a `$`-free string; the model uses `secrets.token_urlsafe(16)`),
and the iteration count travels with the hash so it can be raised later without breaking
existing credentials: `verify_password` reads it back from the stored value.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

ALGORITHM = "pbkdf2_sha256"
# ~37 ms on the reference VM; basic-auth caches verified passwords so this is paid once per
# (credential, password) and per config, and it runs in a thread, off the event loop.
ITERATIONS = 100_000


def new_salt() -> str:
    """A fresh random salt for `hash_password`."""
    return secrets.token_urlsafe(16)


def hash_password(password: str, salt: str, iterations: int = ITERATIONS) -> str:
    """The stored form of `password` with `salt`."""
    if not salt or "$" in salt:
        raise ValueError("salt must be a non-empty string without '$'")
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"{ALGORITHM}${iterations}${salt}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches a value made by `hash_password`; False for any malformed value."""
    try:
        algorithm, iterations, salt, _ = stored.split("$")
        if algorithm != ALGORITHM:
            return False
        expected = hash_password(password, salt, int(iterations))
    except (ValueError, AttributeError):
        return False
    return hmac.compare_digest(expected.encode(), stored.encode())


def is_password_hash(value: str) -> bool:
    """True when `value` already has the stored format (so the model does not hash it twice)."""
    parts = value.split("$")
    return len(parts) == 4 and parts[0] == ALGORITHM and parts[1].isdigit()
