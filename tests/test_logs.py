"""Log lines an operator can read and a machine can parse (issue 16 item 10): ORACLE_LOG_FORMAT=text|json,
the ids as fields, one line per record, and no secret in any line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from oracle.config import Settings
from oracle.errors import ConfigError
from oracle.logs import REDACTED, configure_logging

TOKEN = "s3cr3t-bridge-token-9f8e7d"
PRIVATE_KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
TX = "0x" + "ab" * 32


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_time_level_logger_message_and_fields(root_restored: None) -> None:
    out = io.StringIO()
    configure_logging("INFO", log_format="json", stream=out)
    log = logging.getLogger("oracle.chain.outbox")
    log.info(
        "outbox confirmed key=%s tx_hash=%s block=%s",
        "report:0x01:7",
        TX,
        12,
        extra={"subject": "0x" + "01" * 32, "epoch": 7},
    )
    logging.getLogger("apscheduler.executors.default").info("Running job ...")  # silenced
    (line,) = _json_lines(out)
    assert line["level"] == "INFO"
    assert line["logger"] == "oracle.chain.outbox"
    assert line["message"] == f"outbox confirmed key=report:0x01:7 tx_hash={TX} block=12"
    assert str(line["time"]).endswith("+00:00")
    assert line["tx_hash"] == TX
    assert line["key"] == "report:0x01:7"
    assert line["block"] == 12
    assert line["subject"] == "0x" + "01" * 32
    assert line["epoch"] == 7
    logging.getLogger("oracle.network").info("round queued subject=%s signers=%s, late", "0x01", "n1,n2")
    assert _json_lines(out)[1]["signers"] == "n1,n2"


def test_an_exception_stays_on_its_line(root_restored: None) -> None:
    out = io.StringIO()
    configure_logging("INFO", log_format="json", stream=out)
    try:
        raise RuntimeError(f"rpc https://user:{TOKEN}@rpc.invalid/v3 refused\nsecond line")
    except RuntimeError:
        logging.getLogger("oracle.service").exception("worker stopped worker=%s", "outbox")
    (line,) = _json_lines(out)
    assert line["worker"] == "outbox"
    assert "RuntimeError" in str(line["exc"])
    assert TOKEN not in out.getvalue()


def test_secrets_never_reach_a_line(root_restored: None) -> None:
    for fmt in ("json", "text"):
        out = io.StringIO()
        configure_logging("DEBUG", log_format=fmt, stream=out)
        log = logging.getLogger("oracle.test")
        log.info(
            "signer call failed url=%s",
            f"https://svc.invalid/sign?api_key={TOKEN}&x=1",
            extra={
                "headers": {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"},
                "private_key": PRIVATE_KEY,
                "signer_passphrase": SecretStr(TOKEN),
                "note": f"retrying with Bearer {TOKEN}",
                "tx_hash": TX,
            },
        )
        log.warning("adapter refused Authorization: Bearer %s signer_token=%s", TOKEN, TOKEN)
        log.info(
            "loaded key %s",
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSkOCMmgGvHg\n-----END EC PRIVATE KEY-----",
        )
        text = out.getvalue()
        assert TOKEN not in text, fmt
        assert PRIVATE_KEY[2:] not in text, fmt
        assert "MHcCAQEEIBkg4LVWM9nuwNSkOCMmgGvHg" not in text, fmt
        assert REDACTED in text, fmt
        assert TX in text, fmt  # ids stay
        assert len(text.splitlines()) == 3, fmt  # one line per record
        if fmt == "json":
            first = _json_lines(out)[0]
            assert first["private_key"] == REDACTED
            assert first["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
            assert first["tx_hash"] == TX


def test_text_is_the_default_and_shows_extra_fields(
    root_restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORACLE_LOG_FORMAT", raising=False)
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    logging.getLogger("oracle.ingest").info("batch stored device_id=%s", "logger-1", extra={"readings": 500})
    line = out.getvalue().rstrip("\n")
    assert "\n" not in line
    assert line.endswith(" INFO oracle.ingest batch stored device_id=logger-1 readings=500")


def test_the_setting_picks_json(root_restored: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORACLE_LOG_FORMAT", "json")
    assert Settings(_env_file=None).log_format == "json"  # type: ignore[call-arg]
    out = io.StringIO()
    configure_logging("INFO", stream=out)  # an entry point that passes only the level follows the setting
    logging.getLogger("oracle").info("started")
    assert _json_lines(out)[0]["message"] == "started"
    monkeypatch.setenv("ORACLE_LOG_FORMAT", "yaml")
    with pytest.raises(ConfigError, match="ORACLE_LOG_FORMAT"):
        configure_logging("INFO", stream=io.StringIO())


def test_configuring_twice_leaves_one_handler(root_restored: None) -> None:
    out = io.StringIO()
    configure_logging("INFO", log_format="text", stream=io.StringIO())
    configure_logging("INFO", log_format="json", stream=out)
    logging.getLogger("oracle").info("once")
    assert len(out.getvalue().splitlines()) == 1
