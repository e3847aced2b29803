"""Self-contained verification bundles: everything needed to re-check one attested decision offline.

Layout of a bundle directory::

    bundle.json        format, the report as attested (+ chain id, router, tx hash, block, EIP-712
                       digest), the manifest CID, the model CID, the raw input CIDs and a Merkle proof
                       (hex sibling hashes, see :mod:`oracle.provenance`) of every input against inputsRoot
    blobs/<cid>        the manifest, every raw input and the model artifact, named by CID

``verify_bundle`` needs no database and no chain: it trusts the report recorded in ``bundle.json`` (check
it against the chain, e.g. the tx hash on an explorer, to close that gap) and recomputes everything else.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oracle.errors import NotFound, ValidationError
from oracle.provenance import merkle_proof, verify_proof
from oracle.verify.replay import (
    MATCH,
    MISMATCH,
    AttestedReport,
    Check,
    ContentSource,
    Verification,
    load_manifest,
    replay,
    report_from_json,
    report_to_json,
)
from oracle.verify.sources import DirectorySource

if TYPE_CHECKING:
    from oracle.verify.device_signatures import DeviceAuth

BUNDLE_FORMAT = "oracle-verification-bundle/1"
TRUST_NOTE = (
    "offline: the report, chain id, router and tx hash are taken from bundle.json as given; "
    "the chain was not consulted"
)
KEYS_NOTE = (
    "the devices' public keys are taken from bundle.json as given; compare their fingerprints with the "
    "ones the device makers or operators published"
)


def export_bundle(
    source: ContentSource,
    *,
    manifest_cid: str,
    attested: AttestedReport,
    directory: Path,
    device_keys: Mapping[str, DeviceAuth] | None = None,
) -> Path:
    """Write the bundle for ``manifest_cid`` / ``attested`` into ``directory`` (created; must be empty).

    ``device_keys``: the public keys of the devices whose messages are inputs (kept in ``bundle.json``, so
    the offline check verifies every message's signature; public keys only, never a secret).

    :raises ValidationError: ``directory`` exists and is not empty. :raises NotFound / IntegrityError: a
        blob is missing or corrupt in ``source`` (a bundle is never written from bad bytes).
    """
    if directory.exists() and any(directory.iterdir()):
        raise ValidationError(f"{directory} is not empty", reason="directory_not_empty")
    manifest = load_manifest(source, manifest_cid)
    inputs = sorted({str(c) for c in manifest.get("inputs") or []})
    model = manifest.get("model")
    blob_cids = [manifest_cid, *inputs, *([str(model)] if model else [])]
    staging = directory.with_name(directory.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "blobs").mkdir(parents=True)
    from oracle.storage.blobs import verify

    for cid in blob_cids:
        data = source.read(cid)
        verify(cid, data)
        (staging / "blobs" / cid).write_bytes(data)
    doc = {
        "format": BUNDLE_FORMAT,
        "report": report_to_json(attested.report),
        "chain_id": attested.chain_id,
        "router": attested.router,
        "tx_hash": attested.tx_hash,
        "block_number": attested.block_number,
        "report_hash": "0x" + attested.report_hash.hex(),
        "manifest_cid": manifest_cid,
        "model_cid": model,
        "inputs": inputs,
        "proofs": {cid: ["0x" + h.hex() for h in merkle_proof(inputs, cid)] for cid in inputs},
    }
    if device_keys is not None:
        from oracle.verify.device_signatures import telemetry_devices

        used = telemetry_devices({cid: (staging / "blobs" / cid).read_bytes() for cid in inputs})
        doc["device_keys"] = {d: device_keys[d].to_json() for d in sorted(used) if d in device_keys}
    (staging / "bundle.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    # Rename last, so a crash never leaves something that looks like a complete bundle.
    if directory.exists():
        directory.rmdir()
    staging.rename(directory)
    return directory


def read_bundle(directory: Path) -> tuple[dict[str, Any], AttestedReport]:
    """Parse ``bundle.json``. :raises NotFound: no bundle there. :raises ValidationError: malformed."""
    try:
        doc = json.loads((directory / "bundle.json").read_text())
    except FileNotFoundError:
        raise NotFound(f"{directory} holds no bundle.json (made by `oracle export`)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValidationError(f"{directory}/bundle.json is not JSON: {e}", reason="bad_bundle") from e
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise ValidationError(f"{directory}/bundle.json is not a {BUNDLE_FORMAT}", reason="bad_bundle")
    try:
        attested = AttestedReport(
            report=report_from_json(doc["report"]),
            chain_id=int(doc["chain_id"]),
            router=str(doc["router"]),
            tx_hash=str(doc["tx_hash"]),
            block_number=int(doc["block_number"]),
            report_hash=bytes.fromhex(str(doc["report_hash"])[2:]),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise ValidationError(f"{directory}/bundle.json is malformed: {e}", reason="bad_bundle") from e
    return doc, attested


def verify_bundle(directory: Path) -> Verification:
    """Check a bundle offline: Merkle proofs, input and model hashes, every step, the report fields and
    the EIP-712 digest. See the module docstring for what is trusted."""
    doc, attested = read_bundle(directory)
    proof_checks = []
    for cid in doc.get("inputs") or []:
        try:
            proof = [bytes.fromhex(str(h)[2:]) for h in doc.get("proofs", {}).get(cid, [])]
            ok = verify_proof(cid, proof, attested.report.inputs_root)
        except (ValueError, ValidationError):
            ok = False
        proof_checks.append(
            Check(f"proof {cid}", MATCH if ok else MISMATCH, "" if ok else "not in inputsRoot")
        )
    keys = None
    notes = [TRUST_NOTE]
    if "device_keys" in doc:
        from oracle.verify.device_signatures import DeviceAuth

        raw_keys = doc["device_keys"]
        if not isinstance(raw_keys, dict):
            raise ValidationError(
                f"{directory}/bundle.json: device_keys is not an object", reason="bad_bundle"
            )
        keys = {str(d): DeviceAuth.from_json(v) for d, v in raw_keys.items()}
        notes.append(KEYS_NOTE)
    result = replay(
        DirectorySource(directory / "blobs"), str(doc["manifest_cid"]), attested, device_keys=keys
    )
    return Verification(
        manifest_cid=result.manifest_cid,
        checks=(*proof_checks, *result.checks),
        notes=(*notes, *result.notes),
    )
