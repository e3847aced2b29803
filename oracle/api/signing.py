"""Where the API gets signatures for manual attestations: the signer(s) and chain the service runs with.

``oracle run`` puts ``ctx.extras["signer"] = (url, token)`` and ``ctx.extras["deployment"]`` in the
context. ``ctx.extras["signers"]`` (a sequence of :class:`~oracle.signer.client.Signer`) and
``ctx.extras["signer_threshold"]`` (k of a k-of-n set, default 1) override that for multi-signer setups.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from oracle.api.problems import ApiError
from oracle.context import Context
from oracle.errors import NotFound
from oracle.signer.client import HttpSigner, Signer

_lock = threading.Lock()
_CLIENT_KEY = "api_http_signer"


@dataclass(frozen=True)
class SigningSetup:
    signers: Sequence[Signer]
    threshold: int
    chain_id: int
    router: str
    signer_urls: tuple[str, ...]


def _not_configured(what: str) -> ApiError:
    return ApiError(
        503,
        f"signer not configured: {what}; run the API under 'oracle run' or configure ORACLE_SIGNER_URL",
        reason="signer_not_configured",
    )


def signing_setup(ctx: Context) -> SigningSetup:
    """The configured signers and router. :raises ApiError: 503 ``signer_not_configured``."""
    from oracle.chain.deploy import Deployment

    deployment = ctx.extras.get("deployment")
    if not isinstance(deployment, Deployment):
        raise _not_configured("no contract deployment is loaded")
    try:
        router = deployment.address("OracleRouter")
    except NotFound:
        raise _not_configured("the deployment has no OracleRouter") from None
    threshold = ctx.extras.get("signer_threshold", 1)
    if not isinstance(threshold, int) or threshold < 1:
        raise _not_configured("signer_threshold must be a positive integer")
    given = ctx.extras.get("signers")
    if isinstance(given, list | tuple) and given and all(isinstance(s, Signer) for s in given):
        urls = tuple(str(getattr(s, "url", type(s).__name__)) for s in given)
        return SigningSetup(list(given), threshold, deployment.chain_id, router, urls)
    configured = ctx.extras.get("signer")
    if not (
        isinstance(configured, tuple) and len(configured) == 2 and all(isinstance(v, str) for v in configured)
    ):
        raise _not_configured("no signer URL and token")
    url, token = configured
    with _lock:
        client = ctx.extras.get(_CLIENT_KEY)
        if not isinstance(client, HttpSigner) or client.url != url.rstrip("/"):
            client = HttpSigner(url, token)
            ctx.extras[_CLIENT_KEY] = client
    return SigningSetup([client], threshold, deployment.chain_id, router, (client.url,))
