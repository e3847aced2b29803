"""The errors the pure core raises, and the root of the oracle's one exception tree.

``models/`` depends on nothing of the service, so the root (:class:`OracleError`) and the errors that pure
computation raises live here; :mod:`oracle.errors` re-exports them and adds the service's own (config,
chain, signer, tools). Catch them through ``oracle.errors`` in the service: they are the same classes.
"""

from __future__ import annotations


class OracleError(Exception):
    """Root of every error the oracle raises on purpose."""


class StorageError(OracleError):
    """The database or the content store failed."""


class IntegrityError(StorageError):
    """Stored bytes do not match the content id they are filed under."""


class NotFound(OracleError):
    """A named thing does not exist."""


class ValidationError(OracleError):
    """Input was refused. ``reason`` is a short machine-readable code recorded with it."""

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason
