"""Reading outside data (STAC catalogs, items, assets) under one :class:`FetchPolicy`.

Hrefs come from documents other people write, so each one is checked before it is read:

- **schemes**: ``https``; ``http`` only with ``allow_http``; ``file`` (or a plain path) only when it
  resolves, symlinks followed, under ``file_root`` and is a regular file (not ``/dev/zero``, a FIFO or a
  directory); every other scheme is refused;
- **addresses**: the host is resolved and *every* address must be public (globally routable, not
  loopback, link-local, private, multicast, reserved or unspecified, also inside IPv4-mapped and 6to4
  IPv6), unless it lies in ``allowed_networks``; the connection then goes to a checked address, so a
  second DNS answer cannot swap in another one; environment proxies are not used;
- **sizes**: a declared ``Content-Length`` over the cap is refused before the body is read; a body is
  counted while it streams and cut off one chunk past the cap;
- **time**: connect and read timeouts per socket operation, and a deadline for the whole fetch (a
  server dripping one byte at a time never trips a read timeout);
- **redirects**: followed by hand, at most ``max_redirects``, each target checked by the same rules.

Every refusal is a :class:`~oracle.errors.ValidationError` whose ``reason`` says which rule:
``scheme_refused``, ``path_refused``, ``not_a_file``, ``address_refused``, ``too_large``, ``timeout``,
``too_many_redirects``; a network or HTTP failure is ``stac_unreachable`` (:class:`HttpStatusError` when
the server answered an error status); a missing local file is :class:`~oracle.errors.NotFound`.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urljoin, urlsplit

import httpcore
import httpx

from oracle.errors import NotFound, ValidationError

if TYPE_CHECKING:
    from oracle.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_REDIRECTS = {301, 302, 303, 307, 308}
UNREACHABLE = "stac_unreachable"


@dataclass(frozen=True)
class FetchPolicy:
    """What may be read and how much. Defaults are the safe ones: https to public addresses only.

    ``allowed_networks`` takes networks or their text (``"10.0.0.0/8"``); sizes are bytes, times seconds.
    """

    allow_http: bool = False
    file_root: Path | None = None
    allowed_networks: Sequence[IPNetwork | str] = ()
    max_asset_bytes: int = 2 * 1024**3
    max_document_bytes: int = 32 * 1024**2
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    deadline_s: float = 900.0
    max_redirects: int = 5

    def __post_init__(self) -> None:
        parsed = tuple(ipaddress.ip_network(n, strict=False) for n in self.allowed_networks)
        object.__setattr__(self, "allowed_networks", parsed)

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        """``allowed_networks``, parsed."""
        return tuple(n for n in self.allowed_networks if not isinstance(n, str))

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        """The policy of the ``ORACLE_STAC_*`` settings."""
        return cls(
            allow_http=settings.stac_allow_http,
            file_root=settings.stac_file_root,
            allowed_networks=tuple(settings.stac_allowed_networks),
            max_asset_bytes=settings.stac_max_asset_bytes,
            max_document_bytes=settings.stac_max_document_bytes,
            connect_timeout_s=settings.stac_connect_timeout_s,
            read_timeout_s=settings.stac_read_timeout_s,
            deadline_s=settings.stac_fetch_deadline_s,
            max_redirects=settings.stac_max_redirects,
        )


class HttpStatusError(ValidationError):
    """The server answered ``status`` (4xx/5xx)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message, reason=UNREACHABLE)
        self.status = status


def fetch(
    href: str,
    policy: FetchPolicy,
    *,
    max_bytes: int,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
) -> bytes:
    """The bytes at ``href`` (a URL or a local path), at most ``max_bytes``; see the module docstring."""
    scheme = urlsplit(href).scheme.lower()
    if scheme in ("http", "https"):
        return _fetch_http(href, policy, max_bytes, method, headers, params, json_body)
    if scheme in ("file", ""):
        return _read_file(href, policy, max_bytes)
    raise ValidationError(f"{_short(href)}: scheme {scheme!r} is not read here", reason="scheme_refused")


# --- file: --------------------------------------------------------------------------------------------------


def _local_path(href: str) -> Path:
    if not href.lower().startswith("file:"):
        return Path(href)
    u = urlsplit(href)
    if u.netloc not in ("", "localhost"):
        raise ValidationError(f"{_short(href)}: a file on another host is not read", reason="path_refused")
    return Path(unquote(u.path))


def _read_file(href: str, policy: FetchPolicy, max_bytes: int) -> bytes:
    if policy.file_root is None:
        raise ValidationError(
            f"{_short(href)}: local files are not read (ORACLE_STAC_FILE_ROOT names a directory that may be)",
            reason="path_refused",
        )
    real = _local_path(href).resolve()
    root = policy.file_root.resolve()
    if not real.is_relative_to(root):
        raise ValidationError(
            f"{_short(href)}: resolves to {real}, outside ORACLE_STAC_FILE_ROOT ({root})",
            reason="path_refused",
        )
    try:
        # Non-blocking: opening a FIFO would otherwise wait for a writer. No symlink as the last step: the
        # path was resolved above, so one now means it was swapped in since.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise NotFound(f"{_short(href)}: no such file") from None
    except OSError as e:
        raise ValidationError(f"{_short(href)}: {e.strerror}", reason=UNREACHABLE) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValidationError(f"{_short(href)}: not a regular file", reason="not_a_file")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _too_large(href, max_bytes)
    return data


# --- http(s): -----------------------------------------------------------------------------------------------


def address_refusal(address: IPAddress, allowed: Iterable[IPNetwork]) -> str | None:
    """Why ``address`` may not be connected to (``None``: it may). ``allowed`` networks always may."""
    candidates: list[IPAddress] = []
    if isinstance(address, ipaddress.IPv6Address):  # the IPv4 address inside, named first in the reason
        candidates += [inner for inner in (address.ipv4_mapped, address.sixtofour) if inner is not None]
    candidates.append(address)
    allowed = tuple(allowed)
    if any(a in net for a in candidates for net in allowed if a.version == net.version):
        return None
    for a in candidates:
        for name, hit in (
            ("loopback", a.is_loopback),
            ("link-local", a.is_link_local),
            ("private", a.is_private),
            ("multicast", a.is_multicast),
            ("unspecified", a.is_unspecified),
            ("reserved", a.is_reserved),
            ("not globally routable", not a.is_global),
        ):
            if hit:
                return f"{a} is {name}"
    return None


def _checked_addresses(host: str, port: int, policy: FetchPolicy) -> list[str]:
    """Every address ``host`` resolves to, when all of them are allowed."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        found = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise ValidationError(f"{host}: cannot resolve ({e})", reason=UNREACHABLE) from None
        found = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    for address in found:
        why = address_refusal(address, policy.networks)
        if why is not None:
            raise _address_refused(host, why)
    return [str(a) for a in found]


class _CheckedBackend(httpcore.SyncBackend):
    """Connects only to addresses the policy allows, checked at connect time (also after redirects)."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        last: Exception | None = None
        for address in _checked_addresses(host, port, self.policy):
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                last = e
        assert last is not None
        raise last


class _CheckedTransport(httpx.HTTPTransport):
    def __init__(self, policy: FetchPolicy) -> None:
        super().__init__(trust_env=False)
        # httpx offers no parameter for the network backend: this is the one place we reach into it.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_CheckedBackend(policy),
        )


def _check_url(url: str, policy: FetchPolicy) -> None:
    u = urlsplit(url)
    scheme = u.scheme.lower()
    if scheme == "http" and not policy.allow_http:
        raise ValidationError(
            f"{_short(url)}: plain http is refused (https only; ORACLE_STAC_ALLOW_HTTP allows it)",
            reason="scheme_refused",
        )
    if scheme not in ("http", "https"):
        raise ValidationError(f"{_short(url)}: scheme {scheme!r} is not followed", reason="scheme_refused")
    if not u.hostname:
        raise ValidationError(f"{_short(url)}: no host", reason=UNREACHABLE)
    try:
        literal = ipaddress.ip_address(u.hostname)
    except ValueError:
        return  # a name: resolved and checked when connecting
    why = address_refusal(literal, policy.networks)
    if why is not None:
        raise _address_refused(_short(url), why)
    # A literal like 127.1 is not parsed by ipaddress but is by the resolver: it is checked on connect.


def _fetch_http(
    url: str,
    policy: FetchPolicy,
    max_bytes: int,
    method: str,
    headers: Mapping[str, str] | None,
    params: Mapping[str, Any] | None,
    json_body: Any,
) -> bytes:
    deadline = time.monotonic() + policy.deadline_s
    timeout = httpx.Timeout(
        connect=policy.connect_timeout_s,
        read=policy.read_timeout_s,
        write=policy.read_timeout_s,
        pool=policy.connect_timeout_s,
    )
    origin = _origin(url)
    send_headers = dict(headers or {})
    transport = _CheckedTransport(policy)
    # No environment proxies: through one, the checked address would be the proxy's, not the target's.
    with httpx.Client(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    ) as client:
        for _ in range(policy.max_redirects + 1):
            _check_url(url, policy)
            request = client.build_request(method, url, headers=send_headers, params=params, json=json_body)
            try:
                response = client.send(request, stream=True)
                try:
                    location = response.headers.get("location")
                    if response.status_code not in _REDIRECTS or not location:
                        return _body(response, url, max_bytes, deadline)
                finally:
                    response.close()
            except httpx.TimeoutException:
                raise ValidationError(f"{_short(url)}: timed out", reason="timeout") from None
            except httpx.HTTPError as e:
                raise ValidationError(f"{_short(url)}: {type(e).__name__}", reason=UNREACHABLE) from None
            url, params = urljoin(str(response.url), location), None  # the location is a whole URL
            if response.status_code == 303 or (response.status_code in (301, 302) and method != "GET"):
                method, json_body = "GET", None
            if _origin(url) != origin:  # credentials stay with the host they were meant for
                send_headers = {k: v for k, v in send_headers.items() if k.lower() != "authorization"}
    raise ValidationError(
        f"{_short(url)}: more than {policy.max_redirects} redirects", reason="too_many_redirects"
    )


def _body(response: httpx.Response, url: str, max_bytes: int, deadline: float) -> bytes:
    if response.status_code >= 400:
        raise HttpStatusError(f"{_short(url)}: HTTP {response.status_code}", status=response.status_code)
    return _read_capped(response, url, max_bytes, deadline)


def _read_capped(r: httpx.Response, url: str, max_bytes: int, deadline: float) -> bytes:
    declared = r.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(url, max_bytes, declared=int(declared))
    body = bytearray()
    # Chunks as they arrive (a chunk size would buffer, and a slow drip would never reach the check).
    for chunk in r.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(url, max_bytes)
        if time.monotonic() > deadline:
            raise ValidationError(f"{_short(url)}: not finished within the fetch deadline", reason="timeout")
    return bytes(body)


def _address_refused(where: str, why: str) -> ValidationError:
    return ValidationError(
        f"{where}: {why}; such addresses are refused unless ORACLE_STAC_ALLOWED_NETWORKS allows them",
        reason="address_refused",
    )


def _origin(url: str) -> tuple[str, str, int | None]:
    u = urlsplit(url)
    return u.scheme.lower(), (u.hostname or "").lower(), u.port


def _too_large(href: str, max_bytes: int, *, declared: int | None = None) -> ValidationError:
    size = f"declares {declared} bytes" if declared is not None else "is larger"
    return ValidationError(
        f"{_short(href)}: {size} than the cap of {max_bytes} bytes "
        "(ORACLE_STAC_MAX_ASSET_BYTES / ORACLE_STAC_MAX_DOCUMENT_BYTES)",
        reason="too_large",
    )


def _short(href: str) -> str:
    return href if len(href) <= 300 else href[:300] + "..."
