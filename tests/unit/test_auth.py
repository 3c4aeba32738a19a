"""OIDC verification of direct HTTP callers, against real RS256 tokens and a local certs server.

Tokens are signed with google-auth's own JWT encoder and a freshly generated RSA key; the
matching X.509 certificate is served as Google's v1 certs endpoint serves them (`{kid: PEM}`)
from an `http.server` on a free loopback port. Nothing leaves the machine.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from triggers.errors import Unauthorized
from triggers.function.app import build_authenticator
from triggers.function.auth import (
    MAX_CERTS_TTL,
    MIN_CERTS_TTL,
    CertificatesUnavailable,
    OIDCAuthenticator,
    _lifetime,
    parse_audiences,
)
from triggers.function.settings import Settings

AUDIENCE = "https://europe-west1-demo.cloudfunctions.net/triggers"
SCHEDULER_SA = "scheduler@demo-project.iam.gserviceaccount.com"


class Key:
    """An RSA key pair, its key id, and the self-signed certificate Google would publish."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accounts.google.com")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(private, hashes.SHA256())
        )
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()

        self._signers: dict[str, crypt.RSASigner] = {}

    def sign(self, payload: dict[str, Any], kid: str | None = None) -> str:
        kid = kid or self.kid
        if kid not in self._signers:  # loading a private key is slow (~50 ms): once per kid
            self._signers[kid] = crypt.RSASigner.from_string(self.private_pem, kid)
        return jwt.encode(self._signers[kid], payload).decode()


@pytest.fixture(scope="module")
def key() -> Key:
    return Key("key-1")


@pytest.fixture(scope="module")
def other_key() -> Key:
    return Key("key-2")


class CertsServer:
    """Google's v1 certs endpoint, locally: `{kid: PEM}` with a Cache-Control header."""

    def __init__(self) -> None:
        self.certs: dict[str, str] = {}
        self.status = 200
        self.raw: bytes | None = None  # a body other than the certificates
        self.cache_control = "public, max-age=21600, must-revalidate, no-transform"
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests += 1
                body = server.raw if server.raw is not None else json.dumps(server.certs).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Cache-Control", server.cache_control)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/oauth2/v1/certs"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def publish(self, *keys: Key) -> None:
        self.certs = {k.kid: k.cert_pem for k in keys}


@pytest.fixture(scope="module")
def _served(key: Key) -> Iterator[CertsServer]:
    with pytest.MonkeyPatch.context() as patch:
        # Loopback only, whatever proxy the environment configures.
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        patch.setenv("no_proxy", "127.0.0.1,localhost")
        server = CertsServer()
        server.thread.start()
        try:
            yield server
        finally:
            server.httpd.shutdown()
            server.httpd.server_close()


@pytest.fixture
def certs_server(_served: CertsServer, key: Key) -> CertsServer:
    """The module's server, reset: publishing `key`, healthy, cacheable, no requests seen."""
    _served.publish(key)
    _served.status = 200
    _served.raw = None
    _served.cache_control = "public, max-age=21600, must-revalidate, no-transform"
    _served.requests = 0
    return _served


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_auth(certs_server: CertsServer, clock: FakeClock):
    def make(allowed=(SCHEDULER_SA,), **kwargs: Any) -> OIDCAuthenticator:
        return OIDCAuthenticator(
            AUDIENCE, allowed, certs_url=certs_server.url, clock=clock, **kwargs
        )

    return make


def claims(**changes: Any) -> dict[str, Any]:
    """What Cloud Scheduler's OIDC token carries, one hour valid from now."""
    now = int(time.time())
    payload = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "azp": "1234567890",
        "sub": "1234567890",
        "email": SCHEDULER_SA,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def bearer(token: str) -> str:
    return f"Bearer {token}"


def refused(auth: OIDCAuthenticator, authorization: str | None) -> Unauthorized:
    with pytest.raises(Unauthorized) as caught:
        auth.verify(authorization)
    return caught.value


# -- accepted ----------------------------------------------------------------------------------


def test_given_a_scheduler_token_when_verified_then_its_claims_are_returned(make_auth, key):
    result = make_auth().verify(bearer(key.sign(claims())))
    assert result["email"] == SCHEDULER_SA
    assert result["aud"] == AUDIENCE
    assert result["iss"] == "https://accounts.google.com"


@pytest.mark.parametrize("issuer", ["accounts.google.com", "https://accounts.google.com"])
def test_both_google_issuer_spellings_are_accepted(make_auth, key, issuer):
    assert make_auth().verify(bearer(key.sign(claims(iss=issuer))))["iss"] == issuer


def test_scheme_is_case_insensitive_and_surrounding_spaces_are_ignored(make_auth, key):
    token = key.sign(claims())
    assert make_auth().verify(f"  bearer   {token}  ")["email"] == SCHEDULER_SA


def test_allowed_emails_compare_case_insensitively(make_auth, key):
    auth = make_auth(allowed=[SCHEDULER_SA.upper(), " "])
    assert auth.allowed_emails == {SCHEDULER_SA}
    assert auth.verify(bearer(key.sign(claims())))["email"] == SCHEDULER_SA


def test_given_no_allowed_list_then_any_verified_email_is_accepted(make_auth, key):
    auth = make_auth(allowed=())
    stranger = "someone@other-project.iam.gserviceaccount.com"
    assert auth.verify(bearer(key.sign(claims(email=stranger))))["email"] == stranger
    # ... but still only a verified one
    assert (
        refused(auth, bearer(key.sign(claims(email=stranger, email_verified=False)))).status == 403
    )


def test_clock_skew_tolerates_a_token_that_just_expired(make_auth, key):
    now = int(time.time())
    token = key.sign(claims(iat=now - 3600, exp=now - 3))
    assert make_auth(clock_skew_seconds=30).verify(bearer(token))["email"] == SCHEDULER_SA
    assert "expired" in refused(make_auth(clock_skew_seconds=0), bearer(token)).message


# -- refused: 401 ------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "", "   "])
def test_missing_header_is_401(make_auth, authorization):
    error = refused(make_auth(), authorization)
    assert (error.status, error.message) == (401, "missing Authorization header")


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwYXNz", "Token abc.def.ghi", "abc.def.ghi"]
)
def test_non_bearer_scheme_is_401(make_auth, authorization):
    error = refused(make_auth(), authorization)
    assert error.status == 401 and "Bearer" in error.message


def test_bearer_without_a_token_is_401(make_auth):
    error = refused(make_auth(), "Bearer ")
    assert error.status == 401 and "empty" in error.message


@pytest.mark.parametrize(
    "token", ["not-a-jwt", "a.b", "a.b.c.d", "..", "!!!.e30.sig", "WzFd.e30.sig"]
)
def test_malformed_token_is_401_without_fetching_certs(make_auth, certs_server, token):
    error = refused(make_auth(), bearer(token))
    assert error.status == 401 and error.message.startswith("malformed token")
    assert certs_server.requests == 0


def test_wrong_audience_is_401(make_auth, key):
    token = key.sign(claims(aud="https://elsewhere.example/fn"))
    error = refused(make_auth(), bearer(token))
    assert error.status == 401
    assert (
        error.message
        == "token audience 'https://elsewhere.example/fn' is not this function's audience"
    )


def test_expired_token_is_401(make_auth, key):
    now = int(time.time())
    error = refused(make_auth(), bearer(key.sign(claims(iat=now - 7200, exp=now - 3600))))
    assert (error.status, error.message) == (401, "token expired")


def test_token_issued_in_the_future_is_401(make_auth, key):
    now = int(time.time())
    error = refused(make_auth(), bearer(key.sign(claims(iat=now + 600, exp=now + 4200))))
    assert (error.status, error.message) == (401, "token used before its issue time")


def test_token_without_exp_is_401(make_auth, key):
    error = refused(make_auth(), bearer(key.sign(claims(exp=None))))
    assert error.status == 401 and "exp" in error.message


@pytest.mark.parametrize("issuer", ["https://securetoken.google.com/demo", "evil.example", None])
def test_wrong_issuer_is_401(make_auth, key, issuer):
    error = refused(make_auth(), bearer(key.sign(claims(iss=issuer))))
    assert error.status == 401 and "issuer" in error.message and "not Google" in error.message


def test_unknown_key_id_is_401(make_auth, key, other_key):
    token = other_key.sign(claims())  # kid key-2: not published
    error = refused(make_auth(), bearer(token))
    assert (error.status, error.message) == (401, "token signed with an unknown key id 'key-2'")


def test_signature_by_another_key_under_a_known_key_id_is_401(make_auth, key, other_key):
    token = other_key.sign(claims(), kid=key.kid)
    error = refused(make_auth(), bearer(token))
    assert (error.status, error.message) == (401, "token signature is invalid")


def test_tampered_payload_is_401(make_auth, key):
    header, _, signature = key.sign(claims()).split(".")
    forged = jwt._helpers.unpadded_urlsafe_b64encode(
        json.dumps(claims(email="attacker@evil.example")).encode()
    ).decode()
    error = refused(make_auth(allowed=()), bearer(f"{header}.{forged}.{signature}"))
    assert (error.status, error.message) == (401, "token signature is invalid")


def test_unsigned_alg_none_token_is_401(make_auth, key):
    encode = jwt._helpers.unpadded_urlsafe_b64encode
    header = encode(json.dumps({"alg": "none", "kid": key.kid}).encode()).decode()
    body = encode(json.dumps(claims()).encode()).decode()
    error = refused(make_auth(), bearer(f"{header}.{body}.c2ln"))
    assert error.status == 401 and "algorithm" in error.message


# -- refused: 403 ------------------------------------------------------------------------------


def test_email_not_in_the_allowed_list_is_403(make_auth, key):
    token = key.sign(claims(email="intruder@demo-project.iam.gserviceaccount.com"))
    error = refused(make_auth(), bearer(token))
    assert error.status == 403
    assert error.message == (
        "'intruder@demo-project.iam.gserviceaccount.com' is not allowed to call this function"
    )


@pytest.mark.parametrize("verified", [False, "false", None])
def test_unverified_email_is_403_even_when_allowed(make_auth, key, verified):
    error = refused(make_auth(), bearer(key.sign(claims(email_verified=verified))))
    assert error.status == 403 and "not verified" in error.message


def test_token_without_email_is_403(make_auth, key):
    error = refused(make_auth(allowed=()), bearer(key.sign(claims(email=None))))
    assert (error.status, error.message) == (403, "token has no email claim")


# -- certificates: fetched once, refreshed when due --------------------------------------------


def test_certs_are_fetched_once_for_many_verifications(make_auth, certs_server, key):
    auth = make_auth()
    for _ in range(25):
        auth.verify(bearer(key.sign(claims())))
    for bad in (claims(aud="https://elsewhere.example"), claims(email="x@y.z")):
        with pytest.raises(Unauthorized):
            auth.verify(bearer(key.sign(bad)))
    assert certs_server.requests == 1


def test_certs_are_fetched_again_once_their_max_age_has_passed(make_auth, certs_server, key, clock):
    certs_server.cache_control = "public, max-age=300"
    auth = make_auth()
    auth.verify(bearer(key.sign(claims())))
    clock.now += 299
    auth.verify(bearer(key.sign(claims())))
    assert certs_server.requests == 1
    clock.now += 2
    auth.verify(bearer(key.sign(claims())))
    auth.verify(bearer(key.sign(claims())))
    assert certs_server.requests == 2


def test_a_no_cache_endpoint_is_still_not_fetched_per_request(make_auth, certs_server, key, clock):
    certs_server.cache_control = "no-cache"
    auth = make_auth()
    for _ in range(5):
        auth.verify(bearer(key.sign(claims())))
    assert certs_server.requests == 1
    clock.now += MIN_CERTS_TTL + 1
    auth.verify(bearer(key.sign(claims())))
    assert certs_server.requests == 2


def test_given_google_rotated_its_keys_then_an_unknown_kid_refetches_once(
    make_auth, certs_server, key, other_key, clock
):
    auth = make_auth()
    auth.verify(bearer(key.sign(claims())))
    certs_server.publish(key, other_key)  # the new key appears before our cache expires
    # A freshly fetched set is not refetched: unknown kids cannot make us hammer the endpoint.
    assert refused(auth, bearer(other_key.sign(claims()))).status == 401
    assert certs_server.requests == 1
    clock.now += 61
    assert auth.verify(bearer(other_key.sign(claims())))["email"] == SCHEDULER_SA
    assert certs_server.requests == 2
    # A kid that is still unknown after the refetch is refused, with no more fetches.
    assert refused(auth, bearer(Key("key-3").sign(claims()))).status == 401
    assert certs_server.requests == 2


def test_given_the_certs_endpoint_fails_then_verification_is_unavailable_not_unauthorized(
    make_auth, certs_server, key
):
    certs_server.status = 500
    with pytest.raises(CertificatesUnavailable):
        make_auth().verify(bearer(key.sign(claims())))


def test_given_the_certs_endpoint_is_unreachable_then_verification_is_unavailable(key, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    auth = OIDCAuthenticator(
        AUDIENCE, certs_url=f"http://127.0.0.1:{port}/certs", fetch_timeout_seconds=2
    )
    with pytest.raises(CertificatesUnavailable, match="cannot fetch the token certificates"):
        auth.verify(bearer(key.sign(claims())))


@pytest.mark.parametrize("raw", [b"<html>maintenance</html>", b"[]", b"{}"])
def test_given_the_certs_endpoint_answers_garbage_then_unavailable_and_nothing_cached(
    make_auth, certs_server, key, raw
):
    certs_server.raw = raw
    auth = make_auth()
    with pytest.raises(CertificatesUnavailable):
        auth.verify(bearer(key.sign(claims())))
    certs_server.raw = None
    assert auth.verify(bearer(key.sign(claims())))["email"] == SCHEDULER_SA
    assert certs_server.requests == 2


def test_given_a_refetch_answers_garbage_then_the_cached_certs_are_kept(
    make_auth, certs_server, key, clock
):
    auth = make_auth()
    auth.verify(bearer(key.sign(claims())))
    clock.now += MAX_CERTS_TTL + 1
    certs_server.raw = b"<html>maintenance</html>"
    assert auth.verify(bearer(key.sign(claims())))["email"] == SCHEDULER_SA
    assert certs_server.requests == 2


def test_given_a_refetch_fails_then_the_cached_certs_are_used_a_while_longer(
    make_auth, certs_server, key, clock
):
    auth = make_auth()
    auth.verify(bearer(key.sign(claims())))
    clock.now += MAX_CERTS_TTL + 1
    certs_server.status = 503
    assert auth.verify(bearer(key.sign(claims())))["email"] == SCHEDULER_SA
    assert auth.verify(bearer(key.sign(claims())))["email"] == SCHEDULER_SA
    assert certs_server.requests == 2  # one failed refetch, then the stale copy for a while
    certs_server.status = 200
    clock.now += 31
    auth.verify(bearer(key.sign(claims())))
    assert certs_server.requests == 3


def test_concurrent_first_verifications_share_one_fetch(make_auth, certs_server, key):
    auth = make_auth()
    token = bearer(key.sign(claims()))
    errors: list[BaseException] = []

    def verify() -> None:
        try:
            auth.verify(token)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=verify) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert certs_server.requests == 1


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"Cache-Control": "public, max-age=21600, must-revalidate"}, 21600),
        ({"cache-control": "max-age=3600", "Age": "600"}, 3000),
        ({"Cache-Control": "no-store"}, MIN_CERTS_TTL),
        ({"Cache-Control": "max-age=999999999"}, MAX_CERTS_TTL),
        ({"Cache-Control": "max-age=oops"}, 300),
        ({}, 300),
        (
            {"Expires": "Sat, 21 Nov 2026 13:00:00 GMT", "Date": "Sat, 21 Nov 2026 12:00:00 GMT"},
            3600,
        ),
        ({"Expires": "0"}, MIN_CERTS_TTL),
    ],
)
def test_cache_lifetime_follows_the_http_headers(headers, expected):
    assert _lifetime(headers) == expected


# -- hygiene -----------------------------------------------------------------------------------


def test_the_token_never_appears_in_messages_or_logs(make_auth, key, other_key, caplog):
    caplog.set_level(logging.DEBUG)
    auth = make_auth()
    good = key.sign(claims())
    tokens = [
        good[:-1],  # two dots but a broken signature
        good.replace(".", "", 1),  # one dot: google-auth would quote the token
        good + ".x",
        key.sign(claims(aud="other")),
        other_key.sign(claims()),
        key.sign(claims(email="x@y.z")),
    ]
    messages = []
    for token in tokens:
        with pytest.raises(Unauthorized) as caught:
            auth.verify(bearer(token))
        messages.append(caught.value.message)
    secrets = [good.split(".")[1], good.split(".")[2]] + [t.split(".")[-1] for t in tokens[3:]]
    for secret in secrets:
        assert all(secret not in m for m in messages)
        assert secret not in caplog.text
    for token in tokens:
        assert token not in caplog.text


def test_an_audience_is_required():
    with pytest.raises(ValueError):
        OIDCAuthenticator("  ")


def test_settings_build_the_authenticator_only_when_an_audience_is_set():
    assert build_authenticator(Settings(ledger="memory")) is None
    auth = build_authenticator(
        Settings(ledger="memory", oidc_audience=AUDIENCE, oidc_allowed_emails=(SCHEDULER_SA,))
    )
    assert isinstance(auth, OIDCAuthenticator)
    assert (auth.audience, auth.allowed_emails) == (AUDIENCE, {SCHEDULER_SA})


def test_allowed_emails_setting_reads_a_json_list(monkeypatch):
    monkeypatch.setenv("TRIGGERS_OIDC_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("TRIGGERS_OIDC_ALLOWED_EMAILS", json.dumps([SCHEDULER_SA, "b@x.iam"]))
    auth = build_authenticator(Settings())
    assert auth.allowed_emails == {SCHEDULER_SA, "b@x.iam"}


# -- several audiences: Eventarc's tokens carry the Cloud Run service's run.app URL ----------------

# What the Terraform module sets for a function `triggers` (terraform/function.tf, oidc_audiences).
MODULE_AUDIENCES = json.dumps(
    [
        AUDIENCE,
        "https://triggers-123456789012.europe-west1.run.app",
        "https://triggers-*-*.a.run.app",
    ]
)


@pytest.mark.parametrize(
    "aud",
    [
        AUDIENCE,  # Scheduler jobs and push subscriptions
        "https://triggers-123456789012.europe-west1.run.app",  # Eventarc, deterministic URL
        "https://triggers-abcdefghij-ew.a.run.app",  # Eventarc, the service's hashed URL
    ],
)
def test_every_audience_the_module_configures_is_accepted(certs_server, clock, key, aud):
    auth = OIDCAuthenticator(
        parse_audiences(MODULE_AUDIENCES),
        (SCHEDULER_SA,),
        certs_url=certs_server.url,
        clock=clock,
    )
    assert auth.verify(bearer(key.sign(claims(aud=aud))))["aud"] == aud


@pytest.mark.parametrize(
    "aud",
    [
        "https://triggers-reconcile-abcdefghij-ew.a.run.app",  # another service of the module
        "https://other-abcdefghij-ew.a.run.app",
        "https://triggers-abcdefghij-ew.a.run.app.evil.example",
        "https://triggers-123456789012.europe-west1.run.app/extra",
        "https://triggers-ABC-ew.a.run.app",
    ],
)
def test_audiences_outside_the_list_and_its_patterns_are_refused(certs_server, clock, key, aud):
    auth = OIDCAuthenticator(
        parse_audiences(MODULE_AUDIENCES),
        (SCHEDULER_SA,),
        certs_url=certs_server.url,
        clock=clock,
    )
    error = refused(auth, bearer(key.sign(claims(aud=aud))))
    assert error.status == 401 and "is not this function's audience" in error.message


def test_the_audience_setting_takes_one_url_or_a_json_list(monkeypatch):
    assert parse_audiences(AUDIENCE) == (AUDIENCE,)
    assert parse_audiences(MODULE_AUDIENCES)[1:] == (
        "https://triggers-123456789012.europe-west1.run.app",
        "https://triggers-*-*.a.run.app",
    )
    with pytest.raises(ValueError):
        parse_audiences('["https://a.example", 1]')
    monkeypatch.setenv("TRIGGERS_OIDC_AUDIENCE", MODULE_AUDIENCES)
    auth = build_authenticator(Settings())
    assert auth.audiences == tuple(json.loads(MODULE_AUDIENCES))
