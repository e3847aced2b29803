"""The oracle's one exception tree (its root and the pure core's errors are defined in :mod:`models.errors`).

Third-party errors (SQLAlchemy, web3, paho, rasterio, httpx) are translated into these where they
enter the service, so callers handle one family and every message says what a person must fix::

    OracleError
    ├── ConfigError            a setting is missing, malformed or unsafe for the environment
    ├── StorageError           the database or the content store failed
    │   └── IntegrityError     stored bytes do not match their content id (corruption, tampering)
    ├── NotFound               a named thing (blob, region, shipment, attestation) does not exist
    ├── ValidationError        input was refused; ``reason`` is the short code recorded with it
    ├── ChainError             the chain RPC failed or a transaction reverted
    │   └── RevertError        a transaction reverted; ``reason`` is the decoded revert reason
    ├── SignerError            the signer refused to sign or could not be reached
    └── ToolError              an external program (anvil, mosquitto, solc) is missing or failed
"""

from __future__ import annotations

from models.errors import IntegrityError, NotFound, OracleError, StorageError, ValidationError

__all__ = [
    "ChainError",
    "ConfigError",
    "IntegrityError",
    "NotFound",
    "OracleError",
    "RevertError",
    "SignerError",
    "StorageError",
    "ToolError",
    "ValidationError",
]


class ConfigError(OracleError):
    """A setting is missing, malformed or unsafe for the environment it runs in."""


class ChainError(OracleError):
    """The chain RPC failed or answered something unusable."""


class RevertError(ChainError):
    """A transaction or call reverted. ``reason`` is the decoded revert reason (or custom error name)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class SignerError(OracleError):
    """The signer refused to sign or could not be reached."""


class ToolError(OracleError):
    """An external program (anvil, mosquitto, node/solc) is missing or failed."""
