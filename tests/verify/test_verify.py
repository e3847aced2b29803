"""``oracle verify`` / ``oracle export`` end to end on the synthetic drought world and a real anvil:
evaluate → post → verify MATCH; one flipped byte in the content store → MISMATCH naming that input; an
exported bundle checks offline in a fresh directory; the router refuses a report from a revoked model."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from oracle.chain.outbox import OutboxPoster
from oracle.commands.verify import export_command, verify_command
from oracle.decisions.drought import DecisionOutcome, evaluate_drought
from oracle.decisions.post import post_decision
from oracle.reports import ReportKind
from oracle.storage.blobs import FilesystemBlobStore
from oracle.storage.tables import OutboxRow
from tests.drought.world import PERIOD, build
from tests.fixtures.chain import ChainKit
from tests.outbox.helpers import local_signers, open_db, sqlite_url

pytestmark = pytest.mark.chain


def cli() -> typer.Typer:
    # Mounted the way the main CLI mounts them.
    app = typer.Typer()
    app.command("verify")(verify_command)
    app.command("export")(export_command)
    return app


@dataclass(frozen=True)
class Posted:
    sessions: sessionmaker[Session]
    blobs: FilesystemBlobStore
    outcome: DecisionOutcome
    report_id: int
    tx_hash: str


def post_and_settle(chain: ChainKit, sessions: sessionmaker[Session], outcome: DecisionOutcome) -> OutboxRow:
    att = post_decision(
        sessions,
        outcome,
        subject_name="dry",
        signers=local_signers(chain.keys),
        threshold=2,
        chain_id=chain.deployment.chain_id,
        router=chain.router.address,
    )
    OutboxPoster(sessions, chain.w3, chain.accounts.relayer).run_until_settled(timeout=60)
    with sessions() as s:
        row = s.get(OutboxRow, att.outbox_id)
        assert row is not None
        s.expunge(row)
        return row


@pytest.fixture
def posted(chain: ChainKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Posted:
    data = tmp_path / "data"
    data.mkdir()
    url = sqlite_url(data)
    sessions = open_db(url)
    blobs = FilesystemBlobStore(data / "blobs")
    build(sessions, blobs, tmp_path)
    chain.deployment.save(data / "deployment.json")
    monkeypatch.setenv("ORACLE_DATA_DIR", str(data))
    monkeypatch.setenv("ORACLE_DATABASE_URL", url)
    monkeypatch.setenv("ORACLE_CHAIN_RPC_URL", chain.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    outcome = evaluate_drought(sessions, blobs, region_id="dry", period=PERIOD)
    assert outcome.report is not None
    row = post_and_settle(chain, sessions, outcome)
    assert row.status == "confirmed"
    assert row.report_id is not None
    assert row.tx_hash is not None
    return Posted(sessions, blobs, outcome, row.report_id, row.tx_hash)


def verify(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli(), ["verify", *args])
    return result.exit_code, result.output


def test_posted_decision_matches_then_one_flipped_byte_names_the_input(
    posted: Posted, tmp_path: Path
) -> None:
    for attestation in (str(posted.report_id), posted.tx_hash):
        code, out = verify(attestation)
        assert code == 0, out
        assert out.strip().endswith("RESULT: MATCH")
        step_lines = [line for line in out.splitlines() if " step " in f" {line}"]
        assert len(step_lines) == len(posted.outcome.steps)
        assert all(line.startswith("MATCH") for line in step_lines)
        for name in ("inputsRoot", "modelId", "report fields", "EIP-712 digest"):
            assert f"MATCH     {name}" in out

    code, out = verify(str(posted.report_id), "--json")
    doc = json.loads(out)
    assert (code, doc["result"], doc["first_mismatch"]) == (0, "MATCH", None)

    # Flip one byte of one raster in the filesystem content store.
    raster_cid = posted.outcome.steps[0].inputs[0]
    path = posted.blobs.path(raster_cid)
    pristine = path.read_bytes()
    tampered = bytearray(pristine)
    tampered[len(tampered) // 2] ^= 0x01
    path.write_bytes(bytes(tampered))
    code, out = verify(posted.tx_hash, "--json")
    doc = json.loads(out)
    assert code == 1
    assert doc["result"] == "MISMATCH"
    assert doc["first_mismatch"] == f"input {raster_cid}"
    failed = [c["name"] for c in doc["checks"] if c["status"] == "MISMATCH"]
    assert "step 1 zonal_mean" in failed  # the step that read it cannot be recomputed
    code, out = verify(posted.tx_hash)
    assert code == 1
    assert f"RESULT: MISMATCH, first at input {raster_cid}" in out

    # The good bytes from elsewhere (--inputs, files named by CID) make it verify again.
    good = tmp_path / "good-inputs"
    good.mkdir()
    (good / raster_cid).write_bytes(pristine)
    code, out = verify(posted.tx_hash, "--inputs", str(good))
    assert code == 0, out


def test_bundle_verifies_offline_in_a_fresh_directory(
    posted: Posted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "bundle"
    result = CliRunner().invoke(cli(), ["export", str(posted.report_id), str(bundle)])
    assert result.exit_code == 0, result.output
    doc = json.loads((bundle / "bundle.json").read_text())
    assert doc["tx_hash"] == posted.tx_hash
    assert doc["manifest_cid"] == posted.outcome.manifest_cid
    assert set(doc["proofs"]) == set(doc["inputs"])
    assert {p.name for p in (bundle / "blobs").iterdir()} == {
        doc["manifest_cid"],
        doc["model_cid"],
        *doc["inputs"],
    }
    again = CliRunner().invoke(cli(), ["export", str(posted.report_id), str(bundle)])
    assert again.exit_code == 2
    assert "not empty" in again.output

    # Another machine: no database, no chain, no content store.
    elsewhere = tmp_path / "elsewhere" / "copy"
    shutil.copytree(bundle, elsewhere)
    monkeypatch.setenv("ORACLE_DATA_DIR", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("ORACLE_DATABASE_URL", "sqlite:////nonexistent/dir/oracle.sqlite3")
    monkeypatch.setenv("ORACLE_CHAIN_RPC_URL", "http://127.0.0.1:9")
    code, out = verify("--bundle", str(elsewhere))
    assert code == 0, out
    assert "the chain was not consulted" in out
    assert sum(line.startswith("MATCH     proof ") for line in out.splitlines()) == len(doc["inputs"])

    # A bundle whose report was edited no longer matches what the steps give, nor the digest.
    edited = json.loads((elsewhere / "bundle.json").read_text())
    edited["report"]["value"] = str(int(edited["report"]["value"]) + 1)
    (elsewhere / "bundle.json").write_text(json.dumps(edited))
    code, out = verify("--bundle", str(elsewhere), "--json")
    failed = [c["name"] for c in json.loads(out)["checks"] if c["status"] == "MISMATCH"]
    assert code == 1
    assert failed == ["report fields", "EIP-712 digest"]

    # A flipped byte in a bundled input is named.
    shutil.rmtree(elsewhere)
    shutil.copytree(bundle, elsewhere)
    victim = doc["inputs"][-1]
    blob = elsewhere / "blobs" / victim
    blob.write_bytes(blob.read_bytes()[:-1] + bytes([blob.read_bytes()[-1] ^ 0xFF]))
    code, out = verify("--bundle", str(elsewhere), "--json")
    assert code == 1
    assert json.loads(out)["first_mismatch"] == f"input {victim}"


def test_bad_attestations_are_refused_with_a_reason(posted: Posted) -> None:
    for attestation, message in (
        ("not-an-id", "must be a report id or a 0x-prefixed transaction hash"),
        ("999999", "no report with id 999999"),
        ("0x" + "ab" * 32, "no report was posted in transaction"),
    ):
        code, out = verify(attestation)
        assert code == 2
        assert message in out
    code, out = verify()
    assert (code, "give an attestation" in out) == (2, True)


def test_report_from_a_revoked_model_is_refused_on_chain(
    chain: ChainKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = open_db(sqlite_url(tmp_path))
    blobs = FilesystemBlobStore(tmp_path / "blobs")
    build(sessions, blobs, tmp_path)
    outcome = evaluate_drought(sessions, blobs, region_id="dry", period=PERIOD)
    assert outcome.report is not None
    kind = int(ReportKind.DROUGHT_SEVERITY)
    chain.send(chain.router.functions.revokeModel(kind, outcome.report.model_id))
    row = post_and_settle(chain, sessions, outcome)
    assert row.status == "reverted"
    assert "ModelNotApproved" in (row.revert_reason or "")
    with sessions() as s:
        assert s.scalars(select(OutboxRow.status)).all() == ["reverted"]
