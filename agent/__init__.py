"""The developer's side: the `tunnel` command line, the agent that forwards to a local port, and the filter
demo with its sample apps (I/O lives here).

Names are re-exported lazily, so `import agent` does not pull in FastAPI or uvicorn, which only the demo
needs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "agent_cli": [
        "ENVIRONMENT_VARIABLES",
        "add_agent_arguments",
        "add_host_header_argument",
        "agent_command",
        "agent_config_from_args",
        "event_printer",
        "format_event",
        "host_header_for",
        "port_number",
        "port_or_zero",
        "run_agent_until_stopped",
    ],
    "cli": ["DemoSettings", "build_parser", "main", "run_demo"],
    "package": [
        "CLI_ONLY_REQUIREMENTS",
        "EXCLUDED_MODULES",
        "HANDLER",
        "PROJECT_PACKAGES",
        "PYTHON_VERSIONS",
        "RUNTIME_PROVIDED",
        "Architecture",
        "PackageError",
        "PackageOptions",
        "PackageReport",
        "add_package_arguments",
        "build_package",
        "bytecode_names",
        "find_interpreter",
        "lambda_requirements",
        "package_command",
        "pinned_constraints",
        "pip_install_command",
        "platform_tags",
        "project_files",
        "select_files",
        "write_zip",
    ],
    "forward": [
        "HOP_BY_HOP_HEADERS",
        "stream_forward",
        "strip_hop_by_hop",
    ],  # forward(): agent.forward.forward
    "tunnel": [
        "Agent",
        "AgentConfig",
        "AgentConnection",
        "AgentEvent",
        "Connector",
        "EventSink",
        "OutputMode",
        "reconnect_delays",
        "run_agent",
    ],
    "local_http": ["AiohttpTransport", "LocalClient"],
    "in_process": [
        "MESSAGES_EXTENSION",
        "MESSAGES_KEY",
        "MESSAGE_KEY",
        "AsgiApp",
        "MemoryConnection",
        "connect_in_process",
    ],
    "relay": ["BrokenOff", "Relay", "StreamStop", "finish_off_loop"],
    "serve": [
        "DEFAULT_BODY_LIMIT",
        "DEFAULT_TUNNEL_CONCURRENCY",
        "GatewayServer",
        "SelfHostedGateway",
        "ServeConfig",
        "ServerEvent",
        "bind",
    ],
    "serve_cli": [
        "ServeOptions",
        "add_serve_arguments",
        "add_up_arguments",
        "format_server_event",
        "is_listening",
        "load_resume_secret",
        "serve_command",
        "serve_options_from_args",
        "up_command",
    ],
    "demo": ["DEFAULT_TIMEOUT", "DemoProxy", "Scope"],
    "sample_app": ["SWAGGER_UI_DIR", "Item", "NewItem", "create_app"],
    "sample_spa": ["SPA_ITEMS", "create_spa_app"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    return getattr(importlib.import_module(f"agent.{_MODULE_OF[name]}"), name)
