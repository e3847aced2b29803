"""The OpenAPI document, adjusted so it describes what the API really answers: error responses are
``application/problem+json`` (FastAPI would label them ``application/json``), operations with a body can
answer 413, and both key headers are declared on every ``/v1`` operation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from oracle.api.problems import MEDIA_TYPE

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def problem_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                if isinstance(operation, dict):
                    _adjust(operation)
        app.openapi_schema = schema
        return schema

    return build


def _adjust(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status, response in responses.items():
        if not status.isdigit() or int(status) < 400:
            continue
        content = response.get("content", {})
        if "application/json" in content:
            content[MEDIA_TYPE] = content.pop("application/json")
    if "requestBody" in operation and "413" not in responses:
        responses["413"] = {
            "description": "Request body too large",
            "content": {MEDIA_TYPE: {"schema": _PROBLEM_REF}},
        }
