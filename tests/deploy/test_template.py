"""Tests for deploy/template.yaml: cfn-lint passes, IAM names only this stack's resources, and the template
agrees with the code it deploys (table schemas, settings variables, handler, package defaults).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode_str  # type: ignore[import-untyped]

from agent.package import HANDLER, PackageOptions
from lambda_app.settings import load_settings
from lambda_app.store_dynamodb import TUNNEL_INDEX, create_tables

TEMPLATE_PATH = Path(__file__).parents[2] / "deploy" / "template.yaml"
CFN_LINT = Path(sys.executable).with_name("cfn-lint")
# Values CloudFormation supplies: they name this account, region and partition, nothing foreign.
PSEUDO_PARAMETERS = {"AWS::Partition", "AWS::Region", "AWS::AccountId", "AWS::URLSuffix", "AWS::StackName"}
# The one resource outside the stack IAM may name: the secret the deployer points AuthSecretArn at.
DEPLOYER_SECRET_PARAMETER = "AuthSecretArn"


def _load(text: str) -> dict[str, Any]:
    template, errors = decode_str(text)
    assert not errors, errors
    assert isinstance(template, dict)
    return template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """The template as CloudFormation reads it, short-form tags (!Ref, !Sub, ...) in long form."""
    return _load(TEMPLATE_PATH.read_text(encoding="utf-8"))


def _resources(template: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CFN_LINT), "--", str(path)], capture_output=True, text=True, timeout=120)


def test_template_passes_cfn_lint() -> None:
    """cfn-lint (with the SAM transform it bundles) reports nothing: no errors, warnings or notes."""
    result = _lint(TEMPLATE_PATH)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_catches_a_broken_copy(tmp_path: Path) -> None:
    """The lint is real: a copy naming a table that does not exist fails it."""
    broken = tmp_path / "template.yaml"
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    broken.write_text(text.replace("!GetAtt PendingTable.Arn", "!GetAtt MissingTable.Arn"), encoding="utf-8")
    assert _lint(broken).returncode != 0


# --- IAM ------------------------------------------------------------------------------------------------


def _branches(value: Any) -> Iterator[Any]:
    """Both outcomes of an Fn::If, recursively; AWS::NoValue (nothing) yields nothing."""
    if isinstance(value, Mapping) and "Fn::If" in value:
        _, then, otherwise = value["Fn::If"]
        yield from _branches(then)
        yield from _branches(otherwise)
    elif value != {"Ref": "AWS::NoValue"}:
        yield value


def _statements(template: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for role in _resources(template, "AWS::IAM::Role").values():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield from _branches(statement)


def _foreign_resources(resource: Any, template: Mapping[str, Any]) -> list[str]:
    """What in one IAM Resource entry is not this stack's own resource (empty when all of it is)."""
    ours = set(template["Resources"])
    if isinstance(resource, Mapping) and "Fn::GetAtt" in resource:
        name = resource["Fn::GetAtt"][0]
        return [] if name in ours else [f"GetAtt of unknown {name}"]
    if isinstance(resource, Mapping) and "Ref" in resource:
        name = resource["Ref"]
        return [] if name in ours or name == DEPLOYER_SECRET_PARAMETER else [f"Ref to {name}"]
    if isinstance(resource, Mapping) and "Fn::Sub" in resource and isinstance(resource["Fn::Sub"], str):
        text = resource["Fn::Sub"]
        names = re.findall(r"\$\{([^}]+)\}", text)
        problems = [f"${{{n}}}" for n in names if n not in ours and n not in PSEUDO_PARAMETERS]
        if not text.startswith("arn:${AWS::Partition}:") or ":${AWS::AccountId}:" not in text:
            problems.append(f"not an ARN in this partition and account: {text}")
        stack_names = [n for n in names if n in ours]
        if not stack_names:
            problems.append(f"names none of this stack's resources: {text}")
        elif "*" in text.split("${" + stack_names[0] + "}")[0]:
            problems.append(f"a wildcard before this stack's resource: {text}")
        return problems
    return [f"literal {resource!r}"]


def test_iam_statements_name_only_this_stack_resources(template: dict[str, Any]) -> None:
    """Every statement allows listed actions on this stack's tables, API, log group and secrets, never '*'."""
    referenced: set[str] = set()
    for statement in _statements(template):
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement
        assert "NotResource" not in statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions), actions
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        for resource in resources:
            assert _foreign_resources(resource, template) == [], (statement["Sid"], resource)
            referenced.update(re.findall(r"[A-Za-z]+", str(resource)))
    expected = {"ConnectionsTable", "PendingTable", "WebSocketApi", "FunctionLogGroup", "ResumeSecret"}
    assert expected | {DEPLOYER_SECRET_PARAMETER} <= referenced
    assert "HttpApi" not in referenced  # the function never calls the public API


def test_only_one_role_and_no_managed_policies(template: dict[str, Any]) -> None:
    """The function uses the template's one role; no other role, managed policy or SAM policy exists."""
    assert list(_resources(template, "AWS::IAM::Role")) == ["FunctionRole"]
    role = template["Resources"]["FunctionRole"]["Properties"]
    assert "ManagedPolicyArns" not in role
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        assert not _resources(template, kind)
    function = template["Resources"]["GatewayFunction"]["Properties"]
    assert function["Role"] == {"Fn::GetAtt": ["FunctionRole", "Arn"]}
    assert "Policies" not in function


@pytest.mark.parametrize(
    "resource",
    [
        "*",
        "arn:aws:dynamodb:eu-west-1:123456789012:table/other",
        {"Ref": "JwksUrl"},
        {"Fn::GetAtt": ["SomeoneElsesTable", "Arn"]},
        {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:*"},
        {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:*/${WebSocketApi}"},
        {"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${Other}:table/x"},
    ],
)
def test_the_iam_check_flags_foreign_resources(template: dict[str, Any], resource: Any) -> None:
    """The check is real: a wildcard, a literal ARN, a parameter, a wildcard before the API id are flagged."""
    assert _foreign_resources(resource, template)


# --- the template agrees with the code ------------------------------------------------------------------


class _RecordingClient:
    """Stands in for a boto3 DynamoDB client: records what create_tables asks for."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Any]] = {}
        self.ttl: dict[str, str] = {}

    def create_table(self, **kwargs: Any) -> None:
        self.tables[kwargs["TableName"]] = kwargs

    def update_time_to_live(self, **kwargs: Any) -> None:
        self.ttl[kwargs["TableName"]] = kwargs["TimeToLiveSpecification"]["AttributeName"]


def _sorted(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return sorted(items, key=lambda item: str(item[key]))


def test_tables_match_create_tables(template: dict[str, Any]) -> None:
    """Keys, attribute types, the GSI, on-demand billing and the TTL attribute equal create_tables' own."""
    client = _RecordingClient()
    create_tables(client, "connections", "pending", wait=False)  # type: ignore[arg-type]
    for logical, name in (("ConnectionsTable", "connections"), ("PendingTable", "pending")):
        ours = template["Resources"][logical]["Properties"]
        theirs = client.tables[name]
        assert ours["BillingMode"] == theirs["BillingMode"] == "PAY_PER_REQUEST"
        assert ours["KeySchema"] == theirs["KeySchema"]
        assert _sorted(ours["AttributeDefinitions"], "AttributeName") == _sorted(
            theirs["AttributeDefinitions"], "AttributeName"
        )
        assert ours.get("GlobalSecondaryIndexes", []) == theirs.get("GlobalSecondaryIndexes", [])
        assert ours["TimeToLiveSpecification"] == {"AttributeName": client.ttl[name], "Enabled": True}
    indexes = template["Resources"]["ConnectionsTable"]["Properties"]["GlobalSecondaryIndexes"]
    assert [index["IndexName"] for index in indexes] == [TUNNEL_INDEX]


class _RecordingEnvironment(dict[str, str]):
    """An environment that remembers every variable name load_settings looked up."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


def test_function_environment_holds_only_variables_the_settings_read(template: dict[str, Any]) -> None:
    """Each variable the template sets is read by load_settings: none is misspelt or unused."""
    environment = template["Resources"]["GatewayFunction"]["Properties"]["Environment"]["Variables"]
    recorded = _RecordingEnvironment({"TUNNEL_AUTH": "none", "TUNNEL_PUBLIC_URL": "https://gw.example.com"})
    load_settings(recorded)
    assert set(environment) <= recorded.read, set(environment) - recorded.read
    assert {"TUNNEL_PUBLIC_URL", "TUNNEL_MANAGEMENT_ENDPOINT", "TUNNEL_CONNECTIONS_TABLE"} <= set(environment)


def test_no_secret_has_a_literal_value(template: dict[str, Any]) -> None:
    """Secrets reach the function by ARN only: no secret variable, no defaulted or NoEcho secret parameter."""
    environment = template["Resources"]["GatewayFunction"]["Properties"]["Environment"]["Variables"]
    for name in ("TUNNEL_JWT_SECRET", "TUNNEL_SHARED_TOKEN", "TUNNEL_RESUME_SECRET", "TUNNEL_JWKS_JSON"):
        assert name not in environment
    for name, parameter in template["Parameters"].items():
        assert not parameter.get("NoEcho"), name
        if re.search("secret|token|password|key", name, re.IGNORECASE):
            assert parameter.get("Default", "") == "", name
    assert template["Parameters"]["AuthMode"]["Default"] == "jwt"


def test_function_matches_the_package(template: dict[str, Any]) -> None:
    """Handler, default architecture and runtime are what `tunnel package` builds by default."""
    function = template["Resources"]["GatewayFunction"]["Properties"]
    defaults = PackageOptions(output=Path("fn.zip"))
    assert function["Handler"] == HANDLER
    assert function["CodeUri"] == "fn.zip"  # deploy/fn.zip, next to the template
    assert template["Parameters"]["Architecture"]["Default"] == defaults.arch
    assert template["Parameters"]["Runtime"]["Default"] == f"python{defaults.python}"
    assert function["Architectures"] == [{"Ref": "Architecture"}]


def test_timeout_covers_the_response_wait(template: dict[str, Any]) -> None:
    """The function outlives the 25 s wait plus the handler's 1 s margin for the 504, at any allowed value."""
    environment = template["Resources"]["GatewayFunction"]["Properties"]["Environment"]["Variables"]
    timeout = template["Parameters"]["Timeout"]
    wait = float(environment["TUNNEL_RESPONSE_TIMEOUT"])
    assert timeout["MinValue"] >= wait + 1
    assert timeout["Default"] >= timeout["MinValue"]


def test_apis_routes_and_outputs(template: dict[str, Any]) -> None:
    """WebSocket routes $connect, $disconnect, $default; the HTTP API's catch-all speaks payload 2.0."""
    routes = _resources(template, "AWS::ApiGatewayV2::Route")
    websocket = {
        r["Properties"]["RouteKey"]
        for r in routes.values()
        if r["Properties"]["ApiId"] == {"Ref": "WebSocketApi"}
    }
    http = {
        r["Properties"]["RouteKey"] for r in routes.values() if r["Properties"]["ApiId"] == {"Ref": "HttpApi"}
    }
    assert websocket == {"$connect", "$disconnect", "$default"}
    assert http == {"$default"}
    integration = template["Resources"]["HttpIntegration"]["Properties"]
    assert integration["PayloadFormatVersion"] == "2.0"
    assert {"WebSocketUrl", "PublicUrl", "AgentCommand"} <= set(template["Outputs"])


def test_logs_alarms_and_cleanup(template: dict[str, Any]) -> None:
    """Logs are kept for a set time, errors and throttles raise alarms, and a schedule runs the cleanup."""
    log_group = template["Resources"]["FunctionLogGroup"]["Properties"]
    assert log_group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    function = template["Resources"]["GatewayFunction"]["Properties"]
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": "FunctionLogGroup"}
    alarms = _resources(template, "AWS::CloudWatch::Alarm").values()
    assert {a["Properties"]["MetricName"] for a in alarms} == {"Errors", "Throttles"}
    rules = _resources(template, "AWS::Events::Rule")
    assert [r["Properties"]["Targets"][0]["Arn"] for r in rules.values()] == [
        {"Fn::GetAtt": ["GatewayFunction", "Arn"]}
    ]
