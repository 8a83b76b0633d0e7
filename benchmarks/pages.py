"""The benchmark inputs: a generated documentation page, Swagger UI's assets, a bundle with URL literals.

Generation is deterministic (a seeded `random.Random`, no clock, no network), so every run and every
machine measures the same bytes. Reading the Swagger UI assets is the only I/O: they come from the
installed `swagger_ui_bundle` package.
"""

from __future__ import annotations

import random
from importlib import resources

__all__ = [
    "SWAGGER_UI_VERSION",
    "docs_page",
    "inject_css_urls",
    "inject_url_literals",
    "swagger_ui_asset",
]

SWAGGER_UI_VERSION = "4.15.5"  # the assets that swagger-ui-bundle 1.1 vendors

_VOCABULARY = (
    "request response header body stream proxy tunnel prefix route handler config token session cookie "
    "cache client server socket frame message chunk retry backoff timeout schema field model query path "
    "origin host port deploy build bundle asset image style script module import export worker event "
    "queue table index search filter sort page limit offset cursor user account project team role policy"
)
_WORDS = _VOCABULARY.split()
_SECTIONS = ("guide", "reference", "tutorial", "api", "cookbook", "concepts", "deploy", "blog")
_EXTERNAL = (
    "https://github.com/example/project",
    "https://developer.mozilla.org/en-US/docs/Web/HTTP",
    "https://www.rfc-editor.org/rfc/rfc9110",
    "https://pypi.org/project/example/",
    "https://cdn.example.net/lib.js",
)


class _Writer:
    """Builds one page from seeded choices."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.parts: list[str] = []
        self.size = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)

    def words(self, low: int, high: int) -> str:
        return " ".join(self.rng.choices(_WORDS, k=self.rng.randint(low, high)))

    def slug(self) -> str:
        return "-".join(self.rng.choices(_WORDS, k=2))

    def doc_path(self) -> str:
        return f"/docs/{self.rng.choice(_SECTIONS)}/{self.slug()}"

    def link(self) -> str:
        """An inline link: mostly absolute paths, some external, relative or in-page ones."""
        kind = self.rng.random()
        if kind < 0.70:
            href = self.doc_path() + self.rng.choice(("", "", "#usage", "?v=2"))
        elif kind < 0.85:
            href = self.rng.choice(_EXTERNAL)
        elif kind < 0.95:
            href = f"../{self.slug()}.html"
        else:
            href = f"#{self.slug()}"
        return f'<a href="{href}">{self.words(1, 3)}</a>'

    def image(self, n: int) -> str:
        name = f"/static/img/{self.slug()}-{n}"
        srcset = ", ".join(f"{name}@{w}w.webp {w}w" for w in (320, 640, 1280))
        return (
            f'<img src="{name}.png" srcset="{srcset}" sizes="(max-width: 600px) 100vw, 33vw" '
            f'alt="{self.words(2, 4)}" loading="lazy" width="640" height="360">'
        )


def docs_page(min_bytes: int = 1_200_000, seed: int = 7) -> str:
    """A documentation-site page of at least `min_bytes` characters, dense with absolute links.

    It has what such pages carry: stylesheets, preloads and icons in `<head>`, a `<style>` and inline
    scripts that `fetch('/api/...')`, a navigation bar and a long sidebar, then sections of prose with
    inline links (mostly absolute paths, some external, relative or in-page), cards with `srcset` images
    and `style="background-image: url(...)"`, code samples, forms, and a footer.

    Args:
        min_bytes: The page grows by whole sections until it is at least this long (ASCII, so
            characters and UTF-8 bytes agree).
        seed: The seed of the choices; the same seed always gives the same page.

    Returns:
        The page.
    """
    w = _Writer(seed)
    w.add(
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>Example docs: proxy configuration</title>\n"
        '<link rel="stylesheet" href="/static/css/theme.css?v=3">\n'
        '<link rel="stylesheet" href="/static/css/pygments.css">\n'
        "<link rel=preload as=font href=/static/fonts/inter-var.woff2 crossorigin>\n"
        '<link rel="icon" type="image/png" href="/static/favicon-32.png" sizes="32x32">\n'
        '<link rel="manifest" href="/site.webmanifest">\n'
        '<link rel="canonical" href="https://docs.example.com/docs/guide/proxy-config">\n'
        '<meta property="og:image" content="https://docs.example.com/static/img/og.png">\n'
        "<style>\n"
        "@font-face { font-family: Inter; src: url(/static/fonts/inter-var.woff2) format('woff2'); }\n"
        ".hero { background: #123 url('/static/img/hero.jpg') center / cover no-repeat; }\n"
        '.icon-search { background-image: url("/static/img/search.svg"); }\n'
        ".logo { background-image: image-set('/static/img/logo.png' 1x, '/static/img/logo@2x.png' 2x); }\n"
        "</style>\n"
        '<script src="/static/js/theme.js" defer></script>\n'
        '<script type="module" src="/static/js/search.mjs"></script>\n'
        "<script>\nwindow.DOCS = { version: '2.4', searchIndex: '/static/search-index.json' };\n"
        "fetch('/api/v1/session', { credentials: 'same-origin' }).then((r) => r.json())\n"
        "  .then((s) => { document.body.dataset.user = s.name; });\n</script>\n"
        "</head>\n<body>\n"
    )
    w.add('<header class="hero"><a class="logo" href="/"><img src="/static/img/logo.svg" alt="Logo"></a>')
    w.add("\n<nav>")
    for section in _SECTIONS:
        w.add(f'<a href="/docs/{section}/">{section.title()}</a>')
    w.add(f'<a href="{_EXTERNAL[0]}">GitHub</a>')
    w.add(
        '<form action="/search" method="get" role="search"><input name="q" placeholder="Search">'
        '<button formaction="/search/advanced">Go</button></form></nav></header>\n'
    )
    w.add('<aside class="sidebar"><ul>\n')
    for _ in range(400):
        w.add(f'<li><a href="{w.doc_path()}">{w.words(1, 3)}</a></li>\n')
    w.add("</ul></aside>\n<main>\n")
    n = 0
    while w.size < min_bytes:
        n += 1
        _section(w, n)
    w.add("</main>\n<footer><p>")
    for _ in range(30):
        w.add(w.link() + " ")
    w.add(
        "</p></footer>\n"
        "<script>\ndocument.querySelectorAll('.card').forEach((card) => {\n"
        "  card.addEventListener('click', () => fetch('/api/v1/analytics', { method: 'POST' }));\n});\n"
        "const xhr = new XMLHttpRequest();\nxhr.open('GET', '/api/v1/notifications');\nxhr.send();\n"
        "</script>\n</body>\n</html>\n"
    )
    return "".join(w.parts)


def _section(w: _Writer, n: int) -> None:
    """One section of prose, cards and a code sample."""
    anchor = f"{w.slug()}-{n}"
    w.add(f'<section id="{anchor}">\n<h2><a class="anchor" href="#{anchor}">#</a> {w.words(2, 5)}</h2>\n')
    for _ in range(w.rng.randint(2, 4)):
        sentences = [f"{w.words(6, 14)} {w.link()} {w.words(3, 8)}." for _ in range(w.rng.randint(2, 4))]
        w.add(f"<p>{' '.join(sentences)}</p>\n")
    w.add('<div class="cards">\n')
    for i in range(w.rng.randint(2, 4)):
        path = w.doc_path()
        w.add(
            f'<article class="card" style="background-image: url(\'/static/img/cards/{w.slug()}-{i}.jpg\')">'
            f'<a href="{path}">{w.image(i)}<h3>{w.words(2, 4)}</h3></a>'
            f"<p>{w.words(8, 20)}</p>"
            f'<a class="more" href="{path}#details">Read more</a></article>\n'
        )
    w.add("</div>\n")
    if n % 3 == 0:
        w.add(
            f'<pre><code class="language-python">response = client.get("/api/v1/{w.slug()}")\n'
            f"assert response.status_code == 200  # {w.words(3, 6)}</code></pre>\n"
        )
    if n % 10 == 0:
        w.add(
            f'<video controls poster="/static/video/{w.slug()}.jpg"'
            f' src="/static/video/{w.slug()}.mp4"></video>\n'
            '<form action="/api/v1/feedback" method="post">'
            f'<input type="hidden" name="page" value="{anchor}">'
            "<button>Send</button></form>\n"
        )
    w.add("</section>\n")


def swagger_ui_asset(name: str) -> str:
    """The text of one Swagger UI asset (`swagger-ui.css`, `swagger-ui.js`, ...) from swagger-ui-bundle.

    Raises:
        ModuleNotFoundError: swagger-ui-bundle is not installed (it is a `dev` dependency).
    """
    folder = resources.files("swagger_ui_bundle") / f"vendor/swagger-ui-{SWAGGER_UI_VERSION}"
    return (folder / name).read_text(encoding="utf-8")


_URL_STATEMENTS = (
    'fetch("/api/v1/{slug}").then(function(r){{return r.json()}});',
    'import("/static/js/chunks/{slug}.{n}.js");',
    'new URL("/api/v1/{slug}?page={n}", location.href);',
    'x.open("GET", "/api/v1/{slug}/{n}");',
    'o({{url: "/api/v1/{slug}", method: "POST"}});',
    'img.src = "/static/img/{slug}-{n}.png";',
    'new EventSource("/events/{slug}");',
    # Strings that are no URL position: the rewriter must look at them and leave them alone.
    'console.log("/{slug} is not a URL position", {n});',
)


def inject_url_literals(script: str, count: int = 300, seed: int = 7) -> str:
    """`script` followed by `count` statements that put absolute-path literals in URL positions.

    The statements (a `fetch`, a dynamic `import`, `new URL`, `xhr.open`, `{url: ...}`, `img.src = ...`,
    `new EventSource`, and a decoy that is no URL position) are wrapped in one function appended after the
    bundle, so the result is still valid JavaScript when `script` is.

    Args:
        script: The bundle.
        count: How many statements to add.
        seed: The seed of the choices; the same seed always gives the same result.

    Returns:
        The bundle with the statements appended.
    """
    rng = random.Random(seed)
    statements = [
        rng.choice(_URL_STATEMENTS).format(slug="-".join(rng.choices(_WORDS, k=2)), n=n) for n in range(count)
    ]
    return script + "\n;(function (x, o, img) {\n" + "\n".join(statements) + "\n});\n"


_CSS_RULES = (
    ".{slug}-{n} {{ background: url(/static/img/{slug}-{n}.png) no-repeat; }}",
    ".{slug}-{n} {{ background-image: url('/static/img/{slug}-{n}.svg'); }}",
    '@font-face {{ font-family: f{n}; src: url("/static/fonts/{slug}.woff2") format("woff2"); }}',
    ".{slug}-{n} {{ background-image: image-set('/static/{slug}.png' 1x, '/static/{slug}@2x.png' 2x); }}",
    # URLs that stay as they are: another host, and a relative path.
    ".{slug}-{n} {{ background: url(https://cdn.example.net/{slug}.png); }}",
    ".{slug}-{n} {{ background: url(../img/{slug}-{n}.png); }}",
)


def inject_css_urls(stylesheet: str, count: int = 300, seed: int = 7) -> str:
    """`stylesheet` followed by `count` rules with `url()` and `image-set()` URLs, mostly absolute paths.

    Swagger UI's stylesheet only holds `data:` URLs, which stay as they are; these rules give the
    rewriter real work. A sixth of them name another host and a sixth a relative path, which stay too.

    Args:
        stylesheet: The stylesheet.
        count: How many rules to add.
        seed: The seed of the choices; the same seed always gives the same result.

    Returns:
        The stylesheet with the rules appended.
    """
    rng = random.Random(seed)
    rules = [
        rng.choice(_CSS_RULES).format(slug="-".join(rng.choices(_WORDS, k=2)), n=n) for n in range(count)
    ]
    return stylesheet + "\n" + "\n".join(rules) + "\n"
