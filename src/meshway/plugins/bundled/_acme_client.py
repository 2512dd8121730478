"""Ordering a certificate from an ACME server (RFC 8555) for the acme plugin, with certbot's `acme` library.

Blocking (the library is synchronous): callers run it in a thread. The steps are Kong's
client.lua: the account (made once per api_uri + email, its key kept in the storage), a backoff
after a failure (`fail_backoff_minutes`), a lock per host so two orders do not race (an atomic
add: with a shared redis, two nodes neither), the order with its http-01 challenges (key
authorizations put in the storage, where any node's `access` phase finds them), finalization with
a new key (or the previous one on renewal), and a renewal record (`expire_at`) per host. Keys
and values are Kong's (see `_acme_storage`).

The CA's TLS certificate is verified against the node's `lua_ssl_trusted_certificate` (Kong's
setting for the same purpose) when set, else the system's CAs.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from meshway.plugins.bundled.acme import AcmeConfig, certkey_key, challenge_key

DAY = 86400
LOCK_SECONDS = 30
ORDER_SECONDS = 90
CHALLENGE_SECONDS = 3600  # lua-resty-acme's http-01 ttl
RENEW_PREFIX = "kong_acme:renew_config:"
RENEW_LAST_RUN = "kong_acme:renew_last_run"


class AcmeError(Exception):
    """An order failed; the message says why (Kong's texts where it has one)."""


def account_name(conf: AcmeConfig) -> str:
    return f"kong_acme:account:{conf.api_uri}:{base64.b64encode(conf.account_email.encode()).decode()}"


def _pem_key(key: Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def new_key(conf: AcmeConfig) -> Any:
    if conf.cert_type == "ecc":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=conf.rsa_key_size)


def _get(store: Any, key: str) -> dict | None:
    found = store.get(key)
    return json.loads(found) if found else None


def _set(store: Any, key: str, value: dict, ttl: float | None = None) -> None:
    store.set(key, json.dumps(value), ttl)


def account_key(store: Any, conf: AcmeConfig) -> Any:
    """The account's private key, made (RSA 4096, as Kong) and kept on first use."""
    name = account_name(conf)
    found = _get(store, name)
    if found is not None:
        return serialization.load_pem_private_key(found["key"].encode(), None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    _set(store, name, {"key": _pem_key(key)})
    return key


def directory_url(api_uri: str) -> str:
    """Kong's backward compatibility: a bare CA address gets `/directory` (Kong appends it to any
    URL not ending so, which breaks CAs whose directory has another name, as pebble's `/dir`)."""
    from urllib.parse import urlsplit

    if urlsplit(api_uri).path.strip("/"):
        return api_uri
    return api_uri.rstrip("/") + "/directory"


def update_certificate(store: Any, conf: AcmeConfig, host: str, trusted: str | None,
                       previous_key_pem: str | None = None) -> tuple[str, str]:
    """Order a certificate for `host`; returns (fullchain PEM, key PEM). Raises AcmeError."""
    backoff_key = f"kong_acme:fail_backoff:{host}"
    backoff = store.get(backoff_key)
    if backoff is not None and backoff.isdigit():
        wait = int(backoff) - int(time.time())
        raise AcmeError(f"please try again in {wait} seconds for host {host} because of previous failure; "
                        "this is configurable with config.fail_backoff_minutes")
    lock_key = f"kong_acme:update_lock:{host}"
    if not store.add(lock_key, "placeholder", LOCK_SECONDS):
        raise AcmeError(f"update_certificate for {host} is already running")
    try:
        return _order(store, conf, host, trusted, previous_key_pem)
    except Exception as e:
        wait = conf.fail_backoff_minutes * 60
        if wait > 0:
            store.set(backoff_key, "%d" % (time.time() + wait), wait)
        if isinstance(e, AcmeError):
            raise
        raise AcmeError(f"could not create certificate for host: {host} err: {e}") from None
    finally:
        store.delete(lock_key)


def _order(store: Any, conf: AcmeConfig, host: str, trusted: str | None, previous_key_pem: str | None) -> tuple[str, str]:
    import josepy as jose
    from acme import challenges, client, crypto_util, messages

    net = client.ClientNetwork(jose.JWKRSA(key=account_key(store, conf)), user_agent="meshway-acme",
                               verify_ssl=trusted or True)
    directory = client.ClientV2.get_directory(directory_url(conf.api_uri), net)
    acme = client.ClientV2(directory, net)
    registration = messages.NewRegistration.from_data(email=conf.account_email,
                                                      terms_of_service_agreed=conf.tos_accepted or None)
    if conf.eab_kid and conf.eab_hmac_key:
        eab = messages.ExternalAccountBinding.from_data(account_public_key=net.key.public_key(), kid=conf.eab_kid,
                                                        hmac_key=conf.eab_hmac_key, directory=directory)
        registration = registration.update(external_account_binding=eab)
    try:
        acme.new_account(registration)
    except Exception as e:  # an account for this key exists already: use it
        from acme.errors import ConflictError

        if not isinstance(e, ConflictError):
            raise
        net.account = messages.RegistrationResource(uri=e.location, body=messages.Registration())
    key = serialization.load_pem_private_key(previous_key_pem.encode(), None) if previous_key_pem else new_key(conf)
    key_pem = _pem_key(key)
    order = acme.new_order(crypto_util.make_csr(key_pem.encode(), [host]))
    tokens = []
    try:
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue  # the CA reuses a recent validation (Let's Encrypt: 30 days): nothing to answer
            body = next((c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
            if body is None:
                raise AcmeError(f"the CA offers no http-01 challenge for {host}")
            response, validation = body.response_and_validation(net.key)
            token = body.chall.encode("token")
            tokens.append(token)
            store.set(challenge_key(token), validation, CHALLENGE_SECONDS)
            acme.answer_challenge(body, response)
        deadline = dt.datetime.now() + dt.timedelta(seconds=ORDER_SECONDS)
        done = acme.poll_and_finalize(order, deadline=deadline)
    finally:
        for token in tokens:
            store.delete(challenge_key(token))
    chain = _preferred(done, conf.preferred_chain)
    return chain, key_pem


def _preferred(order: Any, preferred: str | None) -> str:
    """The chain whose top certificate's issuer CN is `preferred_chain`, else the default one."""
    if preferred:
        for chain in [order.fullchain_pem, *(order.alternative_fullchains_pem or [])]:
            certs = x509.load_pem_x509_certificates(chain.encode())
            cns = certs[-1].issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            if cns and cns[0].value == preferred:
                return chain
    return order.fullchain_pem


def store_renew_config(store: Any, host: str) -> None:
    _set(store, RENEW_PREFIX + host, {"host": host, "expire_at": time.time() + 90 * DAY})


def store_certkey(store: Any, host: str, cert: str, key: str) -> None:
    _set(store, certkey_key(host), {"cert": cert, "key": key})


def load_stored_certkey(store: Any, host: str) -> tuple[str, str] | None:
    found = _get(store, certkey_key(host))
    return (found["cert"], found["key"]) if found and found.get("cert") and found.get("key") else None


def renew_hosts(store: Any) -> list[str]:
    return [key[len(RENEW_PREFIX):] for key in store.list(RENEW_PREFIX)]


def describe(cert_pem: str) -> dict[str, Any]:
    """Kong's parse_certkey: what GET /acme/certificates shows of one certificate."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())

    def cn(name: x509.Name) -> str | None:
        found = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return found[0].value if found else None

    try:
        host = cn(cert.subject) or cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)[0]
    except (x509.ExtensionNotFound, IndexError):
        host = None
    before, after = cert.not_valid_before_utc, cert.not_valid_after_utc
    now = dt.datetime.now(dt.timezone.utc)
    pub = cert.public_key()
    return {
        "digest": cert.fingerprint(cert.signature_hash_algorithm or _sha256()).hex(":").upper(),
        "host": host, "issuer_cn": cn(cert.issuer),
        "not_before": before.strftime("%Y-%m-%d %H:%M:%S"), "not_after": after.strftime("%Y-%m-%d %H:%M:%S"),
        "valid": before < now < after,
        "serial_number": format(cert.serial_number, "X").rjust(2, "0"),
        "pubkey_type": "rsaEncryption" if isinstance(pub, rsa.RSAPublicKey) else "id-ecPublicKey",
    }


def expires_within(cert_pem: str, seconds: float) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return cert.not_valid_after_utc.timestamp() - seconds <= time.time()


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def dumps(value: Any) -> str:
    return json.dumps(value)
