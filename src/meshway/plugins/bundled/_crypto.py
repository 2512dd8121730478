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

ALGORITHM = "pbkdf2_sha256"
# ~37 ms on the reference VM; basic-auth caches verified passwords so this is paid once per
# (credential, password) and per config, and it runs in a thread, off the event loop.
ITERATIONS = 100_000


def new_salt() -> str:
    """A fresh random salt for `hash_password`."""
    import secrets  # the Admin API's writes make salts; a proxy worker never does

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


# oauth2 `hash_secret`: Kong's PHC string, `$pbkdf2-sha512$i=10000,l=32$<salt>$<hash>` (base64
# without padding), so client secrets hashed by Kong (a deck dump) verify here unchanged.
SECRET_PREFIX = "$pbkdf2-sha512$"


def hash_client_secret(secret: str, iterations: int = 10_000, salt: bytes | None = None) -> str:
    """An oauth2 client secret's stored form, as Kong writes it."""
    if salt is None:
        import secrets  # as in new_salt: the Admin API's writes hash secrets, a proxy worker never does

        salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations, 32)
    return f"{SECRET_PREFIX}i={iterations},l=32${_b64(salt)}${_b64(digest)}"


def verify_client_secret(secret: str | None, stored: str) -> bool:
    """True when `secret` matches a `hash_client_secret` value; False for any malformed one."""
    try:
        _, ident, params, salt, digest = stored.split("$")
        opts = dict(p.split("=", 1) for p in params.split(","))
        iterations, length = int(opts["i"]), int(opts.get("l", 32))
        if ident != "pbkdf2-sha512" or not 0 < iterations <= 1_000_000 or not 0 < length <= 64 or secret is None:
            return False
        expected = hashlib.pbkdf2_hmac("sha512", secret.encode(), _unb64(salt), iterations, length)
        return hmac.compare_digest(expected, _unb64(digest))
    except (ValueError, KeyError, TypeError, UnicodeEncodeError):
        return False


def is_client_secret_hash(value: str) -> bool:
    return value.startswith(SECRET_PREFIX) and value.count("$") == 4


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
