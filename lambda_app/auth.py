"""Agent authentication on `$connect`: a JWT checked against a JWKS or an HMAC secret, or a shared token.

Verification is pure given its keys. The only I/O is loading keys: `build_authenticator` reads a JWKS file
once at start-up, and `RemoteJwks` calls an injected `fetch` function (by default `fetch_https`) and caches
what it got for a TTL. Failures raise `AuthError`, whose message is safe to log: it never holds the token.
The rules follow RFC 7519 (JWT), RFC 7517 (JWK) and RFC 8725 (JWT best current practices).
"""

from __future__ import annotations

import hmac
import json
import math
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from lambda_app.settings import SUPPORTED_ALGORITHMS, Settings
from transport.errors import ProxyError

__all__ = [
    "AuthError",
    "Authenticator",
    "Fetch",
    "JwksProvider",
    "JwtVerifier",
    "KeySet",
    "Principal",
    "RemoteJwks",
    "SharedTokenVerifier",
    "StaticJwks",
    "TokenVerifier",
    "VerificationKey",
    "build_authenticator",
    "extract_token",
    "fetch_https",
    "parse_jwks",
]

#: Fetches a URL's body; injected so that tests (and `tunnel emulate`) never touch the network.
Fetch = Callable[[str], bytes]

_HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
_RSA_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
# RFC 7518 section 3.4: each ECDSA algorithm is bound to one curve.
_EC_ALGORITHMS: Final = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
# RFC 7518 section 3.2: an HMAC key must be at least as long as the hash output.
_MIN_HMAC_SECRET_BYTES: Final = 32
_MAX_JWKS_BYTES: Final = 1024 * 1024
# Far above any real agent token, far below what would make parsing costly.
_MAX_TOKEN_CHARS: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class Principal:
    """Who opened a connection.

    Attributes:
        subject: The token's `sub` claim, ``"shared-token"`` in shared-token mode, ``"anonymous"`` when
            authentication is off.
        claims: The verified claims (read-only); empty outside JWT mode.
    """

    subject: str
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def __post_init__(self) -> None:
        # A private copy behind a read-only view: the caller's dict cannot change a verified principal.
        object.__setattr__(self, "claims", MappingProxyType(dict(self.claims)))


class AuthError(ProxyError):
    """The agent's credentials were refused, or could not be checked.

    Args:
        reason: Why, safe to log: it never contains the token.
        status_hint: 401 by default; 503 when the keys could not be loaded.
    """

    default_status_hint = 401

    def __init__(self, reason: str, *, status_hint: int | None = None) -> None:
        super().__init__(reason, status_hint=status_hint)
        self.reason = reason


def _safe(value: object) -> str:
    """A short, printable rendering of an attacker-supplied header field, for error messages."""
    text = repr(value)
    return text if len(text) <= 66 else text[:63] + "..."


# --- extracting the credential --------------------------------------------------------------------------


def extract_token(headers: Sequence[tuple[str, str]], query: Sequence[tuple[str, str]]) -> str:
    """Find the credential an agent presented on `$connect`.

    `Authorization: Bearer <token>` is preferred (RFC 6750 section 2.1; the scheme is case-insensitive,
    RFC 9110 section 11.1); ``?token=`` is the fallback for WebSocket clients that cannot set headers
    (RFC 6750 section 2.3 allows a query parameter, with that caveat).

    Args:
        headers: Request headers; names are compared case-insensitively.
        query: Query parameters.

    Returns:
        The token.

    Raises:
        AuthError: No credential, or an `Authorization` header of another scheme.
    """
    authorization = next((value for name, value in headers if name.lower() == "authorization"), None)
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise AuthError("the Authorization header does not use the Bearer scheme")
        if not token.strip():
            raise AuthError("the Authorization header holds an empty Bearer token")
        return token.strip()
    from_query = next((value for name, value in query if name == "token"), None)
    if from_query:
        return from_query
    raise AuthError("no credentials: send 'Authorization: Bearer <token>' or '?token=<token>'")


# --- keys -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One public key of a JWKS, with its `kid` and the algorithms it may verify."""

    kid: str | None
    algorithms: frozenset[str]
    key: Any  # a cryptography public key object


@dataclass(frozen=True, slots=True)
class KeySet:
    """The usable verification keys of a JWKS, and why the others were left out.

    Attributes:
        keys: Public keys, each with its `kid` and the algorithms it may verify.
        skipped: One reason per key that was left out (private, symmetric, not for signing, unparsable).
    """

    keys: tuple[VerificationKey, ...]
    skipped: tuple[str, ...] = ()

    def find(self, kid: str | None, algorithm: str) -> list[Any]:
        """The keys that may verify a token with this `kid` (any key when None) and algorithm."""
        return [k.key for k in self.keys if algorithm in k.algorithms and (kid is None or k.kid == kid)]


def _algorithms_for(jwk: Mapping[str, Any], key: Any) -> frozenset[str]:
    # RFC 8725 section 3.1: a key is used only with the algorithms of its own type, so a token cannot pick
    # an algorithm that reinterprets the key (the HMAC-with-a-public-key confusion).
    if isinstance(key, rsa.RSAPublicKey):
        allowed = _RSA_ALGORITHMS
    elif isinstance(key, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(key.curve.name)
        allowed = frozenset({_EC_ALGORITHMS[curve]}) if curve else frozenset()
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        allowed = frozenset({"EdDSA"})
    else:
        allowed = frozenset()
    declared = jwk.get("alg")
    # RFC 7517 section 4.4: a key that names its algorithm is used with that algorithm only.
    return allowed & {declared} if isinstance(declared, str) else allowed


def parse_jwks(document: str | bytes) -> KeySet:
    """Parse a JWK Set and keep the public signature-verification keys.

    Keys are left out (with a reason in `skipped`) when they are symmetric (``"kty": "oct"``: a JWKS here
    holds public keys only), carry private material, are marked for another use (RFC 7517 sections 4.2
    and 4.3), or cannot be parsed.

    Args:
        document: The JWKS JSON text.

    Returns:
        The usable keys.

    Raises:
        ValueError: The document is not a JWK Set, or no key in it is usable.
    """
    try:
        data = json.loads(document)
    except ValueError:
        raise ValueError("the JWKS is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError('the JWKS is not an object with a "keys" array (RFC 7517 section 5)')
    keys: list[VerificationKey] = []
    skipped: list[str] = []
    for index, jwk in enumerate(data["keys"]):
        label = f"key {index}"
        if not isinstance(jwk, dict):
            skipped.append(f"{label}: not an object")
            continue
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            skipped.append(f"{label}: kid is not a string")
            continue
        label = f"key {index} ({_safe(kid)})"
        if jwk.get("kty") == "oct":
            skipped.append(f"{label}: symmetric keys are not accepted from a JWKS")
            continue
        if "d" in jwk:
            skipped.append(f"{label}: holds private key material")
            continue
        if jwk.get("use", "sig") != "sig":
            skipped.append(f"{label}: use is not 'sig'")
            continue
        ops = jwk.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            skipped.append(f"{label}: key_ops does not allow 'verify'")
            continue
        try:
            key = jwt.PyJWK(jwk).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as exc:
            skipped.append(f"{label}: cannot be parsed ({type(exc).__name__})")
            continue
        algorithms = _algorithms_for(jwk, key) & SUPPORTED_ALGORITHMS
        if not algorithms:
            skipped.append(f"{label}: no supported algorithm fits it")
            continue
        keys.append(VerificationKey(kid=kid, algorithms=algorithms, key=key))
    if not keys:
        raise ValueError(f"the JWKS holds no usable signing key ({'; '.join(skipped) or 'it is empty'})")
    return KeySet(keys=tuple(keys), skipped=tuple(skipped))


class JwksProvider(Protocol):
    """Where a verifier gets its JWKS from."""

    def get(self, *, refresh: bool = False) -> KeySet:
        """The current keys; `refresh` asks for a reload (a token named an unknown `kid`)."""
        ...


class StaticJwks:
    """A JWKS fixed at start-up (from a file or an environment value)."""

    def __init__(self, keys: KeySet) -> None:
        self._keys = keys

    def get(self, *, refresh: bool = False) -> KeySet:
        """The keys; `refresh` changes nothing."""
        return self._keys


class RemoteJwks:
    """A JWKS fetched from a URL and cached for a TTL.

    A token with an unknown `kid` may trigger one early reload (keys rotate), but no more often than
    `min_refresh` seconds, so random `kid`s cannot make the gateway hammer the key server.

    Args:
        url: The JWKS URL.
        fetch: Returns the URL's body; raises on failure.
        ttl: Seconds a fetched JWKS is used before it is fetched again.
        clock: Monotonic seconds; injected for tests.
        min_refresh: The least number of seconds between two fetches.
    """

    def __init__(
        self,
        url: str,
        fetch: Fetch,
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        min_refresh: float = 30.0,
    ) -> None:
        self._url = url
        self._fetch = fetch
        self._ttl = ttl
        self._clock = clock
        self._min_refresh = min_refresh
        self._keys: KeySet | None = None
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf

    def get(self, *, refresh: bool = False) -> KeySet:
        """The cached keys, fetched first when there are none, the TTL has passed, or a refresh is due.

        Raises:
            AuthError: With status hint 503, when keys are needed and cannot be fetched or parsed.
        """
        now = self._clock()
        cached = self._keys if now - self._fetched_at < self._ttl else None
        # Early reloads are paced by the last attempt, failed ones included, so that tokens with random
        # kids cannot turn a key-server outage into a stream of fetches.
        if cached is not None and not (refresh and now - self._attempted_at >= self._min_refresh):
            return cached
        self._attempted_at = now
        try:
            keys = parse_jwks(self._fetch(self._url))
        except Exception as exc:
            if cached is not None:
                return cached  # an early reload failed; the cached keys are still within their TTL
            raise AuthError(f"the JWKS could not be loaded ({type(exc).__name__})", status_hint=503) from exc
        self._keys, self._fetched_at = keys, now
        return keys


def fetch_https(url: str, *, timeout: float = 5.0) -> bytes:
    """Fetch a JWKS over https (performs network I/O).

    Args:
        url: An https URL.
        timeout: Seconds for connecting and for each read.

    Returns:
        The body, at most 1 MiB.

    Raises:
        ValueError: The URL is not https, or the body is larger than 1 MiB.
        OSError: The request failed.
    """
    if not url.startswith("https://"):
        raise ValueError("JWKS URLs must use https (RFC 7517 section 9.3)")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body: bytes = response.read(_MAX_JWKS_BYTES + 1)
    if len(body) > _MAX_JWKS_BYTES:
        raise ValueError("the JWKS is larger than 1 MiB")
    return body


# --- verifiers ------------------------------------------------------------------------------------------


class TokenVerifier(Protocol):
    """Checks a credential and says whose it is."""

    def verify(self, token: str) -> Principal:
        """The principal the token stands for; raises `AuthError` if it is refused."""
        ...


class JwtVerifier:
    """Verifies JWTs against a JWKS (asymmetric algorithms) and/or an HMAC secret (HS256/384/512).

    The token's header picks the key, never the algorithm's meaning: HMAC algorithms are checked only
    with the configured secret, asymmetric ones only with JWKS keys of the matching type, and ``none``
    never (RFC 8725 sections 2.1 and 3.1). Keys the token points at itself (`jku`, `jwk`, `x5u`) are
    ignored: only configured keys verify. `exp` is required (RFC 7519 section 4.1.4, with `leeway`
    seconds of clock skew), as is `sub`; `iss` and `aud` are checked when configured (RFC 7519 sections
    4.1.1 and 4.1.3).

    Args:
        jwks: Where the public keys come from, or None for HMAC only.
        hmac_secret: The HMAC secret (at least 32 bytes), or None for JWKS only.
        issuer: The required `iss`, or None.
        audience: Accepted `aud` values; empty to skip the audience check.
        algorithms: Accepted algorithms; empty for every supported one the keys allow.
        leeway: Seconds of clock skew allowed.

    Raises:
        ValueError: Neither keys nor secret, a short secret, or an unsupported algorithm.
    """

    def __init__(
        self,
        *,
        jwks: JwksProvider | None = None,
        hmac_secret: str | None = None,
        issuer: str | None = None,
        audience: Sequence[str] = (),
        algorithms: Sequence[str] = (),
        leeway: float = 30.0,
    ) -> None:
        if jwks is None and hmac_secret is None:
            raise ValueError("a JWT verifier needs a JWKS or an HMAC secret")
        if hmac_secret is not None and len(hmac_secret.encode("utf-8")) < _MIN_HMAC_SECRET_BYTES:
            raise ValueError(
                f"the HMAC secret must be at least {_MIN_HMAC_SECRET_BYTES} bytes (RFC 7518 3.2)"
            )
        unknown = set(algorithms) - SUPPORTED_ALGORITHMS
        if unknown:
            raise ValueError(f"unsupported algorithms {sorted(unknown)}")
        usable = set(algorithms or SUPPORTED_ALGORITHMS)
        if hmac_secret is None:
            usable -= _HMAC_ALGORITHMS
        if jwks is None:
            usable &= _HMAC_ALGORITHMS
        self._jwks = jwks
        self._secret = hmac_secret
        self._issuer = issuer
        self._audience = list(audience)
        self._algorithms = frozenset(usable)
        self._leeway = leeway

    def verify(self, token: str) -> Principal:
        """Verify a JWT's signature and claims.

        Args:
            token: The compact-serialised JWT.

        Returns:
            The principal named by `sub`, with the verified claims.

        Raises:
            AuthError: The token is refused (401), or the JWKS cannot be loaded (503).
        """
        if len(token) > _MAX_TOKEN_CHARS:
            raise AuthError(f"the token is longer than {_MAX_TOKEN_CHARS} characters")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("the token is not a well-formed JWT") from None
        if "crit" in header:
            # RFC 7515 section 4.1.11: a token whose critical extensions we do not implement is refused.
            raise AuthError("the token names critical header extensions, which are not supported")
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm.lower() == "none":
            # RFC 8725 section 3.1: unsecured JWTs are never accepted.
            raise AuthError("unsigned tokens (alg 'none') are refused")
        if algorithm not in self._algorithms:
            raise AuthError(f"the token's algorithm {_safe(algorithm)} is not accepted")
        key = self._key_for(algorithm, header.get("kid"))
        claims = self._decode(token, key, algorithm)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthError("the token has no 'sub' claim")
        return Principal(subject=subject, claims=claims)

    def _key_for(self, algorithm: str, kid: object) -> Any:
        if algorithm in _HMAC_ALGORITHMS:
            return self._secret  # present: HMAC algorithms are accepted only when a secret is configured
        if kid is not None and not isinstance(kid, str):
            raise AuthError("the token's kid is not a string")
        assert self._jwks is not None  # asymmetric algorithms are accepted only when a JWKS is configured
        candidates = self._jwks.get().find(kid, algorithm)
        if not candidates and kid is not None:
            candidates = self._jwks.get(refresh=True).find(kid, algorithm)  # the keys may have rotated
        if not candidates:
            raise AuthError(f"no key with kid {_safe(kid)} verifies {algorithm} tokens")
        if len(candidates) > 1:
            raise AuthError(f"the token names no kid and {len(candidates)} keys verify {algorithm} tokens")
        return candidates[0]

    def _decode(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        required = ["exp"] + (["iss"] if self._issuer else []) + (["aud"] if self._audience else [])
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience or None,
                leeway=self._leeway,
                options={"require": required, "verify_aud": bool(self._audience)},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("the token is not valid yet") from None
        except jwt.InvalidIssuerError:
            raise AuthError("the token's issuer is not accepted") from None
        except jwt.InvalidAudienceError:
            raise AuthError("the token's audience is not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"the token lacks the required {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise AuthError("the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"the token is invalid ({type(exc).__name__})") from None
        return claims


class SharedTokenVerifier:
    """Accepts one shared token, for the self-hosted gateway; compares in constant time.

    Args:
        token: The expected token, at least 16 characters.

    Raises:
        ValueError: The token is too short.
    """

    def __init__(self, token: str) -> None:
        if len(token) < 16:
            raise ValueError("the shared token must be at least 16 characters")
        self._expected = token.encode("utf-8")

    def verify(self, token: str) -> Principal:
        """Accept the token if it equals the shared one.

        Raises:
            AuthError: It does not.
        """
        # hmac.compare_digest takes time independent of where the first difference is.
        if not hmac.compare_digest(token.encode("utf-8"), self._expected):
            raise AuthError("the shared token does not match")
        return Principal(subject="shared-token")


class Authenticator:
    """Checks the credentials of a `$connect`, or lets everyone in when given no verifier.

    Args:
        verifier: The token check, or None when authentication is off.
    """

    def __init__(self, verifier: TokenVerifier | None) -> None:
        self._verifier = verifier

    @property
    def enabled(self) -> bool:
        """Whether credentials are checked at all."""
        return self._verifier is not None

    def authenticate(self, headers: Sequence[tuple[str, str]], query: Sequence[tuple[str, str]]) -> Principal:
        """Find and verify the agent's credential.

        Args:
            headers: The `$connect` request headers.
            query: The `$connect` query parameters.

        Returns:
            Who connected; ``Principal("anonymous")`` when authentication is off.

        Raises:
            AuthError: Missing or refused credentials, or keys that cannot be loaded.
        """
        if self._verifier is None:
            return Principal(subject="anonymous")
        return self._verifier.verify(extract_token(headers, query))


def build_authenticator(
    settings: Settings,
    *,
    fetch: Fetch = fetch_https,
    clock: Callable[[], float] = time.monotonic,
) -> Authenticator:
    """Build the authenticator the settings ask for (reads a JWKS file once, if one is named).

    Args:
        settings: The gateway's settings.
        fetch: Fetches the JWKS URL, if one is configured (not called here: keys load on first use).
        clock: Monotonic seconds, for the JWKS cache.

    Returns:
        The authenticator.

    Raises:
        ValueError: The JWKS file or inline JWKS cannot be read or holds no usable key (the message names
            the variable).
    """
    if settings.auth_mode == "none":
        return Authenticator(None)
    if settings.auth_mode == "token":
        assert settings.shared_token is not None  # Settings refuses token mode without one
        return Authenticator(SharedTokenVerifier(settings.shared_token))
    jwks: JwksProvider | None = None
    if settings.jwks_url is not None:
        jwks = RemoteJwks(settings.jwks_url, fetch, ttl=settings.jwks_cache_ttl, clock=clock)
    elif settings.jwks_file is not None:
        try:
            text = Path(settings.jwks_file).read_bytes()
        except OSError as exc:
            raise ValueError(f"TUNNEL_JWKS_FILE cannot be read ({exc.strerror})") from None
        jwks = StaticJwks(_parse_for("TUNNEL_JWKS_FILE", text))
    elif settings.jwks_json is not None:
        jwks = StaticJwks(_parse_for("TUNNEL_JWKS_JSON", settings.jwks_json))
    verifier = JwtVerifier(
        jwks=jwks,
        hmac_secret=settings.jwt_secret,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        algorithms=settings.jwt_algorithms,
        leeway=settings.jwt_leeway,
    )
    return Authenticator(verifier)


def _parse_for(variable: str, document: str | bytes) -> KeySet:
    try:
        return parse_jwks(document)
    except ValueError as exc:
        raise ValueError(f"{variable}: {exc}") from None
