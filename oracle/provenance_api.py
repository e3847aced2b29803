"""``GET /v1/provenance/{cid}``: the provenance graph around any CID, upstream (what it was made from) and
downstream (what was made from it), from ``provenance_steps`` / ``provenance_inputs``.

The graph is bipartite: blob nodes (``id`` = the CID) and step nodes (``id`` = ``step:<row id>``, with
name, code version and parameters); edges run blob → step (``input``, with its position) and step → blob
(``output``). ``depth`` counts steps away from the CID in each direction (1…10); at most ``MAX_NODES``
nodes are returned, ``truncated`` says when more exist. Read-only (viewer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from oracle.api.deps import SessionDep, ViewerKey
from oracle.api.problems import problem_responses
from oracle.errors import NotFound
from oracle.storage.blobs import parse_cid
from oracle.storage.decision_tables import ProvenanceInput, ProvenanceStep

MAX_NODES = 500
MAX_DEPTH = 10

router = APIRouter(tags=["provenance"], responses=problem_responses(401, 403, 422, 429))


class GraphNode(BaseModel):
    id: str
    type: Literal["blob", "step"]
    name: str | None = None
    code_version: str | None = None
    params: dict[str, Any] | None = None
    decision_id: int | None = None


class GraphEdge(BaseModel):
    source: str
    target: str
    kind: Literal["input", "output"]
    position: int | None = None


class ProvenanceGraph(BaseModel):
    cid: str
    depth: int
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    truncated: bool


@dataclass
class _Graph:
    nodes: dict[str, GraphNode] = field(default_factory=dict)
    edges: dict[tuple[str, str], GraphEdge] = field(default_factory=dict)
    truncated: bool = False

    def full(self) -> bool:
        if len(self.nodes) >= MAX_NODES:
            self.truncated = True
            return True
        return False

    def blob(self, cid: str) -> None:
        self.nodes.setdefault(cid, GraphNode(id=cid, type="blob"))

    def step(self, row: ProvenanceStep) -> str:
        key = f"step:{row.id}"
        self.nodes.setdefault(
            key,
            GraphNode(
                id=key,
                type="step",
                name=row.name,
                code_version=row.code_version,
                params=row.params,
                decision_id=row.decision_id,
            ),
        )
        return key

    def edge(self, source: str, target: str, kind: Literal["input", "output"], position: int | None) -> None:
        self.edges.setdefault(
            (source, target), GraphEdge(source=source, target=target, kind=kind, position=position)
        )


def _inputs_of(session: Session, step_ids: list[int]) -> list[ProvenanceInput]:
    if not step_ids:
        return []
    return list(session.scalars(select(ProvenanceInput).where(ProvenanceInput.step_id.in_(step_ids))).all())


def provenance_graph(session: Session, cid: str, *, depth: int) -> ProvenanceGraph:
    """The graph ``depth`` steps up and down from ``cid``.

    :raises ValidationError: not one of our CIDs. :raises NotFound: no step produced or used ``cid``.
    """
    parse_cid(cid)
    graph = _Graph()
    graph.blob(cid)
    found = False
    # Upstream: the steps that produced the frontier's CIDs, then their inputs.
    frontier = {cid}
    for _ in range(depth):
        if not frontier or graph.full():
            break
        steps = session.scalars(select(ProvenanceStep).where(ProvenanceStep.output_cid.in_(frontier))).all()
        found = found or bool(steps)
        nxt: set[str] = set()
        for row in steps:
            key = graph.step(row)
            graph.edge(key, row.output_cid, "output", None)
            for inp in _inputs_of(session, [row.id]):
                if inp.cid not in graph.nodes:
                    nxt.add(inp.cid)
                graph.blob(inp.cid)
                graph.edge(inp.cid, key, "input", inp.position)
            if graph.full():
                break
        frontier = nxt
    # Downstream: the steps that used the frontier's CIDs, then their outputs.
    frontier = {cid}
    for _ in range(depth):
        if not frontier or graph.full():
            break
        uses = session.scalars(select(ProvenanceInput).where(ProvenanceInput.cid.in_(frontier))).all()
        found = found or bool(uses)
        step_rows = {
            r.id: r
            for r in session.scalars(
                select(ProvenanceStep).where(ProvenanceStep.id.in_({u.step_id for u in uses}))
            ).all()
        }
        nxt = set()
        for use in uses:
            row = step_rows[use.step_id]
            key = graph.step(row)
            graph.edge(use.cid, key, "input", use.position)
            if row.output_cid not in graph.nodes:
                nxt.add(row.output_cid)
            graph.blob(row.output_cid)
            graph.edge(key, row.output_cid, "output", None)
            if graph.full():
                break
        frontier = nxt
    if not found:
        raise NotFound(f"no recorded step produced or used {cid}")
    return ProvenanceGraph(
        cid=cid,
        depth=depth,
        nodes=list(graph.nodes.values()),
        edges=list(graph.edges.values()),
        truncated=graph.truncated,
    )


@router.get("/v1/provenance/{cid}", response_model=ProvenanceGraph, responses=problem_responses(404))
def get_provenance(
    cid: Annotated[str, Path(min_length=10, max_length=100, pattern=r"^[a-z0-9]+$")],
    session: SessionDep,
    _: ViewerKey,
    depth: Annotated[int, Query(ge=1, le=MAX_DEPTH, description="steps to follow each way")] = 3,
) -> ProvenanceGraph:
    return provenance_graph(session, cid, depth=depth)
