"""``/v1/models``: the model cards of the shipped model artifacts (``models/artifacts/<family>/``)."""

from __future__ import annotations

import logging
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from oracle.api.deps import CtxDep, PageDep, ViewerKey
from oracle.api.pagination import Page
from oracle.api.problems import problem_responses
from oracle.errors import NotFound, ValidationError

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/models", tags=["models"], responses=problem_responses(401, 403, 422, 429))


class ModelPublic(BaseModel):
    name: str
    kind: str
    model_id: str
    training_data_hash: str
    features: list[str]
    params: dict[str, Any]
    metrics: dict[str, Any]
    created_at: str
    approval: str
    description: str


def artifacts_dir() -> FsPath:
    import models

    return FsPath(models.__file__).resolve().parent / "artifacts"


def _cards(root: FsPath) -> list[ModelPublic]:
    # The registry module pulls in pandas: import it only when a model route is called.
    from models.registry import list_models

    found: list[ModelPublic] = []
    for family in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        try:
            cards = list_models(family)
        except ValidationError as e:
            log.warning("skipping model directory %s: %s", family, e)
            continue
        found += [
            ModelPublic(
                name=c.name,
                kind=c.kind,
                model_id="0x" + c.model_id_hex,
                training_data_hash=c.training_data_hash,
                features=list(c.features),
                params=dict(c.params),
                metrics=dict(c.metrics),
                created_at=c.created_at,
                approval=c.approval,
                description=c.description,
            )
            for c in cards
        ]
    return found


def _root(ctx: Any) -> FsPath:
    given = ctx.extras.get("models_dir")
    return given if isinstance(given, FsPath) else artifacts_dir()


@router.get("", response_model=Page[ModelPublic])
def list_model_cards(
    ctx: CtxDep,
    _: ViewerKey,
    page: PageDep,
    kind: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")] = None,
    approval: Annotated[str | None, Query(pattern=r"^[a-z_]{1,20}$")] = None,
) -> Page[ModelPublic]:
    """Model cards, by name; ``model_id`` is the value reports carry as ``modelId``."""
    cards = [
        c
        for c in _cards(_root(ctx))
        if (kind is None or c.kind == kind) and (approval is None or c.approval == approval)
    ]
    items = cards[page.offset : page.offset + page.limit]
    nxt = page.offset + len(items)
    return Page[ModelPublic](
        items=items,
        total=len(cards),
        limit=page.limit,
        offset=page.offset,
        next_offset=nxt if nxt < len(cards) else None,
    )


@router.get("/{model_id}", response_model=ModelPublic, responses=problem_responses(404))
def get_model_card(
    model_id: Annotated[str, Path(pattern=r"^(0x)?[0-9a-fA-F]{64}$")], ctx: CtxDep, _: ViewerKey
) -> ModelPublic:
    wanted = "0x" + model_id.lower().removeprefix("0x")
    for card in _cards(_root(ctx)):
        if card.model_id == wanted:
            return card
    raise NotFound(f"no model with id {wanted}")
