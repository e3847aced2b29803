"""What the external adapter refuses (issue 16, item 4): a ``responseURL`` outside the configured Chainlink
node base URLs (the PATCH would otherwise go anywhere a caller names, internal addresses included), work
beyond the bounded queue (429 with Retry-After), and, in ``prod``, any request without the bridge token."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from oracle.chainlink import adapter
from oracle.chainlink.tasks import TaskAnswer, TaskRequest
from oracle.config import load_settings
from oracle.context import Context
from oracle.errors import ConfigError, NotFound
from tests.chainlink.conftest import open_world
from tests.chainlink.test_adapter import TOKEN, Receiver, bridge, client_for
from tests.drought.world import PERIOD

DRY = {"task": "drought-severity", "region": "dry", "period": PERIOD}


@pytest.fixture(scope="module")
def ctx(world_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    context = open_world(world_template, tmp_path_factory.mktemp("adapter-guards") / "data")
    yield context
    context.close()


@pytest.fixture
def node() -> Iterator[Receiver]:
    """The configured Chainlink node's resume endpoint."""
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def internal() -> Iterator[Receiver]:
    """Some other service on the oracle's network that a caller would like the oracle to PATCH."""
    r = Receiver()
    yield r
    r.close()


def test_response_url_outside_the_node_base_urls_is_refused(
    ctx: Context, node: Receiver, internal: Receiver
) -> None:
    port = node.base.rsplit(":", 1)[1]
    refused = [
        internal.url,  # loopback, another port
        "http://169.254.169.254/latest/meta-data/iam",  # cloud metadata
        f"http://127.0.0.1:{port}@{internal.base.removeprefix('http://')}/v2/resume/x",  # userinfo trick
        f"{internal.base}/?next={node.url}",
        f"https://127.0.0.1:{port}/v2/resume/run-1",  # another scheme
        f"{node.base}/v2/resumed/run-1",  # a prefix, not a path segment
        f"{node.base}/v2/resume/../../admin",  # dot segments climb out of the base path
        f"{node.base}/v2/resume/%2e%2e/admin",
    ]
    settings = {"chainlink_node_urls": [f"{node.base}/v2/resume/"]}
    with client_for(ctx, settings=settings, sync_wait_s=0.0) as c:
        for url in refused:
            r = c.post("/adapter", json=bridge(DRY, responseURL=url))
            assert r.status_code == 400, (url, r.text)
            body = r.json()
            assert (body["status"], body["error"]["name"]) == ("errored", "response_url_not_allowed"), url
            assert "ORACLE_CHAINLINK_NODE_URLS" in body["error"]["message"]
        ok = c.post("/adapter", json=bridge(DRY, responseURL=node.url))
        assert ok.json() == {"jobRunID": "run-1", "pending": True}
    assert node.arrived.wait(timeout=60)
    (patched,) = node.bodies
    assert "data" in patched
    assert not internal.arrived.wait(timeout=0.5)  # nothing was ever sent there


def test_async_responses_are_refused_when_no_node_url_is_configured(ctx: Context, node: Receiver) -> None:
    with client_for(ctx, sync_wait_s=0.0) as c:
        r = c.post("/adapter", json=bridge(DRY, responseURL=node.url))
        sync = c.post("/adapter", json=bridge({**DRY, "region": "atlantis"}))
    assert r.status_code == 400
    assert r.json()["error"]["name"] == "response_url_not_allowed"
    assert "ORACLE_CHAINLINK_NODE_URLS" in r.json()["error"]["message"]
    assert sync.status_code == 404  # synchronous answers still work
    assert not node.arrived.wait(timeout=0.5)


def test_a_full_work_queue_answers_429_with_retry_after(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    started: list[str] = []

    def slow_answer(sessions: Any, blobs: Any, task: TaskRequest) -> TaskAnswer:
        started.append(task.subject)
        release.wait(timeout=60)
        raise NotFound(f"no region {task.subject}")

    monkeypatch.setattr(adapter, "answer_task", slow_answer)
    try:
        with client_for(ctx, settings={"chainlink_adapter_max_queue": 2}, timeout_s=0.05) as c:
            first = [c.post("/adapter", json=bridge(DRY)) for _ in range(2)]
            assert [r.status_code for r in first] == [504, 504]  # still running: they hold the queue
            full = c.post("/adapter", json=bridge(DRY))
            assert full.status_code == 429, full.text
            assert int(full.headers["Retry-After"]) >= 1
            assert (full.json()["status"], full.json()["error"]["name"]) == ("errored", "busy")
            assert len(started) == 2  # the refused request never reached the evaluator
            release.set()
            for _ in range(100):  # the two running evaluations finish and free their places
                if adapter.queued_evaluations() == 0:
                    break
                threading.Event().wait(0.05)
        with client_for(ctx, settings={"chainlink_adapter_max_queue": 2}, timeout_s=5.0) as c:
            again = c.post("/adapter", json=bridge(DRY))
        assert again.status_code == 404  # room again: evaluated (by the stub) instead of refused
    finally:
        release.set()


def test_prod_without_a_bridge_token_answers_401_to_every_request(
    ctx: Context, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.ERROR, logger="oracle.chainlink.adapter"),
        client_for(ctx, settings={"env": "prod"}) as c,
    ):
        for headers in ({}, {"Authorization": "Bearer anything"}):
            r = c.post("/adapter", json=bridge({**DRY, "region": "atlantis"}), headers=headers)
            assert r.status_code == 401, r.text
            assert r.json()["error"]["name"] == "unauthorized"
            assert "ORACLE_CHAINLINK_BRIDGE_TOKEN" in r.json()["error"]["message"]
    assert any("ORACLE_CHAINLINK_BRIDGE_TOKEN" in rec.getMessage() for rec in caplog.records)  # at start-up
    guarded = {"env": "prod", "chainlink_bridge_token": SecretStr(TOKEN)}
    with client_for(ctx, settings=guarded) as c:
        assert c.post("/adapter", json=bridge(DRY)).status_code == 401
        ok = c.post(
            "/adapter",
            json=bridge({**DRY, "region": "atlantis"}),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert ok.status_code == 404


PROD = {
    "env": "prod",
    "database_url": "postgresql+psycopg://oracle@db.example/oracle",
    "chain_rpc_url": "https://rpc.example.org",
    "mqtt_url": "mqtts://broker.example:8883",
}


def test_prod_refuses_to_start_an_adapter_without_a_bridge_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ORACLE_CHAINLINK_BRIDGE_TOKEN"):
        load_settings(data_dir=tmp_path, chainlink_adapter_enabled=True, _env_file=None, **PROD)
    ok = load_settings(
        data_dir=tmp_path,
        chainlink_adapter_enabled=True,
        chainlink_bridge_token="t" * 32,
        _env_file=None,
        **PROD,
    )
    assert ok.chainlink_adapter_enabled is True


def test_node_urls_setting_takes_a_comma_separated_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORACLE_CHAINLINK_NODE_URLS", "http://node-a:6688, https://node-b.example/v2/")
    settings = load_settings(data_dir=tmp_path, _env_file=None)
    assert settings.chainlink_node_urls == ["http://node-a:6688", "https://node-b.example/v2/"]
    monkeypatch.setenv("ORACLE_CHAINLINK_NODE_URLS", '["http://node-a:6688"]')
    assert load_settings(data_dir=tmp_path, _env_file=None).chainlink_node_urls == ["http://node-a:6688"]
    for bad in ("ftp://node-a", "http://user:pw@node-a:6688", "node-a:6688", "http://node-a/?q=1"):
        monkeypatch.setenv("ORACLE_CHAINLINK_NODE_URLS", bad)
        with pytest.raises(ConfigError, match="ORACLE_CHAINLINK_NODE_URLS"):
            load_settings(data_dir=tmp_path, _env_file=None)


def test_async_results_are_delivered_off_the_event_loop_and_the_evaluators(
    ctx: Context, node: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A callback added to a future that is already done runs at once, in the adding thread: here the
    event loop, which a slow node would then block for the PATCH's whole timeout."""
    threads: list[str] = []
    real_deliver = adapter.deliver

    def recording_deliver(*args: Any) -> None:
        threads.append(threading.current_thread().name)
        real_deliver(*args)

    monkeypatch.setattr(adapter, "deliver", recording_deliver)
    with client_for(ctx, settings=node.allowed, sync_wait_s=0.0) as c:
        for _ in range(3):
            r = c.post("/adapter", json=bridge({**DRY, "region": "atlantis"}, responseURL=node.url))
            assert r.json()["pending"] is True
    for _ in range(100):
        if len(node.bodies) == 3:
            break
        threading.Event().wait(0.05)
    assert len(node.bodies) == 3
    assert threads
    assert all(name.startswith("chainlink-delivery") for name in threads), threads
