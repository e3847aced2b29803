"""Verifiable decisions: replay a decision from content-addressed inputs and compare it with the attested
report (``oracle verify``), and export / check self-contained offline bundles (``oracle export``)."""

from oracle.verify.bundle import export_bundle, read_bundle, verify_bundle
from oracle.verify.chain import Located, locate, read_attested, router_for
from oracle.verify.replay import (
    MATCH,
    MISMATCH,
    STEP_REPLAYERS,
    AttestedReport,
    Check,
    ContentSource,
    Verification,
    register_step,
    replay,
)
from oracle.verify.sources import DirectorySource, LayeredSource, StoreSource

__all__ = [
    "MATCH",
    "MISMATCH",
    "STEP_REPLAYERS",
    "AttestedReport",
    "Check",
    "ContentSource",
    "DirectorySource",
    "LayeredSource",
    "Located",
    "StoreSource",
    "Verification",
    "export_bundle",
    "locate",
    "read_attested",
    "read_bundle",
    "register_step",
    "replay",
    "router_for",
    "verify_bundle",
]
