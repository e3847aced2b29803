"""Who signs and where reports go, as the running service configured it — one lookup for the API, the
scheduler, the CLI and the demo.

``oracle run`` puts ``ctx.extras["signer"] = (url, token)`` (the signer service) and
``ctx.extras["deployment"]`` in the context. ``ctx.extras["signers"]`` (a sequence of
:class:`~oracle.signer.client.Signer`) and ``ctx.extras["signer_threshold"]`` (k of a k-of-n set,
default 1) override that for multi-signer setups. Outside the service (a CLI process), the signer is the
configured ``ORACLE_SIGNER_URL`` or the local one `oracle run` started, and the deployment is the record
in the data dir.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from oracle.context import Context
from oracle.errors import ConfigError, NotFound
from oracle.signer.client import HttpSigner, Signer

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from oracle.chain.outbox import OutboxPoster

_lock = threading.Lock()
_CLIENT_KEY = "posting_http_signer"


@dataclass(frozen=True)
class PostingSetup:
    signers: Sequence[Signer]
    threshold: int
    chain_id: int
    router: str
    signer_urls: tuple[str, ...]


def posting_setup(ctx: Context) -> PostingSetup:
    """The signers, threshold and router to post with; :raises ConfigError: naming what is missing."""
    from oracle.chain.deploy import Deployment

    deployment = ctx.extras.get("deployment")
    if not isinstance(deployment, Deployment) and ctx.settings.deployment_file.exists():
        deployment = Deployment.load(ctx.settings.deployment_file)
    if not isinstance(deployment, Deployment):
        raise ConfigError("no contract deployment: run `oracle chain up` or give a deployment record")
    try:
        router = deployment.address("OracleRouter")
    except NotFound:
        raise ConfigError("the deployment has no OracleRouter") from None
    threshold = ctx.extras.get("signer_threshold", 1)
    if not isinstance(threshold, int) or threshold < 1:
        raise ConfigError("signer_threshold must be a positive integer")
    given = ctx.extras.get("signers")
    if isinstance(given, list | tuple) and given and all(isinstance(s, Signer) for s in given):
        urls = tuple(str(getattr(s, "url", type(s).__name__)) for s in given)
        return PostingSetup(list(given), threshold, deployment.chain_id, router, urls)
    url, token = _signer_endpoint(ctx)
    with _lock:
        client = ctx.extras.get(_CLIENT_KEY)
        if not isinstance(client, HttpSigner) or client.url != url.rstrip("/"):
            client = HttpSigner(url, token)
            ctx.extras[_CLIENT_KEY] = client
    return PostingSetup([client], threshold, deployment.chain_id, router, (client.url,))


def _signer_endpoint(ctx: Context) -> tuple[str, str]:
    configured = ctx.extras.get("signer")
    if isinstance(configured, tuple) and len(configured) == 2 and all(isinstance(v, str) for v in configured):
        return configured[0], configured[1]
    settings = ctx.settings
    if settings.signer_url:
        if settings.signer_token is None:
            raise ConfigError("ORACLE_SIGNER_TOKEN: required with ORACLE_SIGNER_URL")
        return settings.signer_url, settings.signer_token.get_secret_value()
    d = settings.data_dir / "signer"
    if (d / "url").exists() and (d / "token").exists():
        return (d / "url").read_text().strip(), (d / "token").read_text().strip()
    raise ConfigError(
        "no signer is running: start `oracle run` (or `oracle signer serve`) or set ORACLE_SIGNER_URL"
    )


def make_poster(ctx: Context, transmitter: LocalAccount) -> OutboxPoster:
    """The outbox poster that sends as ``transmitter`` to the context's chain."""
    from oracle.chain.client import connect
    from oracle.chain.outbox import OutboxPoster

    return OutboxPoster(
        ctx.sessions,
        connect(ctx.chain_rpc_url),
        transmitter,
        confirmations=ctx.settings.chain_confirmations,
    )
