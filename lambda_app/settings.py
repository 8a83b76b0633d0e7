"""The gateway's settings, read from the environment in one place and checked at start-up.

`load_settings()` is the only code in the project that reads `os.environ`; it reads, never writes, and
does no other I/O (a JWKS file or URL is only named here; `lambda_app/auth.py` loads it) except one: a
secret named by ARN (``TUNNEL_JWT_SECRET_ARN``, ``TUNNEL_SHARED_TOKEN_ARN``, ``TUNNEL_RESUME_SECRET_ARN``)
is fetched once from AWS Secrets Manager or SSM Parameter Store through boto3 (`read_aws_secret`), so
that a deployment never holds the secret itself in its configuration. Every invalid value raises a
`ValueError` that names the variable, so a bad deployment fails at its first cold start rather than on
some later request.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, get_args
from urllib.parse import urlsplit

__all__ = [
    "INTEGRATION_TIMEOUT_LIMIT",
    "SUPPORTED_ALGORITHMS",
    "AuthMode",
    "Settings",
    "load_settings",
    "read_aws_secret",
]

AuthMode = Literal["none", "jwt", "token"]
_AUTH_MODES: Final[tuple[str, ...]] = get_args(AuthMode)

#: Response waits must end before this many seconds: API Gateway's HTTP API integration timeout is 30 s
#: (API Gateway quotas), and the handler still needs time to answer with a 504 page.
INTEGRATION_TIMEOUT_LIMIT: Final = 29.0

#: Signature algorithms the verifier supports (RFC 7518 section 3.1, RFC 8037 for EdDSA); "none" is never
#: one of them (RFC 8725 section 3.1).
SUPPORTED_ALGORITHMS: Final[frozenset[str]] = frozenset(
    {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
    | {"ES256", "ES384", "ES512", "EdDSA"}
)
_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# RFC 1123 host names: labels of letters, digits and hyphens, neither starting nor ending with a hyphen.
_DNS_NAME: Final = re.compile(
    r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
)
# RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output, 256 bits.
_MIN_HMAC_SECRET_BYTES: Final = 32
_MIN_SHARED_TOKEN_CHARS: Final = 16
_SECRET_FIELDS: Final = frozenset({"jwt_secret", "shared_token", "resume_secret"})
#: Seconds a disconnected tunnel id stays reserved for a resume (the same default as `lambda_app.store`).
_DEFAULT_RESUME_WINDOW: Final = 900
# The secrets that may be named by ARN instead: TUNNEL_X holds the value, TUNNEL_X_ARN names where it is.
_SECRET_VARIABLES: Final = ("TUNNEL_JWT_SECRET", "TUNNEL_SHARED_TOKEN", "TUNNEL_RESUME_SECRET")
# A Secrets Manager secret or an SSM parameter, in any partition (ARN formats in the Service Authorization
# Reference: secretsmanager "secret:<name>-<6 characters>", ssm "parameter/<name without leading slash>").
_SECRET_ARN: Final = re.compile(
    r"arn:aws[a-z-]*:(?P<service>secretsmanager|ssm):(?P<region>[a-z0-9-]+):\d{12}:"
    r"(?:secret:[A-Za-z0-9/_+=.@-]+|parameter/[A-Za-z0-9/_.-]+)"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the gateway is configured with; validated when built.

    Attributes:
        auth_mode: ``"jwt"`` (tokens checked against a JWKS or an HMAC secret), ``"token"`` (one shared
            token) or ``"none"`` (anyone may open a tunnel). `load_settings` defaults to ``"jwt"``: an AWS
            deployment is closed unless it says otherwise.
        connections_table: DynamoDB table of agent connections (with its `tunnelId` index).
        pending_table: DynamoDB table of pending requests and their responses.
        public_url: Base URL for path mode (``https://gw.example.com``). `load_settings` requires it
            (``TUNNEL_PUBLIC_URL``): nothing is derived from requests, whose `Host` a client chooses. None
            only for settings built in code for parts that print no URL (authentication alone).
        domain: Host-mode domain: tunnels answer at ``<tunnel-id>.<domain>``; None turns host mode off.
        body_limit: The largest public request body accepted, in bytes; larger gets 413.
        response_timeout: Seconds to wait for the agent's answer before a 504; below 29 s.
        jwks_file: Path of a JWKS JSON file.
        jwks_json: A JWKS as inline JSON text.
        jwks_url: An https URL serving the JWKS (fetched, then cached for `jwks_cache_ttl`).
        jwt_secret: The HS256 secret, at least 32 bytes.
        jwt_issuer: The required `iss` claim, if any.
        jwt_audience: Accepted `aud` values; empty to not check the audience.
        jwt_algorithms: Accepted algorithms; empty for every supported one that the configured keys allow.
        jwt_leeway: Clock skew allowed on `exp`, `nbf` and `iat`, seconds.
        jwks_cache_ttl: How long a fetched JWKS is trusted, seconds.
        shared_token: The token agents present in ``"token"`` mode.
        connection_ttl: Seconds after which the store may forget a connection (DynamoDB TTL).
        request_ttl: Seconds after which the store may forget a pending request.
        dispatch_race_age: A connection younger than this (seconds) gets `GoneException` sends retried.
        management_endpoint: Overrides the `@connections` endpoint (for `tunnel emulate`); None derives
            it from the event.
        log_level: The logging level name.
        resume_window: Seconds a disconnected tunnel id stays reserved for its agent's resume token.
        resume_secret: The key that signs resume tokens, at least 32 bytes; None turns resuming off.
        dynamodb_endpoint: Overrides DynamoDB's endpoint (``tunnel emulate`` points it at moto); None for
            the region's endpoint.
        region: The AWS region for the boto3 clients (``AWS_REGION``, else ``AWS_DEFAULT_REGION``, which
            the Lambda runtime sets); None lets boto3 decide.
    """

    auth_mode: AuthMode
    connections_table: str = "tunnel-connections"
    pending_table: str = "tunnel-pending"
    public_url: str | None = None
    domain: str | None = None
    body_limit: int = 4 * 1024 * 1024
    response_timeout: float = 25.0
    jwks_file: str | None = None
    jwks_json: str | None = None
    jwks_url: str | None = None
    jwt_secret: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: tuple[str, ...] = ()
    jwt_algorithms: tuple[str, ...] = ()
    jwt_leeway: float = 30.0
    jwks_cache_ttl: float = 300.0
    shared_token: str | None = None
    connection_ttl: int = 3 * 60 * 60
    request_ttl: int = 120
    dispatch_race_age: float = 5.0
    management_endpoint: str | None = None
    log_level: str = "INFO"
    resume_window: int = _DEFAULT_RESUME_WINDOW
    resume_secret: str | None = None
    dynamodb_endpoint: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        if self.auth_mode not in _AUTH_MODES:
            raise ValueError(f"TUNNEL_AUTH must be one of {list(_AUTH_MODES)}, got {self.auth_mode!r}")
        for name, value in (
            ("TUNNEL_CONNECTIONS_TABLE", self.connections_table),
            ("TUNNEL_PENDING_TABLE", self.pending_table),
        ):
            # DynamoDB table names: 3 to 255 of [a-zA-Z0-9_.-] (DynamoDB naming rules).
            if not re.fullmatch(r"[A-Za-z0-9_.\-]{3,255}", value):
                raise ValueError(
                    f"{name} must be a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -), got {value!r}"
                )
        if self.public_url is not None:
            _check_url("TUNNEL_PUBLIC_URL", self.public_url, schemes=("http", "https"))
        if self.domain is not None and not _DNS_NAME.fullmatch(self.domain):
            raise ValueError(
                f"TUNNEL_DOMAIN must be a lower-case DNS name such as tunnel.example.com, got {self.domain!r}"
            )
        _check_positive("TUNNEL_BODY_LIMIT", self.body_limit)
        _check_positive("TUNNEL_RESPONSE_TIMEOUT", self.response_timeout)
        if self.response_timeout >= INTEGRATION_TIMEOUT_LIMIT:
            raise ValueError(
                f"TUNNEL_RESPONSE_TIMEOUT must be under {INTEGRATION_TIMEOUT_LIMIT:g} s, got "
                f"{self.response_timeout:g}: API Gateway ends HTTP API integrations at 30 s and the 504 "
                "page must leave before that"
            )
        _check_non_negative("TUNNEL_JWT_LEEWAY", self.jwt_leeway)
        if self.jwt_leeway > 300:
            raise ValueError(
                f"TUNNEL_JWT_LEEWAY must be at most 300 s (a small clock skew), got {self.jwt_leeway:g}"
            )
        _check_positive("TUNNEL_JWKS_CACHE_TTL", self.jwks_cache_ttl)
        _check_positive("TUNNEL_CONNECTION_TTL", self.connection_ttl)
        _check_positive("TUNNEL_REQUEST_TTL", self.request_ttl)
        if self.request_ttl <= self.response_timeout:
            raise ValueError(
                f"TUNNEL_REQUEST_TTL ({self.request_ttl}) must exceed TUNNEL_RESPONSE_TIMEOUT "
                f"({self.response_timeout:g}): a pending request must outlive the wait for its answer"
            )
        _check_non_negative("TUNNEL_DISPATCH_RACE_AGE", self.dispatch_race_age)
        if self.management_endpoint is not None:
            _check_url("TUNNEL_MANAGEMENT_ENDPOINT", self.management_endpoint, schemes=("http", "https"))
        _check_non_negative("TUNNEL_RESUME_WINDOW", self.resume_window)
        resume_secret = self.resume_secret
        if resume_secret is not None and len(resume_secret.encode("utf-8")) < _MIN_HMAC_SECRET_BYTES:
            # Resume tokens are HMAC-SHA256 tags: the key should be at least the hash's 256 bits (RFC 2104
            # section 3).
            raise ValueError(f"TUNNEL_RESUME_SECRET must be at least {_MIN_HMAC_SECRET_BYTES} bytes")
        if self.dynamodb_endpoint is not None:
            _check_url("TUNNEL_DYNAMODB_ENDPOINT", self.dynamodb_endpoint, schemes=("http", "https"))
        if self.log_level not in _LOG_LEVELS:
            raise ValueError(f"TUNNEL_LOG_LEVEL must be one of {list(_LOG_LEVELS)}, got {self.log_level!r}")
        self._check_auth()

    def _check_auth(self) -> None:
        sources = [
            name
            for name, value in (
                ("TUNNEL_JWKS_FILE", self.jwks_file),
                ("TUNNEL_JWKS_JSON", self.jwks_json),
                ("TUNNEL_JWKS_URL", self.jwks_url),
            )
            if value is not None
        ]
        if len(sources) > 1:
            raise ValueError(f"set only one JWKS source, got {' and '.join(sources)}")
        if self.jwks_json is not None:
            _check_jwks_json(self.jwks_json)
        if self.jwks_url is not None:
            # RFC 8725 section 3.10 and RFC 7517 section 9.3: keys fetched without TLS can be swapped.
            _check_url("TUNNEL_JWKS_URL", self.jwks_url, schemes=("https",))
        if self.jwks_file is not None and not self.jwks_file.strip():
            raise ValueError("TUNNEL_JWKS_FILE must be a path, got an empty value")
        if self.jwt_secret is not None and len(self.jwt_secret.encode("utf-8")) < _MIN_HMAC_SECRET_BYTES:
            raise ValueError(
                f"TUNNEL_JWT_SECRET must be at least {_MIN_HMAC_SECRET_BYTES} bytes (RFC 7518 section 3.2)"
            )
        unknown = sorted(set(self.jwt_algorithms) - SUPPORTED_ALGORITHMS)
        if unknown:
            raise ValueError(
                f"TUNNEL_JWT_ALGORITHMS names unsupported algorithms {unknown}; "
                f"supported: {sorted(SUPPORTED_ALGORITHMS)}"
            )
        if self.shared_token is not None and len(self.shared_token) < _MIN_SHARED_TOKEN_CHARS:
            raise ValueError(f"TUNNEL_SHARED_TOKEN must be at least {_MIN_SHARED_TOKEN_CHARS} characters")
        if self.auth_mode == "jwt" and not sources and self.jwt_secret is None:
            # There is no default secret: a gateway that would accept any token must not start.
            raise ValueError(
                "TUNNEL_AUTH=jwt (the default) needs keys: set TUNNEL_JWKS_FILE, TUNNEL_JWKS_JSON, "
                "TUNNEL_JWKS_URL or TUNNEL_JWT_SECRET, or set TUNNEL_AUTH=none for an open gateway"
            )
        if self.auth_mode == "token" and self.shared_token is None:
            raise ValueError("TUNNEL_AUTH=token needs TUNNEL_SHARED_TOKEN")

    def __repr__(self) -> str:
        # Secrets never reach a log line through repr().
        shown = ", ".join(
            f"{name}={'<hidden>' if name in _SECRET_FIELDS and value else value!r}"
            for name, value in ((n, getattr(self, n)) for n in self.__dataclass_fields__)
        )
        return f"Settings({shown})"


def _check_url(variable: str, value: str, *, schemes: tuple[str, ...]) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(
            f"{variable} must be an absolute {'/'.join(schemes)} URL without query or fragment, got {value!r}"
        )


def _check_positive(variable: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{variable} must be a positive number, got {value!r}")


def _check_non_negative(variable: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{variable} must be a non-negative number, got {value!r}")


def _check_jwks_json(text: str) -> None:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"TUNNEL_JWKS_JSON is not valid JSON ({exc.msg} at position {exc.pos})") from None
    # RFC 7517 section 5: a JWK Set is an object whose "keys" member is an array.
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError(
            'TUNNEL_JWKS_JSON must be a JWK Set: an object with a "keys" array (RFC 7517 section 5)'
        )


def _get(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = _get(environ, name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    value = _get(environ, name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _list(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    value = _get(environ, name)
    return () if value is None else tuple(item.strip() for item in value.split(",") if item.strip())


def read_aws_secret(arn: str) -> str:
    """Fetch a secret's text from AWS Secrets Manager or SSM Parameter Store, in the ARN's region (I/O).

    Args:
        arn: A Secrets Manager secret ARN (its ``SecretString``) or an SSM parameter ARN (a SecureString
            is decrypted; a String is returned as it is).

    Returns:
        The secret's text.

    Raises:
        ValueError: The ARN is neither kind, or the secret holds only binary data.
        botocore.exceptions.ClientError: AWS refused (not found, access denied).
    """
    match = _SECRET_ARN.fullmatch(arn)
    if match is None:
        raise ValueError("not a Secrets Manager secret or SSM parameter ARN")
    import boto3  # the Lambda runtime has it; needed only when a secret is named by ARN
    from botocore.config import Config

    config = Config(retries={"mode": "standard"}, connect_timeout=2, read_timeout=5)
    text: object
    if match["service"] == "ssm":
        ssm = boto3.client("ssm", region_name=match["region"], config=config)
        text = ssm.get_parameter(Name=arn, WithDecryption=True)["Parameter"]["Value"]
    else:
        secrets = boto3.client("secretsmanager", region_name=match["region"], config=config)
        text = secrets.get_secret_value(SecretId=arn).get("SecretString")
    if not isinstance(text, str):
        raise ValueError("the secret holds binary data; store the value as a secret string")
    return text


def _secrets(environ: Mapping[str, str], read_secret: Callable[[str], str]) -> dict[str, str | None]:
    """Each secret variable's value, taken as it is or fetched from where its ``_ARN`` twin points."""
    values: dict[str, str | None] = {}
    for name in _SECRET_VARIABLES:
        # Secrets are taken as they are: surrounding spaces could be part of them.
        value = environ.get(name) or None
        arn = _get(environ, f"{name}_ARN")
        if arn is not None:
            if value is not None:
                raise ValueError(f"set {name} or {name}_ARN, not both")
            if _SECRET_ARN.fullmatch(arn) is None:
                raise ValueError(
                    f"{name}_ARN must be the ARN of a Secrets Manager secret (arn:aws:secretsmanager:...) "
                    f"or an SSM parameter (arn:aws:ssm:...:parameter/...), got {arn!r}"
                )
            try:
                value = read_secret(arn)
            except Exception as exc:  # botocore's errors name the code, never the secret
                raise ValueError(f"{name}_ARN: cannot read {arn}: {exc}") from exc
            if not value:
                raise ValueError(f"{name}_ARN: {arn} holds an empty value")
        values[name] = value
    return values


def load_settings(
    environ: Mapping[str, str] = os.environ, *, read_secret: Callable[[str], str] = read_aws_secret
) -> Settings:
    """Read and check the gateway's settings from environment variables.

    Variables are named ``TUNNEL_*``; an empty value counts as unset. See `Settings` for each one's
    meaning; the README lists them with their defaults. ``TUNNEL_JWT_SECRET``, ``TUNNEL_SHARED_TOKEN``
    and ``TUNNEL_RESUME_SECRET`` may instead be named by ARN in the same variable suffixed ``_ARN``
    (a Secrets Manager secret or an SSM SecureString parameter), read once through `read_secret`.

    Args:
        environ: The environment to read; the process environment by default.
        read_secret: Fetches a secret's text given its ARN; `read_aws_secret` (boto3) by default.

    Returns:
        The settings.

    Raises:
        ValueError: A variable holds an invalid value (the message names it), a secret named by ARN cannot
            be read, TUNNEL_PUBLIC_URL is unset, or authentication is on without any key.
    """
    mode = (_get(environ, "TUNNEL_AUTH") or "jwt").lower()
    if mode not in _AUTH_MODES:
        raise ValueError(f"TUNNEL_AUTH must be one of {list(_AUTH_MODES)}, got {mode!r}")
    domain = _get(environ, "TUNNEL_DOMAIN")
    public_url = _get(environ, "TUNNEL_PUBLIC_URL")
    secrets = _secrets(environ, read_secret)
    settings = Settings(
        auth_mode=mode,  # type: ignore[arg-type]  # checked against _AUTH_MODES above
        connections_table=_get(environ, "TUNNEL_CONNECTIONS_TABLE") or "tunnel-connections",
        pending_table=_get(environ, "TUNNEL_PENDING_TABLE") or "tunnel-pending",
        public_url=public_url.rstrip("/") if public_url else None,
        domain=domain.lower().rstrip(".") if domain else None,
        body_limit=_int(environ, "TUNNEL_BODY_LIMIT", 4 * 1024 * 1024),
        response_timeout=_float(environ, "TUNNEL_RESPONSE_TIMEOUT", 25.0),
        jwks_file=_get(environ, "TUNNEL_JWKS_FILE"),
        jwks_json=_get(environ, "TUNNEL_JWKS_JSON"),
        jwks_url=_get(environ, "TUNNEL_JWKS_URL"),
        jwt_secret=secrets["TUNNEL_JWT_SECRET"],
        jwt_issuer=_get(environ, "TUNNEL_JWT_ISSUER"),
        jwt_audience=_list(environ, "TUNNEL_JWT_AUDIENCE"),
        jwt_algorithms=_list(environ, "TUNNEL_JWT_ALGORITHMS"),
        jwt_leeway=_float(environ, "TUNNEL_JWT_LEEWAY", 30.0),
        jwks_cache_ttl=_float(environ, "TUNNEL_JWKS_CACHE_TTL", 300.0),
        shared_token=secrets["TUNNEL_SHARED_TOKEN"],
        connection_ttl=_int(environ, "TUNNEL_CONNECTION_TTL", 3 * 60 * 60),
        request_ttl=_int(environ, "TUNNEL_REQUEST_TTL", 120),
        dispatch_race_age=_float(environ, "TUNNEL_DISPATCH_RACE_AGE", 5.0),
        management_endpoint=_get(environ, "TUNNEL_MANAGEMENT_ENDPOINT"),
        log_level=(_get(environ, "TUNNEL_LOG_LEVEL") or "INFO").upper(),
        resume_window=_int(environ, "TUNNEL_RESUME_WINDOW", _DEFAULT_RESUME_WINDOW),
        resume_secret=secrets["TUNNEL_RESUME_SECRET"],
        dynamodb_endpoint=_get(environ, "TUNNEL_DYNAMODB_ENDPOINT"),
        region=_get(environ, "AWS_REGION") or _get(environ, "AWS_DEFAULT_REGION"),
    )
    if settings.public_url is None:
        # Checked after the rest, so that a broken value elsewhere is reported first.
        raise ValueError(
            "TUNNEL_PUBLIC_URL is required: the origin public requests arrive at, such as "
            "https://gw.example.com (agents are told their URLs from it)"
        )
    return settings
