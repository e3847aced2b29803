"""The dashboard's JSON views and static routes through the app (Starlette TestClient, real SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from fastapi.testclient import TestClient
from sqlalchemy import select

from oracle.chain.anvil import AnvilProcess
from oracle.chain.deploy import DEFAULT_MODEL_DELAY, Deployment
from oracle.context import Context
from oracle.dashboard.build import stale_files
from oracle.dashboard.governance import pending_changes
from oracle.dashboard.shipments import profile_name
from oracle.dashboard.views import fixed_to_float, severity_class, top_factors
from oracle.decisions.coldchain import profile_bytes32
from oracle.decisions.trace import canonical_json
from oracle.reports import subject_id
from oracle.storage.blobs import cid_for
from oracle.storage.decision_tables import Region
from oracle.storage.tables import Blob, Observation, ReportRow, Shipment, TelemetryReading
from tests.api.conftest import seed
from tests.dashboard.conftest import make_app, readings_with_excursion
from tests.fixtures.chain import ChainKit


@pytest.fixture
def client(ctx: Context) -> Iterator[TestClient]:
    with TestClient(make_app(ctx)) as c:
        yield c


def test_views_need_a_key_and_the_page_does_not(client: TestClient) -> None:
    for path in ("/v1/dashboard/overview", "/v1/dashboard/cursor", "/v1/dashboard/regions/x"):
        r = client.get(path)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
    page = client.get("/")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text
    assert "https://" not in page.text
    assert client.get("/dashboard/static/vendor/leaflet/leaflet.js").status_code == 200


@pytest.mark.parametrize(
    "path", ["../routes.py", "..%2Froutes.py", "vendor/../../build.py", "nope.js", "index.html"]
)
def test_static_route_serves_only_its_own_files(client: TestClient, path: str) -> None:
    assert client.get(f"/dashboard/static/{path}").status_code == 404


def test_empty_database_gives_empty_lists(client: TestClient, viewer_key: str) -> None:
    h = {"X-API-Key": viewer_key}
    body = client.get("/v1/dashboard/overview", headers=h).json()
    for name in ("regions", "policies", "payouts", "shipments", "attestations", "rejects"):
        assert body[name] == [], name
    assert client.get("/v1/dashboard/regions/none", headers=h).status_code == 404
    assert client.get("/v1/dashboard/shipments/none", headers=h).status_code == 404


def test_overview_of_seeded_rows_hides_internal_columns(
    client: TestClient, ctx: Context, viewer_key: str
) -> None:
    seed(ctx)
    h = {"X-API-Key": viewer_key}
    before = client.get("/v1/dashboard/cursor", headers=h).json()["cursor"]
    body = client.get("/v1/dashboard/overview", headers=h).json()
    assert body["cursor"] == before
    first = next(a for a in body["attestations"] if a["id"] == 1)
    assert first["tx_hash"] == "0x" + "ab" * 32
    assert first["display_value"] == "1.250"
    assert [f["name"] for f in first["factors"]] == ["f0", "f1", "f2"]
    assert {a["kind"] for a in body["attestations"]} == {"DROUGHT_SEVERITY", "COLDCHAIN_VERDICT"}
    text = client.get("/v1/dashboard/overview", headers=h).text
    assert "apikey" not in text
    assert "secret-ish" not in text
    assert [p["status"] for p in body["policies"]] == ["paid", "active", "active"]
    assert body["policies"][0]["payout"] == "125000000"
    assert body["policies"][0]["trigger"] == 1.0
    assert {r["reason"] for r in body["rejects"]} == {"bad_signature", "malformed"}
    (ship,) = body["shipments"]
    assert ship["status"] == "voided"
    assert ship["profile"] is None  # the seeded hash names no shipped profile
    with ctx.sessions() as s:
        s.add(
            TelemetryReading(
                device_id="d",
                seq=1,
                ts_ms=1,
                shipment_id="S",
                temp_c=4.0,
                digest="0",
                batch_cid="b",
                source="http",
                received_ms=2,
            )
        )
        s.commit()
    assert client.get("/v1/dashboard/cursor", headers=h).json()["cursor"] != before


def test_shipment_detail_band_and_markers(client: TestClient, ctx: Context, viewer_key: str) -> None:
    subject = "0x" + subject_id("shipment", "SHP-9").hex()
    with ctx.sessions() as s:
        s.add(
            Shipment(
                subject=subject,
                escrow="0x" + "11" * 20,
                buyer="0x" + "22" * 20,
                seller="0x" + "33" * 20,
                amount="1",
                profile="0x" + profile_bytes32("refrigerated").hex(),
                deadline=2_000_000_000,
            )
        )
        for seq, (t, temp) in enumerate(readings_with_excursion(1_780_000_000)):
            s.add(
                TelemetryReading(
                    device_id="d1",
                    seq=seq,
                    ts_ms=t * 1000,
                    shipment_id="SHP-9",
                    temp_c=temp,
                    digest=str(seq),
                    batch_cid="b",
                    source="mqtt",
                    received_ms=t * 1000,
                )
            )
            # A second logger in the same box stamping the same instants must not break the rules.
            s.add(
                TelemetryReading(
                    device_id="d2",
                    seq=seq,
                    ts_ms=t * 1000 + 300,
                    shipment_id="SHP-9",
                    temp_c=temp,
                    digest=str(seq),
                    batch_cid="b",
                    source="mqtt",
                    received_ms=t * 1000,
                )
            )
        s.commit()
    h = {"X-API-Key": viewer_key}
    for key in (subject, "SHP-9"):
        d = client.get(f"/v1/dashboard/shipments/{key}", headers=h).json()
        assert d["profile"] == "refrigerated"
        assert d["band"] == {"low_c": 2.0, "high_c": 8.0}
        assert len(d["series"]["t"]) == 72
        kinds = [(m["type"], m["kind"]) for m in d["markers"]]
        assert kinds[0] == ("warning", "excursion")
        assert ("breach", "hard_limit") in kinds
        first_breach = min(m["at_s"] for m in d["markers"] if m["type"] == "breach")
        assert all(m["at_s"] < first_breach for m in d["markers"] if m["type"] == "warning")
        assert d["rules_verdict"] == "BREACH"
    assert profile_name("0x" + "44" * 32) is None


def test_region_without_decisions(client: TestClient, ctx: Context, viewer_key: str) -> None:
    with ctx.sessions() as s:
        s.add(
            Region(
                region_id="r1",
                subject="0x" + subject_id("region", "r1").hex(),
                name="<b>R1</b>",
                geometry={"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
                cid="c",
            )
        )
        s.commit()
    h = {"X-API-Key": viewer_key}
    d = client.get("/v1/dashboard/regions/r1", headers=h).json()
    assert d["name"] == "<b>R1</b>"  # escaping is the page's job: data stays data
    assert d["severity"] is None
    assert d["class"] == "unknown"
    assert d["history"] == []
    (r,) = client.get("/v1/dashboard/overview", headers=h).json()["regions"]
    assert r["geometry"]["type"] == "Polygon"


def test_value_helpers() -> None:
    assert fixed_to_float("3662639") == pytest.approx(3.662639)
    assert fixed_to_float("x") is None
    assert fixed_to_float(None) is None
    assert [severity_class(v) for v in (None, 0.2, 1.0, 3.66, 5.0, 9.0)] == [
        "unknown",
        "none",
        "D0",
        "D2",
        "D4",
        "D4",
    ]
    raw = [
        {"feature": "spi_3", "value": -2.0, "contribution": 0.5},
        {"name": "w", "weight": 2},
        "junk",
        {"x": 1},
        {"feature": "a"},
        {"feature": "b"},
    ]
    assert [f["name"] for f in top_factors(raw)] == ["spi_3", "w", "a"]
    assert top_factors(None) == []


def test_vendored_leaflet_matches_node_modules() -> None:
    # An npm upgrade of leaflet without `python -m oracle.dashboard.build` fails here.
    assert stale_files() == []


def _coldchain_manifest(ctx: Context) -> tuple[str, dict[str, str]]:
    """A hand-made cold-chain manifest in the content store, with its raw inputs in the database."""
    c = {
        name: ctx.blobs.put(name.encode())
        for name in ("batch", "profile", "delivery", "model", "readings", "screen", "rules", "model_out")
    }
    c["verdict"] = ctx.blobs.put(b"verdict")
    c["stray"] = ctx.blobs.put(b"stray")
    with ctx.sessions() as s:
        s.add(Blob(cid=c["delivery"], size=8))
        s.flush()
        s.add(
            Observation(
                kind="delivery", variable="delivery", subject="SHP-3", cid=c["delivery"], source="carrier-api"
            )
        )
        for seq in range(3):
            s.add(
                TelemetryReading(
                    device_id="logger-4",
                    seq=seq,
                    ts_ms=seq,
                    shipment_id="SHP-3",
                    temp_c=4.0,
                    digest=str(seq),
                    batch_cid=c["batch"],
                    source="mqtt",
                    received_ms=seq,
                )
            )
        s.commit()

    def step(name: str, inputs: list[str], params: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "name": name,
            "inputs": inputs,
            "output": c[name],
            "params": params or {},
            "code_version": "v9",
        }

    manifest = {
        "kind": "coldchain",
        "subject": "SHP-3",
        "period": "",
        "status": "complete",
        "reason": "",
        "inputs": sorted([c["batch"], c["profile"], c["delivery"]]),
        "model": c["model"],
        "steps": [
            step("readings", [c["batch"]], {"shipment": "SHP-3", "devices": {"logger-4": [None, None]}}),
            step("screen", [c["readings"]], {"mode": "hold"}),
            step("rules", [c["screen"], c["profile"], c["delivery"]], {"profile": "refrigerated"}),
            step("model_out", [c["screen"], c["profile"], c["model"]]),
            step("verdict", [c["rules"], c["model_out"], c["stray"]]),
        ],
    }
    return ctx.blobs.put(canonical_json(manifest)), c


def _report(ctx: Context, detail: dict[str, Any]) -> int:
    with ctx.sessions() as s:
        row = ReportRow(
            subject="0x" + "12" * 32,
            subject_name="shipment:SHP-3",
            kind=2,
            value="2",
            epoch=len(s.scalars(select(ReportRow.id)).all()) + 1,
            observed_at=1,
            inputs_root="0x" + "00" * 32,
            model_id="0x" + "00" * 32,
            detail=detail,
        )
        s.add(row)
        s.commit()
        return row.id


def test_custody_names_steps_and_raw_inputs(client: TestClient, ctx: Context, viewer_key: str) -> None:
    manifest_cid, c = _coldchain_manifest(ctx)
    report_id = _report(ctx, {"manifest_cid": manifest_cid})
    h = {"X-API-Key": viewer_key}
    assert client.get(f"/v1/dashboard/attestations/{report_id}/custody").status_code == 401
    d = client.get(f"/v1/dashboard/attestations/{report_id}/custody", headers=h).json()
    assert d["manifest_cid"] == manifest_cid
    assert d["decision"] == {
        "kind": "coldchain",
        "subject": "SHP-3",
        "period": "",
        "status": "complete",
        "reason": "",
    }
    assert [s["name"] for s in d["steps"]] == ["readings", "screen", "rules", "model_out", "verdict"]
    assert d["steps"][0]["params"] == {"shipment": "SHP-3"}  # scalars only
    assert d["steps"][0]["code_version"] == "v9"
    rules = d["steps"][2]["inputs"]
    assert [(i["from_step"], i["what"]) for i in rules] == [
        (1, "step output"),
        (None, "product profile"),
        (None, "delivery record"),
    ]
    assert rules[1]["label"] == "refrigerated"
    assert "SHP-3" in rules[2]["label"]
    raw = {r["cid"]: r for r in d["raw_inputs"]}
    assert raw[c["batch"]]["what"] == "telemetry batch"
    assert raw[c["batch"]]["label"] == "3 readings from logger-4 · shipment SHP-3"
    assert raw[c["delivery"]]["source"] == "carrier-api"
    assert raw[c["model"]]["what"] == "model artifact"
    assert raw[c["stray"]]["what"] == "unknown input"
    assert set(raw) == {c[k] for k in ("batch", "profile", "delivery", "model", "stray")}
    columns = {s["id"]: s["column"] for s in d["stages"]}
    assert columns["input:telemetry batch"] == 0
    assert [columns[f"step:{n}"] for n in ("readings", "screen", "rules", "model_out", "verdict")] == [
        1,
        2,
        3,
        3,
        4,
    ]
    assert columns["input:model artifact"] == 2  # next to the step that uses it
    links = {(x["source"], x["target"]) for x in d["links"]}
    assert ("step:rules", "step:verdict") in links
    assert ("input:product profile", "step:model_out") in links


def test_custody_of_unknown_manual_and_unreadable_reports(
    client: TestClient, ctx: Context, viewer_key: str
) -> None:
    h = {"X-API-Key": viewer_key}
    for path in ("999/custody", "abc/custody", "-1/custody", "/custody"):
        r = client.get(f"/v1/dashboard/attestations/{path}", headers=h)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("application/problem+json")
    manual = _report(ctx, {"factors": []})
    d = client.get(f"/v1/dashboard/attestations/{manual}/custody", headers=h).json()
    assert d["steps"] == []
    assert d["manifest_cid"] is None
    assert "no decision manifest" in d["note"]
    missing = _report(ctx, {"manifest_cid": cid_for(b"never stored")})
    d = client.get(f"/v1/dashboard/attestations/{missing}/custody", headers=h).json()
    assert d["steps"] == []
    assert "unreadable" in d["note"]


def test_governance_without_a_chain_says_so(client: TestClient, ctx: Context, viewer_key: str) -> None:
    assert client.get("/v1/dashboard/governance").status_code == 401
    h = {"X-API-Key": viewer_key}
    assert client.get("/v1/dashboard/governance", headers=h).json() == {
        "available": False,
        "reason": "no chain configured",
    }
    # A chain that does not answer: the panel says so, without the RPC URL (it may carry a provider key).
    ctx.chain_rpc_url = "http://127.0.0.1:9/secret-key"
    ctx.extras["deployment"] = Deployment(chain_id=1, block=0, deployer="0x" + "11" * 20)
    body = client.get("/v1/dashboard/governance", headers=h).json()
    assert body["available"] is False
    assert "secret-key" not in body["reason"]


@pytest.mark.chain
def test_governance_lists_pending_changes_from_the_chain(
    client: TestClient, ctx: Context, viewer_key: str, anvil: AnvilProcess, chain: ChainKit
) -> None:
    router = chain.router
    ctx.chain_rpc_url = anvil.url
    ctx.extras["deployment"] = chain.deployment
    newcomer = Account.from_key(keccak(b"dashboard-newcomer")).address
    consumer = chain.deploy("RecordingSubscriber", router.address).address
    chain.send(router.functions.scheduleAddSigner(newcomer))
    add_at = chain.now() + DEFAULT_MODEL_DELAY
    chain.advance_time(600)
    # Each change activates a delay after its own block (the two blocks may fall in different seconds).
    threshold_block = chain.send(router.functions.scheduleThreshold(3))["blockNumber"]
    approval_block = chain.send(router.functions.scheduleConsumerApproval(consumer))["blockNumber"]
    threshold_at = int(chain.w3.eth.get_block(threshold_block)["timestamp"]) + DEFAULT_MODEL_DELAY
    approval_at = int(chain.w3.eth.get_block(approval_block)["timestamp"]) + DEFAULT_MODEL_DELAY
    h = {"X-API-Key": viewer_key}

    body = client.get("/v1/dashboard/governance", headers=h).json()
    assert body["available"] is True
    assert body["router"] == router.address
    assert body["signers"] == sorted(k.address for k in chain.keys)
    assert (body["threshold"], body["delay_s"], body["pending_delay"]) == (2, DEFAULT_MODEL_DELAY, None)
    changes = [(c["action"], c["target"], c["threshold"], c["activates_at"]) for c in body["pending"]]
    assert changes[0] == ("add_signer", newcomer, None, add_at)  # soonest first
    assert sorted(changes[1:], key=str) == [
        ("approve_consumer", consumer, None, approval_at),
        ("set_threshold", None, 3, threshold_at),
    ]
    assert [c["ready"] for c in body["pending"]] == [False, False, False]
    assert body["pending"][0]["seconds_left"] == add_at - body["chain_time"]
    assert body["pending"][0]["id"] == "0x" + router.functions.changeId(1, newcomer).call().hex()

    chain.advance_time(DEFAULT_MODEL_DELAY - 300)  # past the first, not the others
    body = client.get("/v1/dashboard/governance", headers=h).json()
    assert (body["pending"][0]["action"], body["pending"][0]["ready"]) == ("add_signer", True)
    assert [c["ready"] for c in body["pending"][1:]] == [False, False]
    assert body["pending"][0]["seconds_left"] == 0
    chain.send(router.functions.activateGovernance(body["pending"][0]["id"]), chain.accounts.stranger)
    body = client.get("/v1/dashboard/governance", headers=h).json()
    assert newcomer in body["signers"]
    assert sorted(c["action"] for c in body["pending"]) == ["approve_consumer", "set_threshold"]


def test_pending_changes_are_sorted_and_named() -> None:
    raw = [
        (b"\x02" * 32, 2, "0x" + "00" * 20, 3, 200),
        (b"\x01" * 32, 9, "0x" + "ab" * 20, 0, 100),
    ]
    assert pending_changes(raw, now=150) == [
        {
            "id": "0x" + "01" * 32,
            "action": "unknown(9)",
            "target": "0x" + "ab" * 20,
            "threshold": None,
            "activates_at": 100,
            "ready": True,
            "seconds_left": 0,
        },
        {
            "id": "0x" + "02" * 32,
            "action": "set_threshold",
            "target": None,
            "threshold": 3,
            "activates_at": 200,
            "ready": False,
            "seconds_left": 50,
        },
    ]


def test_an_attestation_on_a_network_node_names_who_signed_who_disagreed_and_who_sent_it(
    ctx: Context,
) -> None:
    from oracle.dashboard.views import attestations_view
    from oracle.storage.network_tables import NetworkRound, PeerSignature

    subject = "0x" + subject_id("region", "KE-NET").hex()
    with ctx.sessions() as s:
        row = ReportRow(
            subject=subject,
            subject_name="KE-NET",
            kind=1,
            value="2500000",
            epoch=7,
            observed_at=1,
            inputs_root="0x" + "00" * 32,
            model_id="0x" + "11" * 32,
            status="confirmed",
            detail={"transmitted_by": "node3", "tx_hash": "0x" + "ab" * 32},
        )
        s.add(row)
        s.flush()
        ours, theirs = "0x" + "aa" * 32, "0x" + "bb" * 32
        s.add(
            NetworkRound(
                subject=subject, epoch=7, report_id=row.id, digest=ours, status="landed", combined=[]
            )
        )
        for node, digest in (("node1", ours), ("node2", ours), ("node3", ours), ("node4", theirs)):
            s.add(
                PeerSignature(
                    subject=subject,
                    epoch=7,
                    node_id=node,
                    signer="0x" + "00" * 20,
                    digest=digest,
                    signature="0x",
                )
            )
        s.commit()
        single = ReportRow(
            subject="0x" + subject_id("region", "KE-ONE").hex(),
            subject_name="KE-ONE",
            kind=1,
            value="1",
            epoch=1,
            observed_at=1,
            inputs_root="0x" + "00" * 32,
            model_id="0x" + "11" * 32,
        )
        s.add(single)
        s.commit()
        views = {v["subject_name"]: v for v in attestations_view(s)}
    assert views["KE-NET"]["network"] == {
        "round": "landed",
        "signed": ["node1", "node2", "node3"],
        "disagreed": ["node4"],
        "combined": [],
        "transmitted_by": "node3",
    }
    assert views["KE-NET"]["tx_hash"] == "0x" + "ab" * 32  # sent by another member
    assert views["KE-ONE"]["network"] is None  # a single node has no network word
