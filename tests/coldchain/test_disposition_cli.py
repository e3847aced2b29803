"""``oracle shipments enroll-signer|disposition|signoff|verify-signoffs`` on a breached shipment: the CLI
needs both components, refuses a stale hash and a wrong password, and writes a signed PDF."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import update
from typer.testing import CliRunner

from oracle.api.keys import Role, create_key
from oracle.commands.pipeline import shipments_app
from oracle.config import Settings
from oracle.context import open_context
from oracle.decisions.coldchain import ShipmentTerms, evaluate_shipment
from oracle.storage.signoff_tables import DispositionSignoff
from tests.coldchain.helpers import Fleet, day_ago, temperatures

PASSWORD = "a long signing password"


def test_cli_enrols_signs_and_writes_a_signed_pdf(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORACLE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ORACLE_DATABASE_URL", database_url)
    ctx = open_context(Settings(data_dir=tmp_path / "data", database_url=database_url, _env_file=None))  # type: ignore[call-arg]
    shipment = f"SHP-C-{uuid.uuid4().hex[:6]}"
    try:
        fleet = Fleet(ctx.sessions, ctx.blobs)
        start = day_ago()
        fleet.add("logger-cli", shipment, start_s=start)
        fleet.publish("logger-cli", temperatures(20, excursion=(6, 2, 46.0)), start_s=start)
        evaluate_shipment(
            ctx.sessions, ctx.blobs, shipment_id=shipment, terms=ShipmentTerms(profile="refrigerated")
        )
        with ctx.sessions() as s:
            made = create_key(s, role=Role.OPERATOR, name="qa")
            s.commit()
        runner = CliRunner()
        enrolled = runner.invoke(
            shipments_app,
            ["enroll-signer", "--key-id", str(made.key.id), "--name", "Grace QA", "--password-stdin"],
            input=PASSWORD + "\n",
        )
        assert enrolled.exit_code == 0, enrolled.output
        shown = runner.invoke(shipments_app, ["disposition", shipment])
        assert shown.exit_code == 0, shown.output
        sha = shown.stdout.split("content SHA-256 ")[1].split()[0]
        assert len(sha) == 64

        monkeypatch.setenv("ORACLE_API_KEY", made.secret_key)
        args = ["signoff", shipment, "--name", "Grace QA", "--meaning", "review", "--password-stdin"]
        wrong = runner.invoke(shipments_app, [*args, "--content-sha256", sha], input="not the password\n")
        assert wrong.exit_code == 1
        assert "bad_signing_credential" in wrong.output
        stale = runner.invoke(shipments_app, [*args, "--content-sha256", "ab" * 32], input=PASSWORD + "\n")
        assert stale.exit_code == 1
        assert "stale_content" in stale.output
        signed = runner.invoke(shipments_app, [*args, "--content-sha256", sha], input=PASSWORD + "\n")
        assert signed.exit_code == 0, signed.output
        assert "as Grace QA" in signed.stdout
        assert PASSWORD not in signed.output

        pdf = tmp_path / "d.pdf"
        wrote = runner.invoke(shipments_app, ["disposition", shipment, "--out", str(pdf)])
        assert wrote.exit_code == 0, wrote.output
        assert "signed review by Grace QA" in wrote.stdout
        text = " ".join(
            " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.read_bytes())).pages).split()
        )
        assert "Grace QA review" in text
        assert sha in text

        assert runner.invoke(shipments_app, ["verify-signoffs"]).exit_code == 0
        with ctx.sessions() as s:
            s.execute(update(DispositionSignoff).values(printed_name="Mallory"))
            s.commit()
        broken = runner.invoke(shipments_app, ["verify-signoffs"])
        assert broken.exit_code == 1
        assert "BROKEN at entry 1" in broken.output
    finally:
        ctx.close()
