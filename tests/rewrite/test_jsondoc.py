"""Tests for rewrite/jsondoc.py: OpenAPI, Swagger 2.0 and manifests rewritten; other JSON left alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewrite.config import RewriteConfig
from rewrite.jsondoc import rewrite_json
from rewrite.result import Rewrite
from tests.rewrite.conftest import HOST_MODE, PATH_MODE

JSON_FIXTURES = Path(__file__).parents[2] / "fixtures" / "json"
JSON_CASES = sorted(path.name for path in (JSON_FIXTURES / "expected").glob("*.json"))


@pytest.mark.parametrize("name", JSON_CASES)
def test_fixture_rewritten_exactly(name: str) -> None:
    """Each fixture document rewrites to its expected file in path mode, and a second pass changes nothing."""
    source = (JSON_FIXTURES / name).read_text(encoding="utf-8")
    expected = (JSON_FIXTURES / "expected" / name).read_text(encoding="utf-8")
    result = rewrite_json(source, PATH_MODE)
    assert result.text == expected
    assert not result.skipped
    if expected == source:
        assert result.text is source
    again = rewrite_json(result.text, PATH_MODE)
    assert again.text is result.text


@pytest.mark.parametrize("path", sorted(JSON_FIXTURES.glob("*.json")), ids=lambda path: path.name)
def test_every_json_fixture_keeps_its_data(path: Path) -> None:
    """In every JSON fixture, rewriting changes URL strings only: same keys, same numbers, still JSON."""
    source = path.read_text(encoding="utf-8")
    for config in (PATH_MODE, HOST_MODE):
        result = rewrite_json(source, config)
        before = _strip_urls(json.loads(source))
        after = _strip_urls(json.loads(result.text))
        if isinstance(before, dict):
            for added in ("servers", "basePath"):  # added when absent (or, for servers, empty)
                if not before.get(added):
                    before.pop(added, None)
                    after.pop(added, None)
        assert after == before
        assert rewrite_json(result.text, config).text == result.text


def _strip_urls(value: Any) -> Any:
    """The document with every URL-ish string replaced by a placeholder, to compare the rest."""
    if isinstance(value, dict):
        return {key: _strip_urls(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strip_urls(item) for item in value]
    if isinstance(value, str) and ("/" in value or value in ("http", "https") or "." in value):
        return "<url>"
    return value


def test_openapi_without_servers_gets_one_spliced_in_compact() -> None:
    """A compact OpenAPI document gains servers right after "{" and every other byte stays."""
    source = '{"openapi":"3.1.0","info":{"title":"x","version":"1"},"paths":{}}'
    result = rewrite_json(source, PATH_MODE)
    assert (
        result.text
        == '{"servers":[{"url":"/abc123"}],"openapi":"3.1.0","info":{"title":"x","version":"1"},"paths":{}}'
    )
    assert result.rewrites == (Rewrite(where="openapi servers (added)", before="", after="/abc123"),)


def test_openapi_without_servers_gets_one_spliced_in_spaced() -> None:
    """A one-line document written with ", " and ": " gets an addition in the same style."""
    source = '{"openapi": "3.0.3", "paths": {}}'
    assert (
        rewrite_json(source, PATH_MODE).text
        == '{"servers": [{"url": "/abc123"}], "openapi": "3.0.3", "paths": {}}'
    )


def test_splice_follows_unusual_key_separator() -> None:
    """A document written with " : " between keys and values gets its addition written the same way."""
    source = '{"openapi" : "3.0.3" , "paths" : {}}'
    assert rewrite_json(source, PATH_MODE).text == (
        '{"servers" : [{"url" : "/abc123"}], "openapi" : "3.0.3" , "paths" : {}}'
    )


def test_openapi_without_servers_gets_one_spliced_in_indented() -> None:
    """An indented document gains an indented servers member; the rest keeps its bytes, odd spacing too."""
    source = '{\n    "openapi": "3.0.3",\n    "info": {"title": "x",   "version": "1"},\n    "x": 1.50\n}\n'
    assert rewrite_json(source, PATH_MODE).text == (
        '{\n    "servers": [\n        {\n            "url": "/abc123"\n        }\n    ],\n'
        '    "openapi": "3.0.3",\n    "info": {"title": "x",   "version": "1"},\n    "x": 1.50\n}\n'
    )


def test_openapi_host_mode_adds_nothing() -> None:
    """In host mode "/" already is the tunnel's root, so a document without servers stays the same."""
    source = '{"openapi":"3.1.0","paths":{}}'
    assert rewrite_json(source, HOST_MODE).text is source


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/api", "/abc123/api"),
        ("/api/v2/", "/abc123/api/v2/"),
        ("/", "/abc123"),
        ("http://127.0.0.1:3000", "https://gw.example.com/abc123"),
        ("http://127.0.0.1:3000/", "https://gw.example.com/abc123/"),
        ("http://localhost:3000/api", "https://gw.example.com/abc123/api"),
        ("https://gw.example.com/api", "https://gw.example.com/abc123/api"),
        ("/abc123/api", None),
        ("/abc123", None),
        ("https://gw.example.com/abc123", None),
        ("https://api.example.org/v1", None),
        ("{scheme}://sandbox.example.org", None),
        ("api/v1", None),
        (".", None),
    ],
)
def test_openapi_server_urls(url: str, expected: str | None) -> None:
    """Relative-to-root and local server URLs get the prefix; other servers stay as they are."""
    source = json.dumps({"openapi": "3.0.0", "servers": [{"url": url}]})
    result = rewrite_json(source, PATH_MODE)
    if expected is None:
        assert result.text is source
    else:
        assert json.loads(result.text)["servers"] == [{"url": expected}]
        assert result.rewrites == (Rewrite(where="openapi servers[0].url", before=url, after=expected),)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:3000", "http://abc123.localhost:8080"),
        ("http://127.0.0.1:3000/api", "http://abc123.localhost:8080/api"),
        ("/api", None),
        ("/", None),
        ("http://abc123.localhost:8080/api", None),
    ],
)
def test_openapi_server_urls_host_mode(url: str, expected: str | None) -> None:
    """In host mode only server URLs naming the upstream change."""
    source = json.dumps({"openapi": "3.0.0", "servers": [{"url": url}]})
    result = rewrite_json(source, HOST_MODE)
    if expected is None:
        assert result.text is source
    else:
        assert json.loads(result.text)["servers"] == [{"url": expected}]


def test_openapi_empty_servers_replaced() -> None:
    """An empty servers array means "/" as well, so it is replaced in place."""
    source = '{"openapi":"3.0.0","servers":[],"paths":{}}'
    assert (
        rewrite_json(source, PATH_MODE).text == '{"openapi":"3.0.0","servers":[{"url":"/abc123"}],"paths":{}}'
    )


def test_openapi_path_and_operation_servers() -> None:
    """Servers of a Path Item and of an Operation are mapped like the top-level ones, never added."""
    doc = {
        "openapi": "3.0.0",
        "servers": [{"url": "/"}],
        "paths": {
            "/a": {
                "servers": [{"url": "/svc"}],
                "get": {"servers": [{"url": "http://127.0.0.1:3000/v3"}]},
                "post": {"responses": {}},
                "parameters": [],
            },
            "/b": {"put": {"servers": [{"url": "https://other.example/x"}]}},
            "/c": "not an object",
        },
    }
    result = rewrite_json(json.dumps(doc), PATH_MODE)
    rewritten = json.loads(result.text)
    assert rewritten["servers"] == [{"url": "/abc123"}]
    assert rewritten["paths"]["/a"]["servers"] == [{"url": "/abc123/svc"}]
    assert rewritten["paths"]["/a"]["get"]["servers"] == [{"url": "https://gw.example.com/abc123/v3"}]
    assert rewritten["paths"]["/b"]["put"]["servers"] == [{"url": "https://other.example/x"}]
    assert "servers" not in rewritten["paths"]["/a"]["post"]
    assert [rewrite.where for rewrite in result.rewrites] == [
        "openapi servers[0].url",
        "openapi paths[/a].servers[0].url",
        "openapi paths[/a].get.servers[0].url",
    ]


def test_openapi_odd_servers_left_alone() -> None:
    """Servers that are not a list of objects with string URLs are not touched."""
    for servers in ('"/api"', '[1, "x", {"url": 3}, {"description": "no url"}]'):
        source = '{"openapi": "3.0.0", "servers": ' + servers + "}"
        assert rewrite_json(source, PATH_MODE).text is source


def test_openapi_version_2_in_openapi_key_is_not_openapi3() -> None:
    """Only "openapi": "3.x" documents are OpenAPI 3; anything else there is other JSON."""
    source = '{"openapi": "2.0", "paths": {}}'
    assert rewrite_json(source, PATH_MODE).text is source


def test_swagger2_base_path_host_and_schemes() -> None:
    """Swagger 2.0: basePath gets the prefix, an upstream host becomes the public host and scheme."""
    source = (
        '{"swagger":"2.0","host":"localhost:3000","basePath":"/v2","schemes":["http","https"],"paths":{}}'
    )
    result = rewrite_json(source, PATH_MODE)
    assert result.text == (
        '{"swagger":"2.0","host":"gw.example.com","basePath":"/abc123/v2","schemes":["https"],"paths":{}}'
    )
    assert [(r.where, r.before, r.after) for r in result.rewrites] == [
        ("swagger basePath", "/v2", "/abc123/v2"),
        ("swagger host", "localhost:3000", "gw.example.com"),
        ("swagger schemes", "http,https", "https"),
    ]


def test_swagger2_without_base_path_gets_one_spliced_in() -> None:
    """A Swagger 2.0 document without basePath gains the prefix as its basePath."""
    source = '{"swagger": "2.0", "paths": {}}'
    assert rewrite_json(source, PATH_MODE).text == '{"basePath": "/abc123", "swagger": "2.0", "paths": {}}'


@pytest.mark.parametrize("base_path", ["/", ""])
def test_swagger2_root_base_path(base_path: str) -> None:
    """A root basePath becomes the bare prefix, so that "/pets" joins to "/abc123/pets"."""
    source = json.dumps({"swagger": "2.0", "basePath": base_path})
    assert json.loads(rewrite_json(source, PATH_MODE).text)["basePath"] == "/abc123"


def test_swagger2_host_mode() -> None:
    """In host mode basePath stays and an upstream host becomes the tunnel's own host."""
    source = '{"swagger": "2.0", "host": "127.0.0.1:3000", "basePath": "/v2", "schemes": ["http"]}'
    result = rewrite_json(source, HOST_MODE)
    assert result.text == (
        '{"swagger": "2.0", "host": "abc123.localhost:8080", "basePath": "/v2", "schemes": ["http"]}'
    )


@pytest.mark.parametrize(
    "host",
    ["api.example.org", "gw.example.com", "127.0.0.1:3001", ""],
)
def test_swagger2_other_hosts_left_alone(host: str) -> None:
    """A host that is not the upstream (or is already public) keeps its value and its schemes."""
    source = json.dumps({"swagger": "2.0", "host": host, "basePath": "/abc123", "schemes": ["http"]})
    assert rewrite_json(source, PATH_MODE).text is source


def test_swagger2_https_only_upstream_host_left_alone() -> None:
    """A host whose declared scheme is not the upstream's does not name the upstream."""
    source = json.dumps(
        {"swagger": "2.0", "host": "127.0.0.1:3000", "basePath": "/abc123", "schemes": ["https"]}
    )
    assert rewrite_json(source, PATH_MODE).text is source


def test_manifest_fields() -> None:
    """Every URL member of a manifest is mapped; relative ones and other hosts stay."""
    doc = {
        "name": "App",
        "id": "/app",
        "start_url": "/?pwa=1",
        "scope": "/",
        "icons": [{"src": "/i.png"}, {"src": "rel.png"}, "not an object"],
        "screenshots": [{"src": "http://127.0.0.1:3000/s.png"}],
        "shortcuts": [{"url": "/new", "icons": [{"src": "/n.png"}]}],
        "protocol_handlers": [{"protocol": "web+app", "url": "/h?u=%s"}],
        "file_handlers": [{"action": "/open"}],
        "share_target": {"action": "/share"},
        "related_applications": [{"url": "https://play.google.com/x"}],
    }
    result = rewrite_json(json.dumps(doc, indent=2), PATH_MODE)
    assert json.loads(result.text) == doc | {
        "id": "/abc123/app",
        "start_url": "/abc123/?pwa=1",
        "scope": "/abc123/",
        "icons": [{"src": "/abc123/i.png"}, {"src": "rel.png"}, "not an object"],
        "screenshots": [{"src": "https://gw.example.com/abc123/s.png"}],
        "shortcuts": [{"url": "/abc123/new", "icons": [{"src": "/abc123/n.png"}]}],
        "protocol_handlers": [{"protocol": "web+app", "url": "/abc123/h?u=%s"}],
        "file_handlers": [{"action": "/abc123/open"}],
        "share_target": {"action": "/abc123/share"},
    }
    assert result.text.startswith('{\n  "name": "App",\n  "id": "/abc123/app",\n')
    assert len(result.rewrites) == 10


@pytest.mark.parametrize("identity", ["app", "https://other.example/app", "//cdn.example/app"])
def test_manifest_id_that_is_not_an_absolute_path_left_alone(identity: str) -> None:
    """A manifest id is rewritten only when it is an absolute path."""
    source = json.dumps({"start_url": ".", "id": identity})
    assert rewrite_json(source, PATH_MODE).text is source


def test_manifest_detected_by_media_type() -> None:
    """A document served as application/manifest+json is a manifest even without start_url or scope."""
    source = '{"icons": [{"src": "/i.png"}]}'
    assert rewrite_json(source, PATH_MODE).text is source
    result = rewrite_json(source, PATH_MODE, media_type="application/manifest+json; charset=utf-8")
    assert result.text == '{"icons": [{"src": "/abc123/i.png"}]}'


def test_manifest_detected_by_icons_and_name() -> None:
    """Icons together with a name or short_name make a manifest."""
    source = '{"short_name": "A", "icons": [{"src": "/i.png"}]}'
    assert rewrite_json(source, PATH_MODE).text == '{"short_name": "A", "icons": [{"src": "/abc123/i.png"}]}'


def test_manifest_host_mode_only_upstream_urls() -> None:
    """In host mode a manifest's paths stay and only upstream-origin URLs change."""
    source = '{"start_url": "/", "icons": [{"src": "http://127.0.0.1:3000/i.png"}]}'
    result = rewrite_json(source, HOST_MODE)
    assert result.text == '{"start_url": "/", "icons": [{"src": "http://abc123.localhost:8080/i.png"}]}'


@pytest.mark.parametrize(
    "source",
    [
        '{"id": 1, "photo": "/static/pets/rex.jpg"}',
        '[{"url": "/api/x"}]',
        '"just a string"',
        "42",
        "null",
        "not json at all",
        '{"broken": ',
        "",
        '{"scope": "openid profile", "access_token": "x"}',
        '{"icons": ["/a.png"]}',
        '{"info": {"openapi": "3.0.0"}, "servers": []}',
    ],
)
def test_other_json_is_the_same_object(source: str) -> None:
    """JSON that is neither OpenAPI nor a manifest, or that mentions no such key, comes back as is."""
    result = rewrite_json(source, PATH_MODE)
    assert result.text is source
    assert not result.rewrites
    assert not result.skipped


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ('{"openapi": "3.0.0", ', "malformed JSON: Expecting property name enclosed in double quotes"),
        ('{"openapi": "3.0.0"} trailing', "malformed JSON: Extra data"),
        ('["openapi", "3.0.0"]', "top-level JSON value is not an object"),
        ('"openapi"', "top-level JSON value is not an object"),
        ('{"openapi": "3.0.0", "info": {}, "info": {}}', "duplicate keys"),
        ('{"openapi": "3.0.0", "info": {"title": "\\ud800"}}', "lone surrogate"),
        ('{"openapi": "3.0.0", "info": {"title": "é\\udfff"}}', "lone surrogate"),
        ('{"openapi": "3.0.0", "info": {"title": "é\ud800"}}', "lone surrogate"),
        ('{"openapi": "3.0.0", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ],
)
def test_unsafe_documents_skipped_with_reason(source: str, reason: str) -> None:
    """Malformed, non-object, duplicate-key and surrogate-laden documents come back unchanged, with why."""
    result = rewrite_json(source, PATH_MODE)
    assert result.text is source
    assert not result.rewrites
    [skipped] = result.skipped
    assert skipped.where == "json"
    assert reason in skipped.reason


def test_escaped_surrogate_pair_is_fine() -> None:
    """A correctly escaped surrogate pair is one character, not a problem."""
    source = '{"openapi": "3.0.0", "info": {"title": "\\ud83d\\ude00"}, "servers": [{"url": "/"}]}'
    result = rewrite_json(source, PATH_MODE)
    assert (
        result.text
        == '{"openapi": "3.0.0", "info": {"title": "\\ud83d\\ude00"}, "servers": [{"url": "/abc123"}]}'
    )


def test_numbers_keep_their_spelling_when_reserialised() -> None:
    """Re-serialising writes every number exactly as the original spelt it, even beyond float precision."""
    numbers = (
        "[1.50, 1E6, 1e400, -0, -0.0, 0.1000000000000000055511151231257827, 123456789012345678901234567890]"
    )
    source = '{"openapi": "3.0.0", "servers": [{"url": "/"}], "x": ' + numbers + ', "y": NaN, "z": -Infinity}'
    result = rewrite_json(source, PATH_MODE)
    assert result.text == source.replace('"url": "/"', '"url": "/abc123"')


def test_numbers_cannot_be_tagged_when_every_escape_is_used() -> None:
    """A document that uses every control-character escape cannot keep its numbers exact, so it is skipped."""
    escapes = "".join(f"\\u{code:04x}" for code in range(1, 32))
    source = '{"openapi": "3.0.0", "info": {"title": "' + escapes + '"}}'
    result = rewrite_json(source, PATH_MODE)
    assert result.text is source
    [skipped] = result.skipped
    assert "numbers cannot be kept exact" in skipped.reason


def test_non_ascii_kept_as_characters_and_ascii_escapes_kept() -> None:
    """Non-ASCII text stays as characters; an all-ASCII document keeps its \\u escapes."""
    source = '{"openapi": "3.0.0", "info": {"title": "Café ☕"}, "servers": [{"url": "/"}]}'
    assert rewrite_json(source, PATH_MODE).text == source.replace('"/"', '"/abc123"')
    source = '{"openapi": "3.0.0", "info": {"title": "Caf\\u00e9"}, "servers": [{"url": "/"}]}'
    assert rewrite_json(source, PATH_MODE).text == source.replace('"/"', '"/abc123"')


def test_byte_order_mark_and_surrounding_whitespace_kept() -> None:
    """A leading BOM and the whitespace around the document survive a rewrite."""
    source = '\ufeff  {"openapi": "3.0.0", "servers": [{"url": "/"}]}\n\n'
    assert (
        rewrite_json(source, PATH_MODE).text
        == '\ufeff  {"openapi": "3.0.0", "servers": [{"url": "/abc123"}]}\n\n'
    )
    source = '\ufeff{"openapi":"3.0.0"}'
    assert rewrite_json(source, PATH_MODE).text == '\ufeff{"servers":[{"url":"/abc123"}],"openapi":"3.0.0"}'


def test_reserialised_indentation_follows_the_original() -> None:
    """Tabs stay tabs and four spaces stay four spaces when a document is written back."""
    source = '{\n\t"openapi": "3.0.0",\n\t"servers": [\n\t\t{\n\t\t\t"url": "/"\n\t\t}\n\t]\n}'
    assert rewrite_json(source, PATH_MODE).text == source.replace('"/"', '"/abc123"')
    source = (
        '{\n    "openapi": "3.0.0",\n    "servers": [\n        {\n            "url": "/"\n        }\n    ]\n}'
    )
    assert rewrite_json(source, PATH_MODE).text == source.replace('"/"', '"/abc123"')


def test_addition_and_change_together_reserialise_with_addition_first() -> None:
    """When servers are added and path servers change, the whole document is written once, servers first."""
    source = '{"openapi":"3.0.0","paths":{"/a":{"servers":[{"url":"/s"}]}}}'
    assert rewrite_json(source, PATH_MODE).text == (
        '{"servers":[{"url":"/abc123"}],"openapi":"3.0.0","paths":{"/a":{"servers":[{"url":"/abc123/s"}]}}}'
    )


def test_splice_into_empty_object_has_no_dangling_comma() -> None:
    """Splicing into an object whose only member is added yields valid JSON."""
    result = rewrite_json("{}", PATH_MODE, media_type="application/manifest+json")
    assert result.text == "{}"  # nothing to add to an empty manifest
    source = '{"swagger": "2.0"}'
    assert rewrite_json(source, PATH_MODE).text == '{"basePath": "/abc123", "swagger": "2.0"}'


# Generated documents: OpenAPI, Swagger, manifest or other, with URL-ish strings, numbers and formatting.
_URLS = st.sampled_from(
    [
        "/",
        "/api",
        "/abc123/api",
        "api/v1",
        ".",
        "http://127.0.0.1:3000",
        "http://localhost:3000/x",
        "https://gw.example.com/y",
        "https://other.example/z",
        "//127.0.0.1:3000/w",
        "",
    ]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    _URLS,
)
_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(["url", "src", "action", "a", "servers", "icons"]), children, max_size=3
        ),
    ),
    max_leaves=12,
)
_SERVERS = st.lists(st.fixed_dictionaries({"url": _URLS}), max_size=3)
_DOCS = st.one_of(
    st.fixed_dictionaries(
        {"openapi": st.just("3.0.3")},
        optional={
            "servers": _SERVERS,
            "paths": st.dictionaries(_URLS, st.fixed_dictionaries({"servers": _SERVERS})),
        },
    ),
    st.fixed_dictionaries(
        {"swagger": st.just("2.0")},
        optional={
            "basePath": _URLS,
            "host": st.sampled_from(["127.0.0.1:3000", "gw.example.com", "x.example"]),
        },
    ),
    st.fixed_dictionaries(
        {"start_url": _URLS},
        optional={"scope": _URLS, "icons": st.lists(st.fixed_dictionaries({"src": _URLS}), max_size=2)},
    ),
    st.dictionaries(st.text(max_size=6), _VALUES, max_size=4),
).flatmap(lambda doc: st.tuples(st.just(doc), _VALUES))
_INDENTS = st.sampled_from([None, 2, 4, "\t"])


@settings(max_examples=200, deadline=None)
@given(case=_DOCS, indent=_INDENTS, compact=st.booleans(), host_mode=st.booleans())
def test_rewriting_json_twice_equals_once(
    case: tuple[dict[str, Any], Any], indent: int | str | None, compact: bool, host_mode: bool
) -> None:
    """For any generated document, a rewrite is valid JSON and a second pass changes nothing."""
    doc, extra = case
    doc = doc | {"extra": extra}
    separators = (",", ":") if compact and indent is None else None
    source = json.dumps(doc, indent=indent, separators=separators, ensure_ascii=False)
    config: RewriteConfig = HOST_MODE if host_mode else PATH_MODE
    once = rewrite_json(source, config)
    json.loads(once.text)
    twice = rewrite_json(once.text, config)
    assert twice.text == once.text
    assert not twice.rewrites
    if not once.rewrites:
        assert once.text is source


@settings(max_examples=200, deadline=None)
@given(value=_VALUES)
def test_json_without_rewritable_keys_is_the_same_object(value: Any) -> None:
    """Any JSON value that is not an OpenAPI document or a manifest comes back as the same object."""
    source = json.dumps(value)
    result = rewrite_json(source, PATH_MODE)
    assert result.text is source
    assert not result.rewrites
