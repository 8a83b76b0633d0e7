"""A mitmproxy addon that serves an app under a path prefix with the rewriting core as its filter.

Run it in front of an app on port 3000, reachable at http://127.0.0.1:8080/abc123/::

    mitmdump --mode reverse:http://127.0.0.1:3000@8080 -s examples/mitmproxy_addon.py \\
        --set tunnel_prefix=/abc123 --set public_origin=http://127.0.0.1:8080

Requests outside the prefix are answered 404; the others go upstream with the prefix stripped, and every
response comes back with its links, redirects and cookies pointed under the prefix. The addon itself does
no I/O: mitmproxy moves the bytes, two calls of `rewrite` decide what they become.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from rewrite import RewriteConfig, rewrite_request, rewrite_response

__all__ = ["TunnelFilter", "addons"]

_log = logging.getLogger(__name__)
_CONFIG = "tunnel_config"  # where a mapped flow keeps its config, in flow.metadata


class TunnelFilter:
    """Map public requests to the upstream app and rewrite its responses for the public prefix."""

    def load(self, loader: Loader) -> None:
        """Declare the addon's options (`--set tunnel_prefix=... --set public_origin=...`)."""
        loader.add_option("tunnel_prefix", str, "", 'The path the app is served under, "" for none.')
        loader.add_option("public_origin", str, "http://127.0.0.1:8080", "The origin browsers use.")

    def configure(self, updated: set[str]) -> None:
        """Refuse bad options at start-up rather than on the first request."""
        try:
            self._config("http://127.0.0.1")
        except ValueError as exc:
            raise exceptions.OptionsError(str(exc)) from exc

    def request(self, flow: http.HTTPFlow) -> None:
        """Strip the prefix and set the forwarding headers, or answer 404 outside the prefix."""
        req = flow.request
        # In reverse mode the request already names the upstream, so its origin is the upstream origin.
        config = self._config(f"{req.scheme}://{req.host}:{req.port}")
        headers = _decoded(req.headers.fields)
        keep_host = bool(ctx.options.keep_host_header)
        if not keep_host:
            # mitmproxy has put the upstream's host in Host; without it the public host is used for
            # X-Forwarded-Host, and rewrite_host sends the upstream its own host as mitmproxy would.
            headers = [(name, value) for name, value in headers if name.lower() != "host"]
        client_ip = flow.client_conn.peername[0] if flow.client_conn.peername else None
        upstream = rewrite_request(
            req.method, req.path, headers, config, client_ip=client_ip, rewrite_host=not keep_host
        )
        if upstream is None:
            message = f"Not found: this proxy serves only {config.prefix}/\n"
            flow.response = http.Response.make(404, message, {"Content-Type": "text/plain; charset=utf-8"})
            return
        req.path = upstream.target
        req.headers = http.Headers(_encoded(upstream.headers))
        flow.metadata[_CONFIG] = config

    def response(self, flow: http.HTTPFlow) -> None:
        """Rewrite the upstream response's headers and (still content-encoded) body for the prefix."""
        config: RewriteConfig | None = flow.metadata.get(_CONFIG)
        resp = flow.response
        if config is None or resp is None or resp.raw_content is None:  # our 404, or a streamed body
            return
        result = rewrite_response(_decoded(resp.headers.fields), resp.raw_content, config)
        if result.report.skipped:  # parts went out unrewritten (fail open): say which and why
            _log.info("%s: %s", flow.request.path, result.report)
        resp.headers = http.Headers(_encoded(result.headers))
        resp.raw_content = result.body

    def _config(self, upstream_origin: str) -> RewriteConfig:
        return RewriteConfig(
            prefix=ctx.options.tunnel_prefix,
            public_origin=ctx.options.public_origin,
            upstream_origin=upstream_origin,
        )


def _decoded(fields: tuple[tuple[bytes, bytes], ...]) -> list[tuple[str, str]]:
    # Header bytes are opaque; latin-1 maps each byte to one character and back without loss.
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in fields]


def _encoded(pairs: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]


addons = [TunnelFilter()]
