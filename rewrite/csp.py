"""Let an injected inline script run under a page's Content-Security-Policy, weakening nothing else. Pure.

A hash source admits exactly one script. It goes where the browser looks for inline `<script>` elements:
`script-src-elem`, else `script-src`, else `default-src` (CSP Level 3, section 6.1.1 and the "effective
directive" fallback list). A directive that allows `'unsafe-inline'` without any hash or nonce is left
alone: it already admits the script, and adding a hash would switch `'unsafe-inline'` off for the rest of
the page's inline scripts (CSP Level 2, section 4.2.2).
"""

from __future__ import annotations

__all__ = ["allow_script_hash"]

_ELEMENT_DIRECTIVES = ("script-src-elem", "script-src")


def allow_script_hash(policy: str, script_hash: str) -> str | None:
    """Return `policy` with `script_hash` admitted for inline scripts, or None when no change is needed.

    Args:
        policy: One Content-Security-Policy header value (a page may send several; each is enforced).
        script_hash: A hash source without quotes, "sha256-...".
    """
    directives = [d.strip() for d in policy.split(";")]
    names = [d.split(None, 1)[0].lower() if d else "" for d in directives]
    source = f"'{script_hash}'"
    targets = [i for i, name in enumerate(names) if name in _ELEMENT_DIRECTIVES]
    if not targets:
        if "default-src" not in names:
            return None  # no directive governs scripts: everything is allowed
        # Spell out script-src as a copy of default-src, so only scripts gain the hash.
        default = directives[names.index("default-src")]
        directives.append("script-src" + default[len("default-src") :])
        names.append("script-src")
        targets = [len(directives) - 1]
    changed = False
    for index in targets:
        name, _, sources_text = directives[index].partition(" ")
        sources = sources_text.split()
        lowered = [s.lower() for s in sources]
        if source in sources:
            continue
        if "'unsafe-inline'" in lowered and not any(_is_hash_or_nonce(s) for s in lowered):
            continue
        if lowered == ["'none'"]:
            sources = []
        directives[index] = " ".join([name, *sources, source])
        changed = True
    if not changed:
        return None
    return "; ".join(d for d in directives if d)


def _is_hash_or_nonce(source: str) -> bool:
    return source.startswith(("'nonce-", "'sha256-", "'sha384-", "'sha512-"))
