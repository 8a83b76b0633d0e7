"""Tests for lambda_app/auth.py: keys made at test time, tokens signed with PyJWT, no network."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from lambda_app.auth import (
    Authenticator,
    AuthError,
    JwtVerifier,
    Principal,
    RemoteJwks,
    SharedTokenVerifier,
    StaticJwks,
    build_authenticator,
    extract_token,
    fetch_https,
    parse_jwks,
)
from lambda_app.events import WebSocketEvent, parse_event
from lambda_app.settings import Settings

EVENTS = Path(__file__).resolve().parents[2] / "fixtures" / "events"
ISSUER = "https://auth.example.com/"
AUDIENCE = "tunnel"
SECRET = "an-hmac-secret-of-at-least-32-bytes!"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

#: kid -> (private key, algorithm, to_jwk function)
SIGNERS: dict[str, tuple[Any, str]] = {
    "rsa-1": (RSA_KEY, "RS256"),
    "ec-1": (EC_KEY, "ES256"),
    "ed-1": (ED_KEY, "EdDSA"),
}


def public_jwk(kid: str, key: Any, alg: str | None = None) -> dict[str, Any]:
    """The public JWK of a private key, with its kid, `use: sig` and optionally `alg`."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    jwk.update({"kid": kid, "use": "sig"})
    if alg:
        jwk["alg"] = alg
    return jwk


JWKS: dict[str, Any] = {"keys": [public_jwk(kid, key, alg) for kid, (key, alg) in SIGNERS.items()]}


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for the test issuer and audience, expiring in five minutes."""
    now = int(time.time())
    base: dict[str, Any] = {"sub": "agent-42", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(kid: str = "rsa-1", **overrides: Any) -> str:
    """A token signed by one of the test keys, with its kid in the header."""
    key, alg = SIGNERS[kid]
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers={"kid": kid})


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWS compact serialisation uses (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """A token MACed by hand, for keys PyJWT rightly refuses to use as HMAC secrets."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def verifier(**options: Any) -> JwtVerifier:
    """A verifier over the static test JWKS that checks the test issuer and audience."""
    defaults: dict[str, Any] = {
        "jwks": StaticJwks(parse_jwks(json.dumps(JWKS))),
        "issuer": ISSUER,
        "audience": [AUDIENCE],
    }
    defaults.update(options)
    return JwtVerifier(**defaults)


def refused(check: Callable[[], object], token: str, fragment: str) -> AuthError:
    """Assert that a check raises AuthError 401 with a reason that names the fault and not the token."""
    with pytest.raises(AuthError) as info:
        check()
    assert fragment in info.value.reason
    assert info.value.status_hint == 401
    assert token not in str(info.value)
    return info.value


# --- JWT ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kid", sorted(SIGNERS))
def test_valid_token_is_accepted(kid: str) -> None:
    """A token signed with a JWKS key (RS256, ES256 or EdDSA) yields its subject and claims."""
    principal = verifier().verify(sign(kid))
    assert principal.subject == "agent-42"
    assert principal.claims["iss"] == ISSUER


def test_principal_claims_are_read_only() -> None:
    """The claims of a principal cannot be changed after verification."""
    principal = verifier().verify(sign())
    with pytest.raises(TypeError):
        principal.claims["sub"] = "someone-else"  # type: ignore[index]


def test_expired_token_is_refused() -> None:
    """A token that expired beyond the leeway is refused."""
    token = sign(exp=int(time.time()) - 120)
    refused(lambda: verifier(leeway=30).verify(token), token, "expired")


def test_token_expired_within_the_leeway_is_accepted() -> None:
    """A token that expired a few seconds ago passes thanks to the clock-skew leeway."""
    assert verifier(leeway=30).verify(sign(exp=int(time.time()) - 5)).subject == "agent-42"


def test_token_without_exp_is_refused() -> None:
    """A token without exp is refused: tokens that never expire are not accepted."""
    token = sign(exp=None)
    refused(lambda: verifier().verify(token), token, "'exp'")


def test_token_without_sub_is_refused() -> None:
    """A token without sub is refused: every connection must be attributable."""
    token = sign(sub=None)
    refused(lambda: verifier().verify(token), token, "'sub'")


def test_wrong_issuer_is_refused() -> None:
    """A token from another issuer is refused when an issuer is configured."""
    token = sign(iss="https://evil.example.com/")
    refused(lambda: verifier().verify(token), token, "issuer")


def test_missing_issuer_is_refused_when_configured() -> None:
    """A token without iss is refused when an issuer is configured."""
    token = sign(iss=None)
    refused(lambda: verifier().verify(token), token, "'iss'")


def test_wrong_audience_is_refused() -> None:
    """A token for another audience is refused when an audience is configured."""
    token = sign(aud="another-service")
    refused(lambda: verifier().verify(token), token, "audience")


def test_any_configured_audience_is_accepted() -> None:
    """A token whose aud is one of several configured audiences is accepted."""
    assert verifier(audience=["other", AUDIENCE]).verify(sign()).subject == "agent-42"


def test_issuer_and_audience_are_not_checked_when_not_configured() -> None:
    """Without configured iss/aud, tokens carrying any iss and aud are accepted."""
    token = sign(iss="https://anyone.example/", aud="anything")
    assert verifier(issuer=None, audience=[]).verify(token).subject == "agent-42"


def test_unknown_kid_is_refused() -> None:
    """A token whose kid names no key in the JWKS is refused."""
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "rsa-unknown"})
    refused(lambda: verifier().verify(token), token, "no key with kid 'rsa-unknown'")


def test_token_signed_by_another_key_under_a_known_kid_is_refused() -> None:
    """A token claiming a known kid but signed with another key fails signature verification."""
    token = jwt.encode(claims(), OTHER_RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
    refused(lambda: verifier().verify(token), token, "signature")


def test_tampered_payload_is_refused() -> None:
    """Changing the payload of a signed token (here, its subject) breaks the signature."""
    header, _, signature = sign().split(".")
    forged_payload = b64url(json.dumps(claims(sub="admin")).encode())
    token = f"{header}.{forged_payload}.{signature}"
    refused(lambda: verifier().verify(token), token, "signature")


def test_tampered_signature_is_refused() -> None:
    """Flipping bits of the signature makes the token fail."""
    header, payload, signature = sign("ec-1").split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[5] ^= 0xFF
    token = f"{header}.{payload}.{b64url(bytes(raw))}"
    refused(lambda: verifier().verify(token), token, "signature")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_token_is_refused(alg: str) -> None:
    """An unsecured JWT (alg none, any case, empty signature) is refused (RFC 8725 section 3.1)."""
    header = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": "rsa-1"}).encode())
    token = f"{header}.{b64url(json.dumps(claims()).encode())}."
    refused(lambda: verifier(hmac_secret=SECRET).verify(token), token, "alg 'none'")


def test_hmac_token_keyed_with_the_public_key_is_refused() -> None:
    """An HS256 token MACed with the RSA public key (algorithm confusion) is refused without a secret."""
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = forge_hs256({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(), pem)
    refused(lambda: verifier().verify(token), token, "algorithm 'HS256' is not accepted")


def test_hmac_token_keyed_with_the_public_jwk_is_refused_even_with_a_secret() -> None:
    """With both a JWKS and a secret, an HS256 token MACed with public key material still fails."""
    jwk_text = json.dumps(public_jwk("rsa-1", RSA_KEY)).encode()
    token = forge_hs256({"alg": "HS256", "kid": "rsa-1"}, claims(), jwk_text)
    refused(lambda: verifier(hmac_secret=SECRET).verify(token), token, "signature")


def test_algorithm_that_does_not_fit_the_key_type_is_refused() -> None:
    """A header claiming ES256 for the RSA key's kid finds no key: a key verifies only its own algorithms."""
    _, payload, signature = sign("rsa-1").split(".")
    header = b64url(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "rsa-1"}).encode())
    token = f"{header}.{payload}.{signature}"
    refused(lambda: verifier().verify(token), token, "no key with kid 'rsa-1'")


def test_algorithm_outside_the_configured_list_is_refused() -> None:
    """When algorithms are restricted, a valid token in another algorithm is refused."""
    token = sign("ec-1")
    refused(lambda: verifier(algorithms=["RS256"]).verify(token), token, "'ES256' is not accepted")


def test_hmac_secret_token_is_accepted() -> None:
    """An HS256 token signed with the configured secret is accepted."""
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert JwtVerifier(hmac_secret=SECRET, issuer=ISSUER).verify(token).subject == "agent-42"


def test_hmac_token_with_the_wrong_secret_is_refused() -> None:
    """An HS256 token signed with another secret is refused."""
    token = jwt.encode(claims(), "x" * 40, algorithm="HS256")
    refused(lambda: JwtVerifier(hmac_secret=SECRET).verify(token), token, "signature")


def test_asymmetric_token_is_refused_without_a_jwks() -> None:
    """With only an HMAC secret, RS256 tokens are refused rather than checked against the secret."""
    token = sign()
    refused(lambda: JwtVerifier(hmac_secret=SECRET).verify(token), token, "'RS256' is not accepted")


def test_critical_header_extension_is_refused() -> None:
    """A token listing critical header extensions is refused, as none are implemented (RFC 7515 4.1.11)."""
    key, alg = SIGNERS["rsa-1"]
    token = jwt.encode(claims(), key, algorithm=alg, headers={"kid": "rsa-1", "crit": ["exp"], "exp": 1})
    # Recent PyJWT already rejects unknown `crit` when reading the header; our own check backs it up.
    error = refused(lambda: verifier().verify(token), token, "")
    assert "critical" in error.reason or "well-formed" in error.reason


def test_oversized_token_is_refused_before_parsing() -> None:
    """A token of more than 16 KiB is refused without being decoded."""
    token = "a" * (16 * 1024 + 1)
    refused(lambda: verifier().verify(token), token, "longer than")


def test_token_not_valid_yet_is_refused() -> None:
    """A token whose nbf lies beyond the leeway in the future is refused."""
    token = sign(nbf=int(time.time()) + 600)
    refused(lambda: verifier().verify(token), token, "not valid yet")


def test_token_with_a_non_string_kid_is_refused() -> None:
    """A kid that is not a string is refused rather than compared."""
    _, payload, signature = sign().split(".")
    token = f"{b64url(json.dumps({'alg': 'RS256', 'kid': 7}).encode())}.{payload}.{signature}"
    # Recent PyJWT refuses such a header itself; our own check backs it up.
    error = refused(lambda: verifier().verify(token), token, "")
    assert "kid is not a string" in error.reason or "well-formed" in error.reason


def test_malformed_token_is_refused() -> None:
    """A string that is not a JWT is refused with a reason, not an exception from the library."""
    refused(lambda: verifier().verify("not-a-jwt"), "not-a-jwt", "well-formed")


def test_token_without_kid_uses_the_only_fitting_key() -> None:
    """Without a kid, a token verifies when exactly one key fits its algorithm."""
    token = jwt.encode(claims(), EC_KEY, algorithm="ES256")
    assert verifier().verify(token).subject == "agent-42"


def test_token_without_kid_is_refused_when_several_keys_fit() -> None:
    """Without a kid, a token is refused when several keys could verify it."""
    keys = {"keys": [public_jwk("a", RSA_KEY), public_jwk("b", OTHER_RSA_KEY)]}
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS256")
    check = verifier(jwks=StaticJwks(parse_jwks(json.dumps(keys))))
    refused(lambda: check.verify(token), token, "2 keys")


def test_verifier_needs_keys_and_a_long_secret() -> None:
    """Building a verifier without keys, with a short secret or an unknown algorithm raises ValueError."""
    with pytest.raises(ValueError, match="JWKS or an HMAC secret"):
        JwtVerifier()
    with pytest.raises(ValueError, match="32 bytes"):
        JwtVerifier(hmac_secret="short")
    with pytest.raises(ValueError, match="unsupported"):
        JwtVerifier(hmac_secret=SECRET, algorithms=["none"])


# --- JWKS ---------------------------------------------------------------------------------------------------


def test_jwks_keeps_only_public_signing_keys() -> None:
    """Symmetric, private, encryption-only and broken keys are skipped with a reason; the rest are kept."""
    private = RSAAlgorithm.to_jwk(RSA_KEY, as_dict=True)
    document = {
        "keys": [
            public_jwk("good", EC_KEY),
            {"kty": "oct", "k": b64url(b"x" * 32), "kid": "sym"},
            {**private, "kid": "priv"},
            {**public_jwk("enc", RSA_KEY), "use": "enc"},
            {**public_jwk("wrap", RSA_KEY), "key_ops": ["wrapKey"]},
            {"kty": "RSA", "kid": "broken", "n": "AQAB"},
            {**public_jwk("mismatch", EC_KEY), "alg": "ES384"},
            {**public_jwk("x", EC_KEY), "kid": 5},
            {**public_jwk("odd", RSA_KEY), "alg": "HS256"},
            "not-a-key",
        ]
    }
    key_set = parse_jwks(json.dumps(document))
    assert [k.kid for k in key_set.keys] == ["good"]
    assert len(key_set.skipped) == 9
    assert any("no supported algorithm" in reason for reason in key_set.skipped)
    assert any("symmetric" in reason for reason in key_set.skipped)
    assert any("private" in reason for reason in key_set.skipped)


@pytest.mark.parametrize(
    ("document", "fragment"),
    [("{", "not valid JSON"), ('{"keys": {}}', '"keys" array'), ('{"keys": []}', "no usable")],
)
def test_unusable_jwks_raises(document: str, fragment: str) -> None:
    """A JWKS that is not JSON, not a set, or holds no usable key raises ValueError."""
    with pytest.raises(ValueError, match=fragment):
        parse_jwks(document)


class FakeFetch:
    """An injected fetch that serves JWKS documents in turn and counts its calls."""

    def __init__(self, *documents: dict[str, Any]) -> None:
        self.documents = list(documents)
        self.calls = 0

    def __call__(self, url: str) -> bytes:
        assert url == "https://auth.example.com/jwks.json"
        document = self.documents[min(self.calls, len(self.documents) - 1)]
        self.calls += 1
        return json.dumps(document).encode()


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_jwks_url_is_fetched_once_within_the_ttl() -> None:
    """Many verifications within the cache TTL fetch the JWKS once; after the TTL it is fetched again."""
    fetch, clock = FakeFetch(JWKS), FakeClock()
    check = verifier(jwks=RemoteJwks("https://auth.example.com/jwks.json", fetch, ttl=300, clock=clock))
    for kid in ("rsa-1", "ec-1", "ed-1", "rsa-1"):
        check.verify(sign(kid))
        clock.now += 60
    assert fetch.calls == 1
    clock.now += 100
    check.verify(sign())
    assert fetch.calls == 2


def test_unknown_kid_reloads_rotated_keys_at_most_once_per_interval() -> None:
    """A new kid triggers one early reload that finds the rotated key; more unknown kids do not refetch."""
    rotated = {"keys": [*JWKS["keys"], public_jwk("rsa-2", OTHER_RSA_KEY, "RS256")]}
    fetch, clock = FakeFetch(JWKS, rotated), FakeClock()
    check = verifier(
        jwks=RemoteJwks("https://auth.example.com/jwks.json", fetch, ttl=300, clock=clock, min_refresh=30)
    )
    check.verify(sign())
    clock.now += 31
    token = jwt.encode(claims(), OTHER_RSA_KEY, algorithm="RS256", headers={"kid": "rsa-2"})
    assert check.verify(token).subject == "agent-42"
    assert fetch.calls == 2
    for n in range(5):
        bogus = jwt.encode(claims(), OTHER_RSA_KEY, algorithm="RS256", headers={"kid": f"random-{n}"})
        refused(partial(check.verify, bogus), bogus, "no key with kid")
    assert fetch.calls == 2


def test_jwks_fetch_failure_is_a_503() -> None:
    """When the JWKS cannot be fetched, the refusal carries status hint 503, not 401."""

    def failing(url: str) -> bytes:
        raise OSError("connection refused")

    check = verifier(jwks=RemoteJwks("https://auth.example.com/jwks.json", failing))
    with pytest.raises(AuthError, match="could not be loaded") as info:
        check.verify(sign())
    assert info.value.status_hint == 503


def test_jwks_url_serving_garbage_is_a_503() -> None:
    """A JWKS URL that answers with something other than a usable JWKS makes verification fail with 503."""
    check = verifier(jwks=RemoteJwks("https://auth.example.com/jwks.json", lambda url: b"<html>"))
    with pytest.raises(AuthError, match="ValueError") as info:
        check.verify(sign())
    assert info.value.status_hint == 503


def test_fetch_https_refuses_plain_http() -> None:
    """The default fetcher refuses a non-https JWKS URL before any network I/O."""
    with pytest.raises(ValueError, match="https"):
        fetch_https("http://auth.example.com/jwks.json")


def test_failed_early_reload_keeps_the_cached_keys() -> None:
    """If the reload for an unknown kid fails, tokens for known keys still verify from the cache."""
    calls = 0

    def flaky(url: str) -> bytes:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError("timeout")
        return json.dumps(JWKS).encode()

    clock = FakeClock()
    check = verifier(jwks=RemoteJwks("https://auth.example.com/jwks.json", flaky, clock=clock))
    check.verify(sign())
    clock.now += 60
    bogus = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "new"})
    refused(lambda: check.verify(bogus), bogus, "no key with kid")
    assert check.verify(sign()).subject == "agent-42"
    refused(lambda: check.verify(bogus), bogus, "no key with kid")
    assert calls == 2, "a failed reload also paces the next one"


# --- where the token comes from ------------------------------------------------------------


def connect_event(**query: str) -> WebSocketEvent:
    """The $connect fixture with its ?token= replaced."""
    raw = json.loads((EVENTS / "websocket_connect_query_token.json").read_text(encoding="utf-8"))
    raw["queryStringParameters"] = dict(query)
    raw["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    event = parse_event(raw)
    assert isinstance(event, WebSocketEvent)
    return event


def test_token_from_the_query_string_is_accepted() -> None:
    """A $connect event carrying ?token=<jwt> authenticates through the Authenticator."""
    event = connect_event(token=sign("ed-1"))
    principal = Authenticator(verifier()).authenticate(event.headers, event.query)
    assert principal.subject == "agent-42"


def test_bearer_header_is_found_and_preferred() -> None:
    """The Bearer header's token is used (scheme in any case), before a ?token= parameter."""
    headers = [("Authorization", "bearer header-token")]
    assert extract_token(headers, [("token", "query-token")]) == "header-token"


def test_fixture_bearer_header_is_extracted() -> None:
    """The placeholder token of the bearer $connect fixture is extracted from its headers."""
    event = parse_event(json.loads((EVENTS / "websocket_connect_bearer.json").read_text(encoding="utf-8")))
    assert isinstance(event, WebSocketEvent)
    assert extract_token(event.headers, event.query) == "placeholder.header.token"


@pytest.mark.parametrize(
    ("headers", "query", "fragment"),
    [
        ([], [], "no credentials"),
        ([], [("token", "")], "no credentials"),
        ([("authorization", "Basic dXNlcjpwYXNz")], [], "Bearer scheme"),
        ([("authorization", "Bearer ")], [("token", "x")], "empty Bearer"),
    ],
)
def test_missing_or_foreign_credentials_are_refused(
    headers: list[tuple[str, str]], query: list[tuple[str, str]], fragment: str
) -> None:
    """No credential, an empty one, or another Authorization scheme is refused with 401."""
    with pytest.raises(AuthError, match=fragment) as info:
        extract_token(headers, query)
    assert info.value.status_hint == 401
    assert "dXNlcjpwYXNz" not in str(info.value)


# --- shared token and wiring ------------------------------------------------------------


def test_shared_token_mode() -> None:
    """The shared token is accepted; a different one, a prefix of it or a longer one is refused."""
    shared = "a-shared-token-for-the-gateway"
    check = SharedTokenVerifier(shared)
    assert check.verify(shared) == Principal(subject="shared-token")
    for wrong in ("a-shared-token-for-the-gatewaX", shared[:-1], shared + "x", ""):
        refused(partial(check.verify, wrong), wrong or "\x00", "does not match")
    with pytest.raises(ValueError, match="16"):
        SharedTokenVerifier("short")


def test_open_gateway_lets_everyone_in() -> None:
    """With authentication off, a $connect without credentials gets the anonymous principal."""
    authenticator = build_authenticator(Settings(auth_mode="none"))
    assert not authenticator.enabled
    assert authenticator.authenticate([], []).subject == "anonymous"


def test_build_authenticator_for_token_mode() -> None:
    """Token mode from settings checks the shared token from the query string."""
    authenticator = build_authenticator(Settings(auth_mode="token", shared_token="0123456789abcdef"))
    assert authenticator.enabled
    assert authenticator.authenticate([], [("token", "0123456789abcdef")]).subject == "shared-token"
    with pytest.raises(AuthError):
        authenticator.authenticate([], [("token", "0123456789abcdeX")])


def test_build_authenticator_from_inline_file_url_and_secret(tmp_path: Path) -> None:
    """Each key source named in the settings yields an authenticator that accepts a valid token."""
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(JWKS), encoding="utf-8")
    fetch = FakeFetch(JWKS)
    common: dict[str, Any] = {"auth_mode": "jwt", "jwt_issuer": ISSUER, "jwt_audience": (AUDIENCE,)}
    for settings in (
        Settings(**common, jwks_json=json.dumps(JWKS)),
        Settings(**common, jwks_file=str(jwks_file)),
        Settings(**common, jwks_url="https://auth.example.com/jwks.json"),
    ):
        header = [("authorization", f"Bearer {sign('ec-1')}")]
        assert build_authenticator(settings, fetch=fetch).authenticate(header, []).subject == "agent-42"
    assert fetch.calls == 1
    hmac_settings = Settings(**common, jwt_secret=SECRET)
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert build_authenticator(hmac_settings).authenticate([], [("token", token)]).subject == "agent-42"


def test_build_authenticator_names_the_bad_key_source(tmp_path: Path) -> None:
    """An unreadable JWKS file or an unusable inline JWKS fails at start-up naming the variable."""
    with pytest.raises(ValueError, match="TUNNEL_JWKS_FILE"):
        build_authenticator(Settings(auth_mode="jwt", jwks_file=str(tmp_path / "missing.json")))
    with pytest.raises(ValueError, match="TUNNEL_JWKS_JSON"):
        build_authenticator(Settings(auth_mode="jwt", jwks_json='{"keys": []}'))
