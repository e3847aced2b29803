"""pystac and pystac-client I/O that reads every catalog, child, item and search page through
:func:`ingest.fetch.fetch` under one :class:`~ingest.fetch.FetchPolicy`.

Both libraries read links with their own I/O object: pystac-client's :class:`StacApiIO` (requests, any
URL it is given, and ``open()`` for anything else) and pystac's default I/O (urllib and ``open()``). A
link in a document someone else wrote could otherwise name ``file:///dev/zero`` or an internal address.
Imported only where STAC is read (pystac-client is not needed by the rest of the service).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pystac
from pystac.stac_io import DefaultStacIO
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO

from ingest.fetch import FetchPolicy, HttpStatusError, fetch

_BODY_METHODS = ("POST", "PUT", "PATCH")


class PolicyStacIO(DefaultStacIO):
    """pystac's I/O for walking a static catalog, every read through :func:`ingest.fetch.fetch` (documents
    capped at ``policy.max_document_bytes``). A refusal raises :class:`~oracle.errors.ValidationError`."""

    def __init__(self, policy: FetchPolicy) -> None:
        super().__init__()
        self.policy = policy

    def read_text_from_href(self, href: str) -> str:
        return _text(fetch(href, self.policy, max_bytes=self.policy.max_document_bytes), href)


class PolicyStacApiIO(StacApiIO):
    """pystac-client's I/O (STAC APIs, catalogs over HTTP), every read through :func:`ingest.fetch.fetch`
    (documents capped at ``policy.max_document_bytes``). A policy refusal raises
    :class:`~oracle.errors.ValidationError`; an HTTP error status raises pystac-client's ``APIError`` (with
    ``status_code``), as the library expects."""

    def __init__(self, policy: FetchPolicy) -> None:
        super().__init__(max_retries=None)
        self.policy = policy

    def read_text(self, source: pystac.link.HREF, *args: Any, **kwargs: Any) -> str:
        if isinstance(source, pystac.Link):
            return super().read_text(source, *args, **kwargs)  # method, headers and body of the link
        href = str(source)
        if urlsplit(href).scheme.lower() in ("http", "https"):
            return self.request(href, *args, **kwargs)
        return _text(fetch(href, self.policy, max_bytes=self.policy.max_document_bytes), href)

    def request(
        self,
        href: str,
        method: str | None = None,
        headers: dict[str, str] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> str:
        verb = (method or "GET").upper()
        body = parameters if verb in _BODY_METHODS else None
        query = None if verb in _BODY_METHODS else parameters
        try:
            data = fetch(
                href,
                self.policy,
                max_bytes=self.policy.max_document_bytes,
                method=verb,
                headers={**{k: str(v) for k, v in self.session.headers.items()}, **(headers or {})},
                params=query or None,
                json_body=body,
            )
        except HttpStatusError as e:
            error = APIError(str(e))
            error.status_code = e.status
            raise error from None
        return _text(data, href)


def _text(data: bytes, href: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError(f"{href}: not UTF-8 text ({e})") from None
