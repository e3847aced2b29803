"""``GET /v1/provenance/{cid}`` over the graph a real drought evaluation recorded, through the real app
(API keys, problem+json errors)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from oracle.api.app import create_app
from oracle.api.keys import Role, create_key
from oracle.context import Context
from oracle.decisions.drought import DecisionOutcome, evaluate_drought
from oracle.provenance_api import router
from tests.drought.world import PERIOD, build
from tests.fixtures.context import dev_context


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    context = dev_context(tmp_path)
    yield context
    context.close()


@pytest.fixture
def evaluated(ctx: Context, tmp_path: Path) -> DecisionOutcome:
    build(ctx.sessions, ctx.blobs, tmp_path)
    outcome = evaluate_drought(ctx.sessions, ctx.blobs, region_id="dry", period=PERIOD)
    assert outcome.status == "complete"
    return outcome


@pytest.fixture
def client(ctx: Context) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with ctx.sessions() as s:
        key = create_key(s, role=Role.VIEWER, name="test-provenance").secret_key
        s.commit()
    app = create_app(ctx)
    app.include_router(router)
    with TestClient(app) as c:
        yield c, {"Authorization": f"Bearer {key}"}


def _edges(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(e["source"], e["target"], e["kind"]) for e in doc["edges"]}


def test_graph_upstream_and_downstream(
    evaluated: DecisionOutcome, client: tuple[TestClient, dict[str, str]]
) -> None:
    c, auth = client
    steps = {s.name: s for s in evaluated.steps}
    features = steps["features"]

    # Upstream of the features: the zonal means and series, and one level further their raw inputs.
    resp = c.get(f"/v1/provenance/{features.output}", params={"depth": 2}, headers=auth)
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    step_nodes = {n["id"]: n for n in doc["nodes"] if n["type"] == "step"}
    names = {n["name"] for n in step_nodes.values()}
    assert {"features", "zonal_mean", "score", "report"} <= names
    (features_node,) = [k for k, n in step_nodes.items() if n["name"] == "features"]
    for part in features.inputs:
        assert (part, features_node, "input") in _edges(doc)
    raster = steps["zonal_mean"].inputs[0]
    assert raster in {n["id"] for n in doc["nodes"]}
    assert doc["truncated"] is False

    # Depth 1 upstream of the report's output stops at the score.
    report = steps["report"]
    doc = c.get(f"/v1/provenance/{report.output}", params={"depth": 1}, headers=auth).json()
    assert {n["name"] for n in doc["nodes"] if n["type"] == "step"} == {"report"}
    assert (report.inputs[0], next(n["id"] for n in doc["nodes"] if n["type"] == "step"), "input") in _edges(
        doc
    )

    # Downstream of a raw raster reaches the report in four steps.
    doc = c.get(f"/v1/provenance/{raster}", params={"depth": 4}, headers=auth).json()
    assert report.output in {n["id"] for n in doc["nodes"]}


def test_bad_requests_get_problems(
    evaluated: DecisionOutcome, client: tuple[TestClient, dict[str, str]]
) -> None:
    c, auth = client
    cid = evaluated.steps[0].output
    assert c.get(f"/v1/provenance/{cid}").status_code == 401
    assert c.get(f"/v1/provenance/{cid}", params={"depth": 0}, headers=auth).status_code == 422
    assert c.get(f"/v1/provenance/{cid}", params={"depth": 11}, headers=auth).status_code == 422
    assert c.get("/v1/provenance/bafkreinotacid0000000", headers=auth).status_code == 422
    unknown = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"  # sha-256 of nothing we stored
    resp = c.get(f"/v1/provenance/{unknown}", headers=auth)
    assert resp.status_code == 404
    assert "no recorded step" in resp.text
