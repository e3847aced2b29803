"""Where the external adapter may send an asynchronous result: only under a configured node base URL.

The adapter PATCHes a late result to the request's ``responseURL``. Anyone who can reach ``POST /adapter``
names that URL, so without this check the oracle would send requests wherever it is told, internal
addresses included. A ``responseURL`` is allowed when, for one base URL in ``ORACLE_CHAINLINK_NODE_URLS``:

- scheme, host (case-insensitive) and port (80/443 when absent) are the same;
- its path lies under the base's path, segment by segment (``/v2/resumed`` is not under ``/v2/resume``);
- it has no user info, no ``.``/``..`` segment (also percent-encoded), no encoded ``/`` or ``\\``, and no
  whitespace or control characters.

The base URLs are the operator's; the check does not resolve host names (the operator named them).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import SplitResult, unquote, urlsplit

SETTING = "ORACLE_CHAINLINK_NODE_URLS"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def response_url_refusal(url: str, bases: Sequence[str]) -> str | None:
    """``None`` when the adapter may PATCH ``url``; otherwise why not, as a sentence for the caller."""
    if not bases:
        return (
            f"asynchronous responses are off: {SETTING} lists no Chainlink node base URL; "
            "send the request without responseURL or ask the operator to configure the node"
        )
    shown = url if len(url) <= 200 else url[:200] + "..."
    target = _parts(url)
    if target is None:
        return f"responseURL {shown!r} is not a plain http(s) URL without user info ({SETTING})"
    for base in bases:
        allowed = _parts(base)
        if allowed is not None and allowed[:3] == target[:3] and _under(target[3], allowed[3]):
            return None
    return f"responseURL {shown!r} is not under a Chainlink node base URL in {SETTING}"


def _parts(url: str) -> tuple[str, str, int, list[str]] | None:
    """(scheme, host, port, path segments) of a URL that passes the shape rules, else None."""
    if any(ch <= " " or ch == "\\" or ch == "\x7f" for ch in url):
        return None
    try:
        u: SplitResult = urlsplit(url)
        port = u.port
    except ValueError:
        return None
    scheme = u.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not u.hostname or u.username is not None or u.password is not None:
        return None
    segments = [unquote(s) for s in u.path.split("/")[1:]]
    if any(s in (".", "..") or "/" in s or "\\" in s for s in segments):
        return None
    while segments and segments[-1] == "":
        segments.pop()
    return scheme, u.hostname.lower(), port if port is not None else _DEFAULT_PORTS[scheme], segments


def _under(path: list[str], base: list[str]) -> bool:
    return path[: len(base)] == base
