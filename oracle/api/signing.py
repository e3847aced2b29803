"""Where the API gets signatures for manual attestations: the signer(s) and chain the service runs with.

``oracle run`` puts ``ctx.extras["signer"] = (url, token)`` and ``ctx.extras["deployment"]`` in the
context. ``ctx.extras["signers"]`` (a sequence of :class:`~oracle.signer.client.Signer`) and
``ctx.extras["signer_threshold"]`` (k of a k-of-n set, default 1) override that for multi-signer setups.
"""

from __future__ import annotations

from oracle.api.problems import ApiError
from oracle.context import Context
from oracle.errors import ConfigError
from oracle.posting import PostingSetup, posting_setup


def signing_setup(ctx: Context) -> PostingSetup:
    """The configured signers and router. :raises ApiError: 503 ``signer_not_configured``."""
    try:
        return posting_setup(ctx)
    except ConfigError as e:
        raise ApiError(
            503,
            f"signer not configured: {e}; run the API under 'oracle run' or configure ORACLE_SIGNER_URL",
            reason="signer_not_configured",
        ) from None
