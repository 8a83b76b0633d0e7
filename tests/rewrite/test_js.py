"""Tests for rewrite/js.py: string literals in clear URL positions, and nothing else."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewrite.config import RewriteConfig
from rewrite.js import rewrite_js
from rewrite.result import Rewrite
from tests.rewrite.conftest import HOST_MODE, PATH_MODE

FIXTURES = Path(__file__).parents[2] / "fixtures"
SCRIPTS = FIXTURES / "scripts"
SCRIPT_CASES = sorted(path.name for path in (SCRIPTS / "expected").glob("*.js"))


@pytest.mark.parametrize("name", SCRIPT_CASES)
def test_fixture_rewritten_exactly(name: str) -> None:
    """Each fixture script rewrites to its expected file in path mode, and a second pass changes nothing."""
    source = (SCRIPTS / name).read_text()
    expected = (SCRIPTS / "expected" / name).read_text()
    result = rewrite_js(source, PATH_MODE)
    assert result.text == expected
    again = rewrite_js(result.text, PATH_MODE)
    assert again.text is result.text
    assert not again.rewrites


ALL_SCRIPTS = sorted(path for path in FIXTURES.glob("**/*.js") if path.parent.name != "expected")


@pytest.mark.parametrize("path", ALL_SCRIPTS, ids=lambda path: str(path.relative_to(FIXTURES)))
def test_every_script_fixture_only_gains_prefixes(path: Path) -> None:
    """In every script under fixtures/, paths only gain the prefix and origins become the public one."""
    source = path.read_text()
    result = rewrite_js(source, PATH_MODE)
    for rewrite in result.rewrites:
        if rewrite.before.startswith("/") and not rewrite.before.startswith("//"):
            assert rewrite.after == "/abc123" + rewrite.before
        else:
            assert rewrite.after.partition("//")[2].startswith("gw.example.com/abc123")
    assert rewrite_js(result.text, PATH_MODE).text == result.text


POSITIONS = [
    ('fetch("/api/x")', 'fetch("/abc123/api/x")', "js fetch()"),
    ("window.fetch( '/api/x' , {})", "window.fetch( '/abc123/api/x' , {})", "js fetch()"),
    ('import("/assets/chunk.js")', 'import("/abc123/assets/chunk.js")', "js import()"),
    ('import{a as b}from"/assets/x.js"', 'import{a as b}from"/abc123/assets/x.js"', "js import from"),
    ('import x from "/x.js"', 'import x from "/abc123/x.js"', "js import from"),
    ('import * as ns from "/x.js"', 'import * as ns from "/abc123/x.js"', "js import from"),
    ("import x, { y } from '/x.js'", "import x, { y } from '/abc123/x.js'", "js import from"),
    ("import x,*as ns from'/x.js'", "import x,*as ns from'/abc123/x.js'", "js import from"),
    ('import"/assets/polyfill.js"', 'import"/abc123/assets/polyfill.js"', "js import"),
    ('import "/assets/polyfill.js";', 'import "/abc123/assets/polyfill.js";', "js import"),
    ('export*from"/x.js"', 'export*from"/abc123/x.js"', "js export from"),
    ('export * as util from "/x.js"', 'export * as util from "/abc123/x.js"', "js export from"),
    ('export{a,b as c}from"/x.js"', 'export{a,b as c}from"/abc123/x.js"', "js export from"),
    ('new URL("/x", location.href)', 'new URL("/abc123/x", location.href)', "js new URL()"),
    ('new Request("/x")', 'new Request("/abc123/x")', "js new Request()"),
    ('new EventSource("/events")', 'new EventSource("/abc123/events")', "js new EventSource()"),
    ('new window.EventSource("/events")', 'new window.EventSource("/abc123/events")', "js new EventSource()"),
    ('new WebSocket("/ws")', 'new WebSocket("/abc123/ws")', "js new WebSocket()"),
    ('new Worker("/w.js")', 'new Worker("/abc123/w.js")', "js new Worker()"),
    ("new SharedWorker('/s.js')", "new SharedWorker('/abc123/s.js')", "js new SharedWorker()"),
    ('importScripts("/a.js")', 'importScripts("/abc123/a.js")', "js importScripts()"),
    (
        'navigator.serviceWorker.register("/sw.js")',
        'navigator.serviceWorker.register("/abc123/sw.js")',
        "js serviceWorker.register()",
    ),
    ('navigator.sendBeacon("/log", data)', 'navigator.sendBeacon("/abc123/log", data)', "js sendBeacon()"),
    ('xhr.open("GET", "/x")', 'xhr.open("GET", "/abc123/x")', "js XMLHttpRequest.open()"),
    ("xhr.open('post','/x',true)", "xhr.open('post','/abc123/x',true)", "js XMLHttpRequest.open()"),
    ('location.href = "/x"', 'location.href = "/abc123/x"', "js location.href ="),
    ('location = "/x"', 'location = "/abc123/x"', "js location ="),
    ('window.location="/x"', 'window.location="/abc123/x"', "js location ="),
    ('location.pathname = "/x"', 'location.pathname = "/abc123/x"', "js location.pathname ="),
    ('location.assign("/x")', 'location.assign("/abc123/x")', "js location.assign()"),
    ("location.replace('/x')", "location.replace('/abc123/x')", "js location.replace()"),
    ('window.open("/x")', 'window.open("/abc123/x")', "js window.open()"),
    (
        "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect',",
        "oauth2RedirectUrl: window.location.origin + '/abc123/docs/oauth2-redirect',",
        "js location.origin +",
    ),
    ('u = document.location.origin+"/x"', 'u = document.location.origin+"/abc123/x"', "js location.origin +"),
    ('img.src = "/x.png"', 'img.src = "/abc123/x.png"', "js .src ="),
    ('a.href="/x"', 'a.href="/abc123/x"', "js .href ="),
    ('form.action = "/x"', 'form.action = "/abc123/x"', "js .action ="),
    ('({url: "/x"})', '({url: "/abc123/x"})', "js url:"),
    ('({"url": "/x"})', '({"url": "/abc123/x"})', "js url:"),
    ("({a: 1, 'href': '/x'})", "({a: 1, 'href': '/abc123/x'})", "js href:"),
    ('({src:"/x"})', '({src:"/abc123/x"})', "js src:"),
    ('({action: "/x"})', '({action: "/abc123/x"})', "js action:"),
    ('({baseURL: "/api"})', '({baseURL: "/abc123/api"})', "js baseURL:"),
    ('({baseUrl: "/api"})', '({baseUrl: "/abc123/api"})', "js baseUrl:"),
    ('({endpoint: "/graphql"})', '({endpoint: "/abc123/graphql"})', "js endpoint:"),
    ('register("/sw.js", {scope: "/"})', 'register("/sw.js", {scope: "/abc123/"})', "js scope:"),
    ('axios("/x")', 'axios("/abc123/x")', "js axios()"),
    ('axios.get("/x")', 'axios.get("/abc123/x")', "js axios.get()"),
    ('axios.post("/x", body)', 'axios.post("/abc123/x", body)', "js axios.post()"),
    ('axios.put("/x")', 'axios.put("/abc123/x")', "js axios.put()"),
    ('axios.delete("/x")', 'axios.delete("/abc123/x")', "js axios.delete()"),
    ('axios.patch("/x")', 'axios.patch("/abc123/x")', "js axios.patch()"),
    ('axios.head("/x")', 'axios.head("/abc123/x")', "js axios.head()"),
    ('$.get("/x")', '$.get("/abc123/x")', "js $.get()"),
    ('$.post("/x")', '$.post("/abc123/x")', "js $.post()"),
    ('$.getJSON("/x")', '$.getJSON("/abc123/x")', "js $.getJSON()"),
    ('jQuery.ajax("/x")', 'jQuery.ajax("/abc123/x")', "js jQuery.ajax()"),
    ('el.setAttribute("src", "/x")', 'el.setAttribute("src", "/abc123/x")', 'js setAttribute("src")'),
    ("el.setAttribute('href','/x')", "el.setAttribute('href','/abc123/x')", "js setAttribute('href')"),
    (
        'el.setAttribute("action", "/x")',
        'el.setAttribute("action", "/abc123/x")',
        'js setAttribute("action")',
    ),
]


@pytest.mark.parametrize(("source", "expected", "where"), POSITIONS, ids=[case[0] for case in POSITIONS])
def test_url_position_rewritten(source: str, expected: str, where: str) -> None:
    """A path literal in a URL position gets the prefix, and the rewrite names the position."""
    result = rewrite_js(source, PATH_MODE)
    assert result.text == expected
    assert [rewrite.where for rewrite in result.rewrites] == [where]
    assert result.changed


def test_every_import_scripts_argument_rewritten() -> None:
    """importScripts() takes any number of URLs, across lines; each one is rewritten."""
    source = 'importScripts("/a.js", \'/b.js\',\n  "/c.js");'
    result = rewrite_js(source, PATH_MODE)
    assert result.text == 'importScripts("/abc123/a.js", \'/abc123/b.js\',\n  "/abc123/c.js");'
    assert [(r.before, r.after) for r in result.rewrites] == [
        ("/a.js", "/abc123/a.js"),
        ("/b.js", "/abc123/b.js"),
        ("/c.js", "/abc123/c.js"),
    ]


def test_rewrites_record_before_and_after() -> None:
    """Each rewrite is a Rewrite of the decoded URL before and after."""
    result = rewrite_js('fetch("\\/api")', PATH_MODE)
    assert result.rewrites == (Rewrite(where="js fetch()", before="/api", after="/abc123/api"),)


def test_whitespace_and_newlines_between_call_and_literal() -> None:
    """Whitespace, newlines included, may separate the call from its literal."""
    result = rewrite_js('fetch(\n    "/api/x"\n)', PATH_MODE)
    assert result.text == 'fetch(\n    "/abc123/api/x"\n)'


def test_comment_between_call_and_literal_is_not_crossed() -> None:
    """A comment between the call and its literal makes the position unclear, so it is left alone."""
    source = 'fetch(/* the feed */ "/api/feed")'
    assert rewrite_js(source, PATH_MODE).text is source


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("fetch(`/api/${id}`)", "fetch(`/abc123/api/${id}`)"),
        ("fetch(`/api/items`)", "fetch(`/abc123/api/items`)"),
        ("fetch(`/${path}`)", "fetch(`/abc123/${path}`)"),
        ("import(`/assets/${name}.js`)", "import(`/abc123/assets/${name}.js`)"),
        ("fetch(`http://127.0.0.1:3000${path}`)", "fetch(`https://gw.example.com/abc123${path}`)"),
        ("fetch(`http://127.0.0.1:3000/api/${x}`)", "fetch(`https://gw.example.com/abc123/api/${x}`)"),
        ("fetch(`/a/${fetch('/b')}/c`)", "fetch(`/abc123/a/${fetch('/abc123/b')}/c`)"),
    ],
)
def test_template_literal_head_rewritten(source: str, expected: str) -> None:
    """Only the text of a template literal before its first substitution is rewritten."""
    assert rewrite_js(source, PATH_MODE).text == expected


@pytest.mark.parametrize(
    "source",
    [
        "fetch(`${base}/api`)",
        "fetch(`api/${id}`)",
        "fetch(`/abc123/api/${id}`)",
        "fetch(`/unterminated",
        'fetch("/unterminated\n")',
    ],
)
def test_template_and_unterminated_literals_left_alone(source: str) -> None:
    """Templates that do not start with an absolute path, and unterminated literals, are not touched."""
    assert rewrite_js(source, PATH_MODE).text is source


NOT_URL_POSITIONS = [
    'const s = "/not/a/url";',
    'console.log("/x");',
    'let route = { path: "/users" };',
    'if (location == "/admin") {}',
    'u = origin + "/y";',
    'u = other.origin + "/z";',
    'if (location.href === "/admin") {}',
    'if (a.src != "/x") {}',
    'a.href += "/x";',
    'prefetch("/x");',
    'myfetch("/x");',
    'obj.import("/x");',
    'str.replace("/x", "/y");',
    'x ? url : "/x";',
    'f(myurl: "/x")',
    'xhr.open(method, "/x");',
    'xhr.open("FETCH", "/x");',
    'el.setAttribute("data-src", "/x");',
    'open("/x");',
    'cache.addAll(["/", "/index.html"]);',
    'const re = /fetch\\("\\/x"\\)/;',
    'x.split("/").join("/");',
    'const t = "a" + "/x";',
    'fetch("a" + "/x");',
    "fetch(base + '/x');",
    'new URL(base, "/x");',
    'history.pushState({}, "", "/x");',
]


@pytest.mark.parametrize("source", NOT_URL_POSITIONS)
def test_literal_outside_url_position_left_alone(source: str) -> None:
    """A path literal that is not in a clear URL position comes back untouched, as the same object."""
    result = rewrite_js(source, PATH_MODE)
    assert result.text is source
    assert not result.rewrites
    assert not result.skipped


@pytest.mark.parametrize(
    "literal",
    [
        '"https://cdn.example.org/lib.js"',
        '"//cdn.example.org/lib.js"',
        '"http://127.0.0.1:3001/other-port"',
        '"api/relative"',
        '"./relative"',
        '"../up"',
        '"#fragment"',
        '"?query=1"',
        '"data:text/plain,hello"',
        '"mailto:a@example.org"',
        '"javascript:void(0)"',
        '"/abc123/already"',
        '"/abc123"',
        '"https://gw.example.com/abc123/already"',
        '""',
    ],
)
def test_urls_to_leave_alone(literal: str) -> None:
    """Other hosts, relative URLs, other schemes and already-prefixed URLs stay as they are."""
    source = f"fetch({literal});"
    assert rewrite_js(source, PATH_MODE).text is source


def test_comment_that_looks_like_a_call_does_not_break() -> None:
    """A call inside a // comment may be rewritten, but the comment and the code after it survive."""
    source = "// fetch('/x') is how it used to work\nconst a = 1;\n"
    result = rewrite_js(source, PATH_MODE)
    assert result.text in (source, "// fetch('/abc123/x') is how it used to work\nconst a = 1;\n")


def test_literal_inside_a_literal_is_never_rewritten_on_a_later_pass() -> None:
    """Quotes inside a literal in a URL position are skipped whether or not that literal changed."""
    source = "fetch(\"/a fetch('/b')\")"
    once = rewrite_js(source, PATH_MODE)
    assert once.text == "fetch(\"/abc123/a fetch('/b')\")"
    assert rewrite_js(once.text, PATH_MODE).text is once.text


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('fetch("http://127.0.0.1:3000/api")', 'fetch("http://abc123.localhost:8080/api")'),
        ('fetch("http://localhost:3000/api")', 'fetch("http://abc123.localhost:8080/api")'),
        ('fetch("http://127.0.0.1:3000")', 'fetch("http://abc123.localhost:8080")'),
        ('new WebSocket("ws://127.0.0.1:3000/ws")', 'new WebSocket("ws://abc123.localhost:8080/ws")'),
        ('({src: "//127.0.0.1:3000/x.js"})', '({src: "//abc123.localhost:8080/x.js"})'),
        ("fetch(`http://127.0.0.1:3000${p}`)", "fetch(`http://abc123.localhost:8080${p}`)"),
    ],
)
def test_host_mode_rewrites_upstream_origins(source: str, expected: str) -> None:
    """In host mode only URLs that name the upstream origin change."""
    assert rewrite_js(source, HOST_MODE).text == expected


@pytest.mark.parametrize(
    "source",
    [
        'fetch("/api/x")',
        'import{a}from"/assets/x.js"',
        'fetch("http://abc123.localhost:8080/api")',
        'fetch("https://gw.example.com/api")',
    ],
)
def test_host_mode_leaves_paths_alone(source: str) -> None:
    """In host mode absolute paths and the public origin already point at the tunnel."""
    assert rewrite_js(source, HOST_MODE).text is source


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('fetch("http://127.0.0.1:3000/api")', 'fetch("https://gw.example.com/abc123/api")'),
        ('fetch("HTTP://127.0.0.1:3000/api")', 'fetch("https://gw.example.com/abc123/api")'),
        ('fetch("http://127.0.0.1:3000")', 'fetch("https://gw.example.com/abc123")'),
        ('fetch("https://gw.example.com/api")', 'fetch("https://gw.example.com/abc123/api")'),
        ('new WebSocket("ws://localhost:3000/ws")', 'new WebSocket("wss://gw.example.com/abc123/ws")'),
        ('fetch("//127.0.0.1:3000/x")', 'fetch("//gw.example.com/abc123/x")'),
        ('fetch("http:\\/\\/127.0.0.1:3000\\/x")', 'fetch("https:\\/\\/gw.example.com\\/abc123\\/x")'),
    ],
)
def test_path_mode_rewrites_origins(source: str, expected: str) -> None:
    """Absolute URLs naming the upstream or public origin get the public origin and the prefix."""
    assert rewrite_js(source, PATH_MODE).text == expected


def test_origin_in_a_literal_outside_url_position_left_alone() -> None:
    """An upstream origin found in a literal that is not in a URL position stays as it is."""
    source = 'const ORIGIN = "http://127.0.0.1:3000"; log("http://127.0.0.1:3000/x");'
    assert rewrite_js(source, PATH_MODE).text is source


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('fetch("\\/api\\/x")', 'fetch("\\/abc123\\/api\\/x")'),
        ("fetch('/it\\'s')", "fetch('/abc123/it\\'s')"),
        ('fetch("/say-\\"hi\\"")', 'fetch("/abc123/say-\\"hi\\"")'),
        ('fetch("/back\\\\slash")', 'fetch("/abc123/back\\\\slash")'),
        ("fetch(`/tick-\\`-${x}`)", "fetch(`/abc123/tick-\\`-${x}`)"),
        ("fetch('/a\\\"b')", "fetch('/abc123/a\"b')"),
    ],
)
def test_simple_escapes_decoded_and_kept(source: str, expected: str) -> None:
    """Escaped slashes and quotes are decoded for mapping and written back in the same style."""
    assert rewrite_js(source, PATH_MODE).text == expected


@pytest.mark.parametrize(
    "source",
    [
        'fetch("/api\\u002Fx")',
        'fetch("/api\\x2Fx")',
        'fetch("/api\\tx")',
        'fetch("/api\\\nx")',
        "fetch(`/api\\${x}`)",
    ],
)
def test_unsafe_escape_skipped_with_reason(source: str) -> None:
    """A literal in a URL position with an escape we do not map is left alone and reported."""
    result = rewrite_js(source, PATH_MODE)
    assert result.text is source
    assert not result.rewrites
    [skipped] = result.skipped
    assert skipped.where == "js fetch()"
    assert skipped.reason == "string literal has escapes that cannot be mapped safely"
    assert skipped.excerpt.startswith(("fetch", '"', "`"))


def test_skipped_literal_does_not_stop_later_rewrites() -> None:
    """After a skipped literal the scan goes on and rewrites the next one."""
    result = rewrite_js('fetch("/a\\u002Fb"); fetch("/c");', PATH_MODE)
    assert result.text == 'fetch("/a\\u002Fb"); fetch("/abc123/c");'
    assert len(result.skipped) == 1


def test_rewrite_js_switch_off() -> None:
    """With rewrite_js=False the script comes back as it is."""
    source = 'fetch("/api/x")'
    result = rewrite_js(source, replace(PATH_MODE, rewrite_js=False))
    assert result.text is source
    assert not result.rewrites


@pytest.mark.parametrize(
    "source",
    [
        "",
        "const a = 1;",
        'fetch(api + "x")',
        "/* no quotes followed by a slash here */ let x = 'a' / 2;",
    ],
)
def test_script_without_candidates_is_the_same_object(source: str) -> None:
    """A script with nothing URL-like returns at once, as the very same string."""
    result = rewrite_js(source, PATH_MODE)
    assert result.text is source
    assert result.rewrites == ()
    assert result.skipped == ()


def test_timeout_fails_open() -> None:
    """When a regex runs out of time the original script comes back with a Skipped entry."""
    source = 'fetch("/api/x");\n' * 20_000
    config = replace(PATH_MODE, regex_timeout=1e-9)
    result = rewrite_js(source, config)
    assert result.text is source
    assert not result.rewrites
    [skipped] = result.skipped
    assert skipped.where == "js"
    assert "timed out" in skipped.reason


def test_large_script_rewritten_in_full() -> None:
    """A long script with many URL positions is rewritten everywhere within the default timeout."""
    source = 'fetch("/api/x");\nconst s = "/y";\n' * 5_000
    result = rewrite_js(source, PATH_MODE)
    assert result.text == 'fetch("/abc123/api/x");\nconst s = "/y";\n' * 5_000
    assert len(result.rewrites) == 5_000


# Pieces of JavaScript-ish text: URL positions, literals of every kind, and the characters that make
# tokenising hard (quotes, backslashes, slashes, template substitutions).
_FRAGMENTS = [
    "fetch(",
    "import(",
    "import{a}from",
    "import ",
    "export*from",
    "new URL(",
    "importScripts(",
    ".open('GET',",
    "location.href=",
    "location=",
    ".src =",
    "{url:",
    ",href:",
    "axios.get(",
    "$.get(",
    '.setAttribute("src",',
    '"/a"',
    "'/b'",
    "`/c/${",
    "`/d`",
    '"\\/e"',
    '"/f\\u002F"',
    '"http://127.0.0.1:3000/g"',
    "'http://127.0.0.1:3000'",
    '"https://gw.example.com/h"',
    '"//127.0.0.1:3000/i"',
    '"/abc123/j"',
    '"ws://localhost:3000/k"',
    "`http://127.0.0.1:3000${",
    ")",
    "}",
    ";",
    "\n",
    " ",
    "//",
    "/*",
    "*/",
]
_JS_ISH = st.lists(
    st.one_of(st.sampled_from(_FRAGMENTS), st.text(alphabet="\"'`/\\ {}()$,=:x\n", max_size=3)),
    max_size=30,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(source=_JS_ISH, host_mode=st.booleans())
def test_rewriting_twice_equals_once(source: str, host_mode: bool) -> None:
    """For any JavaScript-ish text, a second pass finds nothing more to rewrite."""
    config = HOST_MODE if host_mode else PATH_MODE
    once = rewrite_js(source, config)
    twice = rewrite_js(once.text, config)
    assert twice.text == once.text
    assert not twice.rewrites


@settings(max_examples=300, deadline=None)
@given(source=_JS_ISH)
def test_no_rewrite_means_same_object(source: str) -> None:
    """Whenever nothing was rewritten, the very same string comes back; otherwise only literals grew."""
    result = rewrite_js(source, PATH_MODE)
    if not result.rewrites:
        assert result.text is source
    else:
        assert len(result.text) > len(source) or "127.0.0.1:3000" in source or "localhost:3000" in source


@settings(max_examples=200, deadline=None)
@given(source=st.from_regex(r"\A[^\"'`]*\Z"), config=st.sampled_from([PATH_MODE, HOST_MODE]))
def test_text_without_quotes_is_never_touched(source: str, config: RewriteConfig) -> None:
    """Text with no quote character at all holds no literal, so it comes back as the same object."""
    result = rewrite_js(source, config)
    assert result.text is source
    assert not result.skipped
