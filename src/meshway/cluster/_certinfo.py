"""Facts about a peer certificate that the status endpoints show."""
from __future__ import annotations

from cryptography import x509


def expiry_timestamp(der: bytes | None) -> int | None:
    """The certificate's notAfter as a Unix timestamp, or None if there is no usable certificate."""
    if not der:
        return None
    try:
        return int(x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp())
    except ValueError:
        return None
