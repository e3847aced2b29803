"""Disposition reports of real shipments: a breached shipment through ingest, the rules, the signers, the
outbox, anvil and the listener; the report rendered as PDF (read back with pypdf) and HTML through the API;
sign-offs with two identification components into the hash-chained log, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import io
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import select, update

from oracle.api.app import create_app
from oracle.api.keys import Role, create_key
from oracle.chain.listener import ChainListener
from oracle.chain.outbox import OutboxPoster
from oracle.config import Settings
from oracle.context import Context, open_context
from oracle.decisions.coldchain import evaluate_shipment
from oracle.decisions.post import post_decision
from oracle.disposition.signoffs import enroll_signer, verify_chain
from oracle.storage.api_tables import AuditEntry
from oracle.storage.signoff_tables import DispositionSignoff
from tests.api.conftest import TEST_LIMITS
from tests.coldchain.helpers import Fleet, day_ago, open_escrow, temperatures
from tests.fixtures.chain import ChainKit
from tests.outbox.helpers import local_signers

PASSWORD = "correct horse battery staple"
QA_NAME = "Dr. Ada Quality"


@dataclass(frozen=True)
class World:
    ctx: Context
    client: TestClient
    shipment: str
    operator: dict[str, str]
    viewer: dict[str, str]


@pytest.fixture
def ctx(database_url: str, tmp_path: Path) -> Iterator[Context]:
    settings = Settings(env="dev", data_dir=tmp_path / "data", database_url=database_url, _env_file=None)  # type: ignore[call-arg]
    context = open_context(settings)
    yield context
    context.close()


def _keys(ctx: Context) -> tuple[dict[str, str], dict[str, str]]:
    """An operator key enrolled as QA signer, and a viewer key."""
    with ctx.sessions() as s:
        operator = create_key(s, role=Role.OPERATOR, name="qa operator")
        viewer = create_key(s, role=Role.VIEWER, name="viewer")
        enroll_signer(s, key_id=operator.key.id, printed_name=QA_NAME, password=PASSWORD)
        s.commit()
    return (
        {"Authorization": f"Bearer {operator.secret_key}"},
        {"Authorization": f"Bearer {viewer.secret_key}"},
    )


def _breached(ctx: Context, shipment: str) -> None:
    fleet = Fleet(ctx.sessions, ctx.blobs)
    start = day_ago()
    fleet.add(f"logger-{shipment}", shipment, start_s=start)
    fleet.publish(f"logger-{shipment}", temperatures(20, excursion=(6, 2, 46.0)), start_s=start)


@pytest.fixture
def world(ctx: Context) -> Iterator[World]:
    """A breached shipment decided but not attested (no chain needed)."""
    shipment = f"SHP-D-{uuid.uuid4().hex[:6]}"
    _breached(ctx, shipment)
    from oracle.decisions.coldchain import ShipmentTerms

    evaluate_shipment(
        ctx.sessions, ctx.blobs, shipment_id=shipment, terms=ShipmentTerms(profile="refrigerated")
    )
    operator, viewer = _keys(ctx)
    with TestClient(create_app(ctx, limits=TEST_LIMITS)) as client:
        yield World(ctx, client, shipment, operator, viewer)


def _sign(w: World, sha: str, **over: object) -> object:
    body = {
        "printed_name": QA_NAME,
        "meaning": "approval",
        "content_sha256": sha,
        "signing_password": PASSWORD,
    }
    body.update(over)  # type: ignore[arg-type]
    return w.client.post(f"/v1/shipments/{w.shipment}/disposition/signoffs", json=body, headers=w.operator)


def _pdf_text(data: bytes) -> tuple[int, str]:
    reader = PdfReader(io.BytesIO(data))
    return len(reader.pages), " ".join(" ".join(p.extract_text() for p in reader.pages).split())


@pytest.mark.chain
def test_voided_shipment_report_carries_verdict_mkt_excursions_tx_and_signoff(
    ctx: Context, chain: ChainKit
) -> None:
    shipment = open_escrow(chain, f"SHP-V-{uuid.uuid4().hex[:6]}")
    ChainListener(ctx.sessions, chain.w3, chain.deployment, confirmations=0).poll()
    _breached(ctx, shipment)
    outcome = evaluate_shipment(ctx.sessions, ctx.blobs, shipment_id=shipment)  # profile from the escrow
    post_decision(
        ctx.sessions,
        outcome,
        subject_name=shipment,
        signers=local_signers(chain.keys),
        threshold=2,
        chain_id=chain.deployment.chain_id,
        router=chain.router.address,
    )
    OutboxPoster(ctx.sessions, chain.w3, chain.accounts.relayer).run_until_settled(timeout=60)
    ChainListener(ctx.sessions, chain.w3, chain.deployment, confirmations=0).poll()
    ctx.extras["deployment"] = chain.deployment
    operator, viewer = _keys(ctx)
    with TestClient(create_app(ctx, limits=TEST_LIMITS)) as client:
        w = World(ctx, client, shipment, operator, viewer)
        doc = client.get(f"/v1/shipments/{shipment}/disposition", headers=viewer).json()
        content = doc["content"]
        assert content["shipment"]["status"] == "voided"
        assert content["decision"]["verdict"] == "BREACH"
        tx = content["attestation"]["tx_hash"]
        assert re.fullmatch(r"0x[0-9a-f]{64}", tx)
        assert content["attestation"]["block_number"] > 0
        assert re.fullmatch(r"0x[0-9a-f]{64}", content["attestation"]["digest"])
        assert len(content["attestation"]["signers"]) == 2
        assert [e["name"] for e in content["audit"]["chain_events"]].count("ShipmentVoided") == 1
        # One excursion: the two hours at 46 °C, found from the readings the decision was made on.
        (exc,) = content["excursions"]
        assert (exc["kind"], exc["duration_s"], exc["peak_c"]) == ("above", 7200, 46.0)
        mkt = f"{content['mkt_c']:.2f} °C"
        budget = f"{100 * content['budget_used']:.1f} %"

        signed = _sign(w, doc["content_sha256"], meaning="approval")
        assert signed.status_code == 201, signed.text  # type: ignore[attr-defined]
        entry = signed.json()  # type: ignore[attr-defined]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["signed_at"])

        pdf = client.get(f"/v1/shipments/{shipment}/disposition.pdf", headers=viewer)
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["x-content-sha256"] == doc["content_sha256"]
        pages, text = _pdf_text(pdf.content)
        html = client.get(f"/v1/shipments/{shipment}/disposition.html", headers=viewer).text
    assert pages == 2
    reader = PdfReader(io.BytesIO(pdf.content))
    assert reader.metadata is not None
    # The record's time, not the clock's: the PDF is dated when the decision was recorded.
    assert reader.metadata.creation_date is not None
    assert (
        reader.metadata.creation_date.strftime("%Y-%m-%dT%H:%M:%S") == content["decision"]["recorded_at"][:19]
    )
    for needle in (
        "BREACH",
        mkt,
        budget,
        "above band",
        "2h 00m",
        "46.00 °C",
        tx,
        doc["content_sha256"],
        QA_NAME,
        "approval",
        entry["signed_at"],
        "ShipmentVoided",
        content["decision"]["manifest_cid"],
    ):
        assert needle in text, needle
        assert needle in html, needle
    assert "<svg" in html
    assert "Temperature against the profile band" in html


def test_same_record_gives_the_same_pdf_and_hash(world: World) -> None:
    a = world.client.get(f"/v1/shipments/{world.shipment}/disposition?format=pdf", headers=world.viewer)
    b = world.client.get(f"/v1/shipments/{world.shipment}/disposition?format=pdf", headers=world.viewer)
    assert a.status_code == 200
    assert a.content == b.content
    pages, text = _pdf_text(a.content)
    assert pages == 2
    assert "The verdict has not been attested on-chain." in text
    assert "Not signed yet." in text


def test_tampering_with_a_signoff_breaks_the_chain(world: World) -> None:
    sha = world.client.get(f"/v1/shipments/{world.shipment}/disposition", headers=world.viewer).json()[
        "content_sha256"
    ]
    for meaning in ("review", "approval", "responsibility"):
        assert _sign(world, sha, meaning=meaning).status_code == 201  # type: ignore[attr-defined]
    ok = world.client.get("/v1/disposition-signoffs/verify", headers=world.viewer).json()
    assert ok == {"ok": True, "entries": 3, "broken_seq": None, "problem": ""}
    with world.ctx.sessions() as s:
        s.execute(update(DispositionSignoff).where(DispositionSignoff.seq == 2).values(meaning="authorship"))
        s.commit()
        check = verify_chain(s)
    assert (check.ok, check.broken_seq) == (False, 2)
    assert "entry_hash" in check.problem
    with world.ctx.sessions() as s:  # restore, then drop the middle entry: the link after it breaks
        s.execute(update(DispositionSignoff).where(DispositionSignoff.seq == 2).values(meaning="approval"))
        s.commit()
        assert verify_chain(s).ok
        s.execute(DispositionSignoff.__table__.delete().where(DispositionSignoff.seq == 2))
        s.commit()
        check = verify_chain(s)
    assert (check.ok, check.broken_seq) == (False, 3)


def test_a_stale_content_hash_is_refused(world: World) -> None:
    url = f"/v1/shipments/{world.shipment}/disposition"
    before = world.client.get(url, headers=world.viewer).json()["content_sha256"]
    assert _sign(world, before, meaning="review").status_code == 201  # type: ignore[attr-defined]
    # The record changes: the shipment is delivered and re-evaluated (a new decision).
    from oracle.decisions.coldchain import ShipmentTerms, mark_delivered

    mark_delivered(
        world.ctx.sessions, world.ctx.blobs, world.shipment, delivered_at=dt.datetime.now(dt.UTC), by="t"
    )
    evaluate_shipment(
        world.ctx.sessions,
        world.ctx.blobs,
        shipment_id=world.shipment,
        terms=ShipmentTerms(profile="refrigerated"),
    )
    after = world.client.get(url, headers=world.viewer).json()["content_sha256"]
    assert after != before
    r = _sign(world, before)
    assert r.status_code == 409  # type: ignore[attr-defined]
    assert r.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    assert r.json()["reason"] == "stale_content"  # type: ignore[attr-defined]
    assert after in r.json()["detail"]  # type: ignore[attr-defined]
    assert _sign(world, after).status_code == 201  # type: ignore[attr-defined]
    # Each signature stays with the content it signed (11.70): the review signed the earlier record.
    html = world.client.get(url + ".html", headers=world.viewer).text
    assert f"an earlier version: {before}" in html
    assert html.count("<td class='v'>this record</td>") == 1
    with world.ctx.sessions() as s:
        audited = s.scalars(
            select(AuditEntry.status).where(AuditEntry.resource == "disposition_signoffs")
        ).all()
    assert sorted(audited) == [201, 201, 409]


def test_hostile_signoffs_get_clear_problems(world: World) -> None:
    sha = world.client.get(f"/v1/shipments/{world.shipment}/disposition", headers=world.viewer).json()[
        "content_sha256"
    ]
    body = {"printed_name": QA_NAME, "meaning": "approval", "content_sha256": sha}
    url = f"/v1/shipments/{world.shipment}/disposition/signoffs"
    cases = [
        (
            world.client.post(url, json=body, headers=world.operator),
            422,
            "invalid_request",
            "signing_password",
        ),
        (_sign(world, sha, meaning="because"), 422, "invalid_request", "meaning"),
        (_sign(world, sha, signing_password="wrong password!"), 403, "bad_signing_credential", "password"),
        (_sign(world, sha, printed_name="Someone Else"), 403, "printed_name_mismatch", QA_NAME),
        (
            world.client.post(url, json={**body, "signing_password": PASSWORD}, headers=world.viewer),
            403,
            "forbidden",
            "operator",
        ),
        (world.client.post(url, json={**body, "signing_password": PASSWORD}), 401, "unauthorized", "API key"),
        (
            world.client.post(
                "/v1/shipments/SHP-NOPE/disposition/signoffs",
                json={**body, "signing_password": PASSWORD},
                headers=world.operator,
            ),
            404,
            "not_found",
            "SHP-NOPE",
        ),
        (
            world.client.get("/v1/shipments/SHP-NOPE/disposition.pdf", headers=world.viewer),
            404,
            "not_found",
            "SHP-NOPE",
        ),
    ]
    for r, status, reason, mentioned in cases:
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["reason"] == reason, problem
        assert mentioned in problem["detail"] or mentioned in str(problem.get("errors")), problem
        assert PASSWORD not in r.text
    with world.ctx.sessions() as s:
        assert s.scalar(select(DispositionSignoff.id)) is None  # nothing was signed
        refused = s.scalars(
            select(AuditEntry.summary).where(AuditEntry.resource == "disposition_signoffs")
        ).all()
    assert sorted(refused) == [
        "sign-off refused: bad_signing_credential",
        "sign-off refused: printed_name_mismatch",
    ]


def test_the_dashboard_links_the_report(world: World) -> None:
    detail = world.client.get(f"/v1/dashboard/shipments/{world.shipment}", headers=world.viewer).json()
    links = detail["disposition"]
    assert links["pdf"] == f"/v1/shipments/{world.shipment}/disposition.pdf"
    pdf = world.client.get(links["pdf"], headers=world.viewer)
    assert pdf.status_code == 200
    assert pdf.content.startswith(b"%PDF")
    assert "Disposition report" in world.client.get(links["html"], headers=world.viewer).text
    # A stream with readings but no decision yet has nothing to report.
    fleet = Fleet(world.ctx.sessions, world.ctx.blobs)
    start = day_ago()
    fleet.add("logger-undecided", "SHP-UNDECIDED", start_s=start)
    fleet.publish("logger-undecided", temperatures(2), start_s=start)
    undecided = world.client.get("/v1/dashboard/shipments/SHP-UNDECIDED", headers=world.viewer).json()
    assert undecided["disposition"] is None
