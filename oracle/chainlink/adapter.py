"""Chainlink external adapter: ``POST /adapter`` answers a Chainlink node's bridge task.

Request (the job's ``requestData``)::

    {"id": "<job run id>", "data": {"task": "drought-severity", "region": "dry", "period": "2026-06",
     "times": 10000}, "meta": {...}, "responseURL": "http://node/v2/resume/<run id>"}

Success (HTTP 200)::

    {"jobRunID": "<id>", "data": {"result": 36626, "score": 3.66, "attestationId": 7, "factors": [...]},
     "result": 36626, "statusCode": 200, "providerStatusCode": 200}

Failure (HTTP status = ``statusCode``; never an HTML error page)::

    {"jobRunID": "<id>", "status": "errored", "statusCode": 400|401|404|422|500|501|504,
     "error": {"name": "<reason>", "message": "..."}}

400 bad request (malformed JSON, unknown task, bad period or times, ``response_url_not_allowed``), 401
missing/wrong bearer token (when ``ORACLE_CHAINLINK_BRIDGE_TOKEN`` is set; in ``prod`` without one, every
request), 404 unknown region or shipment (or ``adapter_off``), 422 no answer yet (the decision is
incomplete), 429 ``busy`` with ``Retry-After`` (``ORACLE_CHAINLINK_ADAPTER_MAX_QUEUE`` evaluations already
queued or running), 500 evaluation failed, 501 task not available here, 504 evaluation slower than the
timeout.

Async: with a ``responseURL``, an evaluation still running after ``AdapterOptions.sync_wait_s`` is answered
``{"pending": true}`` and its result is later PATCHed to ``responseURL`` as ``{"data": ...}`` or
``{"error": ...}`` from a worker thread (bearer ``AdapterOptions.response_token`` when set: the node
authenticates resumes with the bridge's incoming token). A ``responseURL`` must lie under one of the node
base URLs in ``ORACLE_CHAINLINK_NODE_URLS`` (see :mod:`oracle.chainlink.response_url`); with none
configured, a request carrying one is refused before any work is done.

Serving: ``ORACLE_CHAINLINK_ADAPTER_ENABLED`` unset serves the adapter in ``dev``, and in ``prod`` only with a
bridge token (start-up logs an error naming the missing setting and every request answers 401);
``true`` in ``prod`` without a token stops start-up (settings validation); ``false`` answers 404.

Options come from ``ctx.extras["chainlink_adapter"]`` (an :class:`AdapterOptions`), else defaults.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from oracle.chainlink.response_url import response_url_refusal
from oracle.chainlink.tasks import (
    TaskAnswer,
    TaskRequest,
    Unsupported,
    answer_task,
    not_found_reason,
    parse_task,
)
from oracle.config import Settings
from oracle.context import Context
from oracle.errors import NotFound, OracleError, ValidationError

log = logging.getLogger(__name__)

MAX_JOB_RUN_ID = 200
#: Seconds a caller refused with 429 is asked to wait: about one short evaluation.
RETRY_AFTER_S = 1


@dataclass(frozen=True)
class AdapterOptions:
    """``timeout_s``: longest synchronous evaluation before a 504; ``sync_wait_s``: with a responseURL,
    how long to wait before answering pending (≤ 0: always pending); ``callback_timeout_s``: the PATCH's
    own timeout; ``response_token``: bearer sent with the PATCH."""

    timeout_s: float = 25.0
    sync_wait_s: float = 2.0
    callback_timeout_s: float = 10.0
    response_token: str | None = None


class AdapterError(Exception):
    """An answer in the bridge's error shape."""

    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status, self.name, self.message = status, name, message


class _EvaluationQueue:
    """The adapter's evaluations: at most ``limit`` queued or running at once (the executor's own queue
    is unbounded). A place is freed when the evaluation ends, also after its caller got a 504."""

    def __init__(self, workers: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chainlink-adapter")
        self._lock = threading.Lock()
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def submit(self, limit: int, ctx: Context, task: TaskRequest) -> Future[TaskAnswer | AdapterError] | None:
        """The evaluation's future, or None when ``limit`` evaluations are already queued or running."""
        with self._lock:
            if self._size >= limit:
                return None
            self._size += 1
        try:
            future = self._executor.submit(_evaluate, ctx, task)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _: self._release())
        return future

    def _release(self) -> None:
        with self._lock:
            self._size -= 1


#: Evaluations run here, off the event loop, on a few threads behind a bounded queue.
_QUEUE = _EvaluationQueue(workers=4)
#: PATCHes of late results run here: not on the event loop (a callback added to a future that is already
#: done runs at once, in the adding thread) and not on an evaluator (a slow node would hold it).
_DELIVERIES = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chainlink-delivery")


def queued_evaluations() -> int:
    """Adapter evaluations queued or running in this process."""
    return _QUEUE.size


def _serving_refusal(settings: Settings) -> AdapterError | None:
    """Why this oracle serves no adapter request at all, or None (see "Serving" in the module docstring)."""
    if settings.chainlink_adapter_enabled is False:
        return AdapterError(
            404, "adapter_off", "the Chainlink adapter is off here (ORACLE_CHAINLINK_ADAPTER_ENABLED=false)"
        )
    if settings.env == "prod" and settings.chainlink_bridge_token is None:
        return AdapterError(
            401,
            "unauthorized",
            "ORACLE_ENV=prod and no ORACLE_CHAINLINK_BRIDGE_TOKEN is set: the adapter answers no request "
            "until the operator sets the bridge token",
        )
    return None


@asynccontextmanager
async def _announce(app: FastAPI) -> AsyncIterator[None]:
    """At start-up, say in the log when the adapter will refuse everything, and why."""
    ctx = getattr(app.state, "ctx", None)
    refusal = _serving_refusal(ctx.settings) if isinstance(ctx, Context) else None
    if refusal is not None and refusal.status == 401:
        log.error("chainlink adapter refuses every request: %s", refusal.message)
    yield


router = APIRouter(tags=["chainlink"], lifespan=_announce)


def errored(job_run_id: str, status: int, name: str, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "jobRunID": job_run_id,
            "status": "errored",
            "statusCode": status,
            "error": {"name": name, "message": message},
        },
        status_code=status,
    )


def success_body(job_run_id: str, answer: TaskAnswer) -> dict[str, Any]:
    data = {
        "result": answer.result,
        "score": answer.score,
        "attestationId": answer.attestation_id,
        "decisionId": answer.decision_id,
        "reportId": answer.report_id,
        "factors": answer.factors,
    }
    return {
        "jobRunID": job_run_id,
        "data": data,
        "result": answer.result,
        "statusCode": 200,
        "providerStatusCode": 200,
    }


def _options(ctx: Context) -> AdapterOptions:
    found = ctx.extras.get("chainlink_adapter")
    return found if isinstance(found, AdapterOptions) else AdapterOptions()


def _check_token(ctx: Context, request: Request) -> None:
    refusal = _serving_refusal(ctx.settings)
    if refusal is not None:
        raise refusal
    secret = ctx.settings.chainlink_bridge_token
    if secret is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    expected = secret.get_secret_value()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise AdapterError(401, "unauthorized", "missing or wrong bearer token")


def _parse_body(raw: bytes) -> tuple[str, dict[str, Any], str | None]:
    """(job run id, data, responseURL) or ``AdapterError`` 400."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AdapterError(400, "bad_request", f"body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise AdapterError(400, "bad_request", "body must be a JSON object")
    job_run_id = body.get("id", "1")
    if not isinstance(job_run_id, str | int) or isinstance(job_run_id, bool):
        raise AdapterError(400, "bad_request", "id must be a string or an integer")
    job_run_id = str(job_run_id)[:MAX_JOB_RUN_ID]
    data = body.get("data")
    if not isinstance(data, dict):
        raise AdapterError(400, "bad_request", "data must be a JSON object")
    url = body.get("responseURL")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        raise AdapterError(400, "bad_request", "responseURL must be an http(s) URL")
    return job_run_id, data, url


def _evaluate(ctx: Context, task: TaskRequest) -> TaskAnswer | AdapterError:
    """Runs in a worker thread; domain errors become the bridge's error names and codes (returned, not
    raised, so an abandoned future never carries an unretrieved exception)."""
    try:
        return answer_task(ctx.sessions, ctx.blobs, task)
    except NotFound as e:
        return AdapterError(404, not_found_reason(task.task), str(e))
    except Unsupported as e:
        return AdapterError(501, "unsupported_task", str(e))
    except ValidationError as e:
        status = 422 if e.reason == "incomplete" else 400
        return AdapterError(status, e.reason, str(e))
    except OracleError as e:
        log.warning("chainlink adapter evaluation failed task=%s subject=%s: %s", task.task, task.subject, e)
        return AdapterError(500, "evaluation_failed", str(e))
    except Exception:  # any crash must still answer in the bridge's error shape
        log.exception("chainlink adapter evaluation crashed task=%s subject=%s", task.task, task.subject)
        return AdapterError(500, "internal_error", "the evaluation failed unexpectedly")


def _result_of(job_run_id: str, future: Future[TaskAnswer | AdapterError]) -> tuple[int, dict[str, Any]]:
    answer = future.result()
    if isinstance(answer, AdapterError):
        e = answer
        body = {
            "jobRunID": job_run_id,
            "status": "errored",
            "statusCode": e.status,
            "error": {"name": e.name, "message": e.message},
        }
        return e.status, body
    return 200, success_body(job_run_id, answer)


def deliver(
    url: str, job_run_id: str, future: Future[TaskAnswer | AdapterError], options: AdapterOptions
) -> None:
    """PATCH the finished evaluation to the node's ``responseURL``. Failures are logged, not raised: the
    node times the run out by itself when nothing arrives."""
    status, body = _result_of(job_run_id, future)
    payload = {"data": body["data"]} if status == 200 else {"error": body["error"]}
    headers = {"Authorization": f"Bearer {options.response_token}"} if options.response_token else {}
    try:
        # No redirects: a node base URL is allowed, not wherever its server points next.
        r = httpx.patch(
            url, json=payload, headers=headers, timeout=options.callback_timeout_s, follow_redirects=False
        )
        if r.status_code >= 300:
            log.warning("chainlink responseURL refused job_run=%s status=%s", job_run_id, r.status_code)
    except httpx.HTTPError as e:
        log.warning("chainlink responseURL unreachable job_run=%s: %s", job_run_id, type(e).__name__)


@router.post("/adapter", summary="Chainlink external adapter (bridge) endpoint")
async def adapter(request: Request) -> JSONResponse:
    """Answer a Chainlink bridge task; see the module docstring for the shapes and status codes."""
    ctx: Context = request.app.state.ctx
    options = _options(ctx)
    job_run_id = "1"
    try:
        _check_token(ctx, request)
        job_run_id, data, response_url = _parse_body(await request.body())
        try:
            task = parse_task(data)
        except ValidationError as e:
            raise AdapterError(400, e.reason, str(e)) from None
        if response_url is not None:
            refused = response_url_refusal(response_url, ctx.settings.chainlink_node_urls)
            if refused is not None:
                log.warning("chainlink adapter refused responseURL job_run=%s: %s", job_run_id, refused)
                raise AdapterError(400, "response_url_not_allowed", refused)
        future = _QUEUE.submit(ctx.settings.chainlink_adapter_max_queue, ctx, task)
        if future is None:
            log.warning("chainlink adapter busy job_run=%s queued=%s", job_run_id, _QUEUE.size)
            raise AdapterError(
                429,
                "busy",
                f"{ctx.settings.chainlink_adapter_max_queue} evaluations are already queued or running; "
                f"retry in {RETRY_AFTER_S} s",
            )
        wait = options.sync_wait_s if response_url else options.timeout_s
        # sync_wait_s <= 0 means "always answer pending": decided here, not by a race with the worker.
        finished = wait > 0 and bool((await asyncio.wait([asyncio.wrap_future(future)], timeout=wait))[0])
        if not finished:
            if response_url:
                future.add_done_callback(
                    lambda f: _DELIVERIES.submit(deliver, response_url, job_run_id, f, options)
                )
                log.info("chainlink adapter pending job_run=%s subject=%s", job_run_id, task.subject)
                return JSONResponse({"jobRunID": job_run_id, "pending": True}, status_code=200)
            raise AdapterError(504, "timeout", f"evaluation took longer than {options.timeout_s:g}s")
        status, body = _result_of(job_run_id, future)
        return JSONResponse(body, status_code=status)
    except AdapterError as e:
        response = errored(job_run_id, e.status, e.name, e.message)
        if e.status == 429:
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
