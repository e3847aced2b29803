"""The oracle signer: the one process that holds an oracle signing key (see :mod:`oracle.signer.cli`).

Other processes use :class:`Signer` implementations from :mod:`oracle.signer.client`.
"""

from oracle.signer.client import (
    HttpSigner,
    LocalSigner,
    SignedReport,
    Signer,
    SignerUnavailable,
    SigningRefused,
    collect_signatures,
    recover_signer,
)

__all__ = [
    "HttpSigner",
    "LocalSigner",
    "SignedReport",
    "Signer",
    "SignerUnavailable",
    "SigningRefused",
    "collect_signatures",
    "recover_signer",
]
