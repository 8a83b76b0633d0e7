"""Tests for lambda_app/settings.py: defaults, parsing, and a named ValueError for every bad value."""

from __future__ import annotations

import dataclasses
import json

import pytest

from lambda_app.settings import INTEGRATION_TIMEOUT_LIMIT, Settings, load_settings, read_aws_secret

SECRET = "s" * 32
URL = {"TUNNEL_PUBLIC_URL": "https://gw.example.com"}
JWKS = json.dumps(
    {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}
)


def test_defaults_with_auth_off() -> None:
    """With only TUNNEL_AUTH=none set, every other setting takes its documented default."""
    settings = load_settings({"TUNNEL_AUTH": "none", **URL})
    assert settings == Settings(auth_mode="none", public_url="https://gw.example.com")
    assert settings.connections_table == "tunnel-connections"
    assert settings.pending_table == "tunnel-pending"
    assert settings.response_timeout == 25.0
    assert settings.body_limit == 4 * 1024 * 1024
    assert settings.domain is None
    assert settings.dispatch_race_age == 5.0
    assert settings.log_level == "INFO"
    assert settings.resume_window == 900
    assert (settings.resume_secret, settings.dynamodb_endpoint, settings.region) == (None, None, None)


def test_empty_environment_fails_closed() -> None:
    """Auth defaults to jwt and there is no default secret, so an empty environment refuses to start."""
    with pytest.raises(ValueError, match="TUNNEL_AUTH=jwt") as info:
        load_settings({})
    assert "TUNNEL_JWT_SECRET" in str(info.value)
    assert "TUNNEL_JWKS_URL" in str(info.value)


def test_every_variable_is_read() -> None:
    """A full environment sets every field, normalising case, trailing slashes and lists."""
    settings = load_settings(
        {
            "TUNNEL_AUTH": "JWT",
            "TUNNEL_CONNECTIONS_TABLE": "conns",
            "TUNNEL_PENDING_TABLE": "pending",
            "TUNNEL_PUBLIC_URL": "https://abc.execute-api.eu-west-1.amazonaws.com/prod/",
            "TUNNEL_DOMAIN": "Tunnel.Example.COM.",
            "TUNNEL_BODY_LIMIT": "1048576",
            "TUNNEL_RESPONSE_TIMEOUT": "28.5",
            "TUNNEL_JWKS_URL": "https://auth.example.com/.well-known/jwks.json",
            "TUNNEL_JWT_SECRET": SECRET,
            "TUNNEL_JWT_ISSUER": "https://auth.example.com/",
            "TUNNEL_JWT_AUDIENCE": "tunnel, tunnel-staging",
            "TUNNEL_JWT_ALGORITHMS": "RS256,EdDSA",
            "TUNNEL_JWT_LEEWAY": "10",
            "TUNNEL_JWKS_CACHE_TTL": "60",
            "TUNNEL_CONNECTION_TTL": "9000",
            "TUNNEL_REQUEST_TTL": "90",
            "TUNNEL_DISPATCH_RACE_AGE": "2.5",
            "TUNNEL_MANAGEMENT_ENDPOINT": "http://127.0.0.1:4510",
            "TUNNEL_LOG_LEVEL": "debug",
            "TUNNEL_RESUME_WINDOW": "600",
            "TUNNEL_RESUME_SECRET": "r" * 32,
            "TUNNEL_DYNAMODB_ENDPOINT": "http://127.0.0.1:5000",
            "AWS_REGION": "eu-west-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    assert settings == Settings(
        auth_mode="jwt",
        connections_table="conns",
        pending_table="pending",
        public_url="https://abc.execute-api.eu-west-1.amazonaws.com/prod",
        domain="tunnel.example.com",
        body_limit=1048576,
        response_timeout=28.5,
        jwks_url="https://auth.example.com/.well-known/jwks.json",
        jwt_secret=SECRET,
        jwt_issuer="https://auth.example.com/",
        jwt_audience=("tunnel", "tunnel-staging"),
        jwt_algorithms=("RS256", "EdDSA"),
        jwt_leeway=10.0,
        jwks_cache_ttl=60.0,
        connection_ttl=9000,
        request_ttl=90,
        dispatch_race_age=2.5,
        management_endpoint="http://127.0.0.1:4510",
        log_level="DEBUG",
        resume_window=600,
        resume_secret="r" * 32,
        dynamodb_endpoint="http://127.0.0.1:5000",
        region="eu-west-1",
    )


def test_empty_values_count_as_unset() -> None:
    """A variable set to an empty string takes the default instead of failing to parse."""
    settings = load_settings({"TUNNEL_AUTH": "none", "TUNNEL_BODY_LIMIT": "", "TUNNEL_DOMAIN": "  ", **URL})
    assert (settings.body_limit, settings.domain) == (4 * 1024 * 1024, None)


@pytest.mark.parametrize(
    "environ",
    [
        {"TUNNEL_JWT_SECRET": SECRET},
        {"TUNNEL_JWKS_JSON": JWKS},
        {"TUNNEL_JWKS_FILE": "/etc/tunnel/jwks.json"},
        {"TUNNEL_JWKS_URL": "https://auth.example.com/jwks.json"},
    ],
)
def test_jwt_mode_starts_with_any_one_key_source(environ: dict[str, str]) -> None:
    """Each key source on its own is enough for the default jwt mode."""
    assert load_settings({**environ, **URL}).auth_mode == "jwt"


def test_token_mode_needs_and_keeps_the_shared_token() -> None:
    """TUNNEL_AUTH=token starts with a shared token, which is kept exactly, spaces included."""
    settings = load_settings({"TUNNEL_AUTH": "token", "TUNNEL_SHARED_TOKEN": " a-long-shared-token ", **URL})
    assert settings.shared_token == " a-long-shared-token "


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"TUNNEL_AUTH": "maybe"}, "TUNNEL_AUTH"),
        ({"TUNNEL_AUTH": "token"}, "TUNNEL_SHARED_TOKEN"),
        ({"TUNNEL_AUTH": "token", "TUNNEL_SHARED_TOKEN": "short"}, "TUNNEL_SHARED_TOKEN"),
        ({"TUNNEL_JWT_SECRET": "too-short"}, "TUNNEL_JWT_SECRET"),
        ({"TUNNEL_JWKS_URL": "http://auth.example.com/jwks.json"}, "TUNNEL_JWKS_URL"),
        ({"TUNNEL_JWKS_JSON": "{not json"}, "TUNNEL_JWKS_JSON"),
        ({"TUNNEL_JWKS_JSON": '{"kty": "RSA"}'}, "TUNNEL_JWKS_JSON"),
        ({"TUNNEL_JWKS_JSON": JWKS, "TUNNEL_JWKS_URL": "https://a.example/j"}, "TUNNEL_JWKS_URL"),
        ({"TUNNEL_JWT_SECRET": SECRET, "TUNNEL_JWT_ALGORITHMS": "HS256,none"}, "TUNNEL_JWT_ALGORITHMS"),
        ({"TUNNEL_JWT_SECRET": SECRET, "TUNNEL_JWT_LEEWAY": "3600"}, "TUNNEL_JWT_LEEWAY"),
        ({"TUNNEL_JWT_SECRET": SECRET, "TUNNEL_JWT_LEEWAY": "-1"}, "TUNNEL_JWT_LEEWAY"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_RESPONSE_TIMEOUT": "29"}, "TUNNEL_RESPONSE_TIMEOUT"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_RESPONSE_TIMEOUT": "45"}, "TUNNEL_RESPONSE_TIMEOUT"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_RESPONSE_TIMEOUT": "0"}, "TUNNEL_RESPONSE_TIMEOUT"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_RESPONSE_TIMEOUT": "soon"}, "TUNNEL_RESPONSE_TIMEOUT"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_RESPONSE_TIMEOUT": "nan"}, "TUNNEL_RESPONSE_TIMEOUT"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_BODY_LIMIT": "4MB"}, "TUNNEL_BODY_LIMIT"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_BODY_LIMIT": "0"}, "TUNNEL_BODY_LIMIT"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_CONNECTION_TTL": "-5"}, "TUNNEL_CONNECTION_TTL"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_REQUEST_TTL": "20"}, "TUNNEL_REQUEST_TTL"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_JWKS_CACHE_TTL": "0"}, "TUNNEL_JWKS_CACHE_TTL"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_DISPATCH_RACE_AGE": "-0.1"}, "TUNNEL_DISPATCH_RACE_AGE"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_CONNECTIONS_TABLE": "a b"}, "TUNNEL_CONNECTIONS_TABLE"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_PENDING_TABLE": "x"}, "TUNNEL_PENDING_TABLE"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_PUBLIC_URL": "gw.example.com"}, "TUNNEL_PUBLIC_URL"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_PUBLIC_URL": "https://gw.example.com/?x=1"}, "TUNNEL_PUBLIC_URL"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_DOMAIN": "https://tunnel.example.com"}, "TUNNEL_DOMAIN"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_DOMAIN": "-bad-.example.com"}, "TUNNEL_DOMAIN"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_MANAGEMENT_ENDPOINT": "ftp://x"}, "TUNNEL_MANAGEMENT_ENDPOINT"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_LOG_LEVEL": "LOUD"}, "TUNNEL_LOG_LEVEL"),
        ({"TUNNEL_AUTH": "none"}, "TUNNEL_PUBLIC_URL"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_RESUME_WINDOW": "-1"}, "TUNNEL_RESUME_WINDOW"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_RESUME_WINDOW": "15m"}, "TUNNEL_RESUME_WINDOW"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_RESUME_SECRET": "short"}, "TUNNEL_RESUME_SECRET"),
        ({"TUNNEL_AUTH": "none", "TUNNEL_DYNAMODB_ENDPOINT": "localhost:5000"}, "TUNNEL_DYNAMODB_ENDPOINT"),
    ],
)
def test_invalid_value_names_its_variable(environ: dict[str, str], variable: str) -> None:
    """Every invalid value raises a ValueError whose message names the variable to fix."""
    with pytest.raises(ValueError, match=variable):
        load_settings(environ)


def test_response_timeout_just_under_the_limit_is_accepted() -> None:
    """A response timeout just below 29 s is valid; API Gateway's 30 s still leaves room for the 504."""
    settings = load_settings({"TUNNEL_AUTH": "none", "TUNNEL_RESPONSE_TIMEOUT": "28.99", **URL})
    assert settings.response_timeout < INTEGRATION_TIMEOUT_LIMIT


def test_settings_are_frozen_and_checked_when_built_directly() -> None:
    """Settings cannot be changed after building, and building one directly runs the same checks."""
    settings = Settings(auth_mode="none")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.body_limit = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match="TUNNEL_RESPONSE_TIMEOUT"):
        Settings(auth_mode="none", response_timeout=30)
    with pytest.raises(ValueError, match="TUNNEL_JWT_SECRET"):
        Settings(auth_mode="jwt")
    with pytest.raises(ValueError, match="TUNNEL_AUTH"):
        Settings(auth_mode="open")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="TUNNEL_JWKS_FILE"):
        Settings(auth_mode="jwt", jwks_file=" ")


def test_repr_hides_secrets() -> None:
    """repr() of the settings never shows the HMAC secret, the shared token or the resume secret."""
    resume = "resume-secret-" + "x" * 32
    settings = load_settings(
        {
            "TUNNEL_JWT_SECRET": SECRET,
            "TUNNEL_SHARED_TOKEN": "shared-token-0123456789",
            "TUNNEL_RESUME_SECRET": resume,
            **URL,
        }
    )
    text = repr(settings)
    assert SECRET not in text
    assert resume not in text
    assert "shared-token-0123456789" not in text
    assert "<hidden>" in text
    assert "connections_table='tunnel-connections'" in text


def test_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Called without arguments, load_settings reads os.environ."""
    monkeypatch.setenv("TUNNEL_AUTH", "none")
    monkeypatch.setenv("TUNNEL_PENDING_TABLE", "from-os-environ")
    monkeypatch.setenv("TUNNEL_PUBLIC_URL", "https://gw.example.com")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    settings = load_settings()
    assert settings.pending_table == "from-os-environ"
    assert settings.region == "ap-southeast-2"


JWT_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:tunnel/jwt-AbCdEf"
TOKEN_ARN = "arn:aws:ssm:eu-west-1:123456789012:parameter/tunnel/shared-token"
RESUME_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:tunnel-resume-Zz0Yy1"


def test_secrets_named_by_arn_are_fetched_once_each() -> None:
    """Each *_ARN variable's secret is fetched once, through the injected reader, into its field."""
    stored = {JWT_SECRET_ARN: SECRET, TOKEN_ARN: "shared-token-0123456789", RESUME_ARN: "r" * 40}
    calls: list[str] = []

    def read_secret(arn: str) -> str:
        calls.append(arn)
        return stored[arn]

    settings = load_settings(
        {
            "TUNNEL_JWT_SECRET_ARN": JWT_SECRET_ARN,
            "TUNNEL_SHARED_TOKEN_ARN": TOKEN_ARN,
            "TUNNEL_RESUME_SECRET_ARN": f" {RESUME_ARN} ",
            **URL,
        },
        read_secret=read_secret,
    )
    assert (settings.jwt_secret, settings.shared_token, settings.resume_secret) == (
        SECRET,
        "shared-token-0123456789",
        "r" * 40,
    )
    assert sorted(calls) == sorted(stored)


def test_no_secret_is_fetched_when_none_is_named_by_arn() -> None:
    """Without *_ARN variables the reader is never called, so the gateway starts without AWS access."""

    def read_secret(arn: str) -> str:
        raise AssertionError(f"unexpected fetch of {arn}")

    assert load_settings({"TUNNEL_JWT_SECRET": SECRET, **URL}, read_secret=read_secret).jwt_secret == SECRET


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TUNNEL_JWT_SECRET": SECRET, "TUNNEL_JWT_SECRET_ARN": JWT_SECRET_ARN}, "not both"),
        ({"TUNNEL_JWT_SECRET_ARN": "arn:aws:s3:::my-bucket/secret"}, "TUNNEL_JWT_SECRET_ARN must be"),
        ({"TUNNEL_RESUME_SECRET_ARN": "tunnel/resume"}, "TUNNEL_RESUME_SECRET_ARN must be"),
        ({"TUNNEL_SHARED_TOKEN_ARN": "arn:aws:ssm:eu-west-1:1234:parameter/x"}, "TUNNEL_SHARED_TOKEN_ARN"),
    ],
)
def test_bad_secret_arn_is_refused_before_any_fetch(environ: dict[str, str], message: str) -> None:
    """A secret given twice or an ARN of another kind is a named ValueError, and nothing is fetched."""

    def read_secret(arn: str) -> str:
        raise AssertionError(f"unexpected fetch of {arn}")

    with pytest.raises(ValueError, match=message):
        load_settings({"TUNNEL_AUTH": "none", **environ, **URL}, read_secret=read_secret)


def test_unreadable_secret_names_its_variable() -> None:
    """A fetch that fails (access denied) becomes a ValueError naming the variable and the ARN."""

    def read_secret(arn: str) -> str:
        raise PermissionError("AccessDeniedException")

    with pytest.raises(ValueError, match=r"TUNNEL_JWT_SECRET_ARN: cannot read .*AccessDeniedException"):
        load_settings({"TUNNEL_JWT_SECRET_ARN": JWT_SECRET_ARN, **URL}, read_secret=read_secret)


@pytest.mark.parametrize(("fetched", "message"), [("short", "at least 32 bytes"), ("", "empty")])
def test_fetched_secret_is_checked_like_a_literal_one(fetched: str, message: str) -> None:
    """A fetched HMAC secret that is too short or empty is refused, as the same literal value would be."""
    with pytest.raises(ValueError, match=message):
        load_settings({"TUNNEL_JWT_SECRET_ARN": JWT_SECRET_ARN, **URL}, read_secret=lambda arn: fetched)


def test_read_aws_secret_reads_secrets_manager_and_ssm(monkeypatch: pytest.MonkeyPatch) -> None:
    """read_aws_secret returns a Secrets Manager SecretString and a decrypted SSM SecureString, by ARN."""
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name="eu-west-1")
        arn = secrets.create_secret(Name="tunnel/jwt", SecretString=SECRET)["ARN"]
        binary = secrets.create_secret(Name="tunnel/binary", SecretBinary=b"\x00\x01")["ARN"]
        ssm = boto3.client("ssm", region_name="eu-west-1")
        ssm.put_parameter(Name="/tunnel/token", Value="shared-token-0123456789", Type="SecureString")
        parameter_arn = ssm.get_parameter(Name="/tunnel/token")["Parameter"]["ARN"]
        assert read_aws_secret(arn) == SECRET
        assert read_aws_secret(parameter_arn) == "shared-token-0123456789"
        with pytest.raises(ValueError, match="binary"):
            read_aws_secret(binary)
    with pytest.raises(ValueError, match="not a Secrets Manager secret or SSM parameter ARN"):
        read_aws_secret("arn:aws:kms:eu-west-1:123456789012:key/abc")
